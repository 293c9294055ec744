-- Every stored checkpoint in signing order.
SELECT id, size, root, note, signed_at
FROM audit_checkpoints
ORDER BY id;
