-- Whether a key_event about this verifier key is in the log (the first match is enough).
SELECT 1
FROM audit_entries
WHERE entry_type = 'key_event'
  AND subject = $subject
LIMIT 1;
