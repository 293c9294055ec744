-- The RFC 3161 token of one checkpoint, if it has one.
SELECT tsa_url, tsr, gen_time
FROM audit_timestamps
WHERE checkpoint_id = $checkpoint_id;
