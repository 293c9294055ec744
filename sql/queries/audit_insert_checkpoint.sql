-- Store a signed checkpoint; ids count up from 1 in signing order.
INSERT INTO audit_checkpoints (id, size, root, note, signed_at)
SELECT coalesce(max(id), 0) + 1, $size, $root, $note, $signed_at
FROM audit_checkpoints
RETURNING id;
