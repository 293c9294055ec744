-- Keep the RFC 3161 token of a checkpoint.
INSERT INTO audit_timestamps (checkpoint_id, tsa_url, tsr, gen_time, received_at)
VALUES ($checkpoint_id, $tsa_url, $tsr, $gen_time, $received_at);
