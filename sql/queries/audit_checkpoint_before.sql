-- The latest checkpoint signed before a time (UTC).
SELECT id, size, root, note, signed_at
FROM audit_checkpoints
WHERE signed_at < $before
ORDER BY id DESC
LIMIT 1;
