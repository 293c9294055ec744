-- The most recently signed checkpoint.
SELECT id, size, root, note, signed_at
FROM audit_checkpoints
ORDER BY id DESC
LIMIT 1;
