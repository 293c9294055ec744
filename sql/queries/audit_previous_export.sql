-- The checkpoint the latest bundle of a month carried, preferring one of the same scope.
SELECT c.id, c.size, c.root, c.note, c.signed_at
FROM audit_exports AS x
JOIN audit_checkpoints AS c ON c.id = x.checkpoint_id
WHERE x.month = $month
ORDER BY (x.tenant IS NOT DISTINCT FROM $tenant::VARCHAR) DESC, x.id DESC
LIMIT 1;
