-- One stored checkpoint.
SELECT id, size, root, note, signed_at
FROM audit_checkpoints
WHERE id = $id;
