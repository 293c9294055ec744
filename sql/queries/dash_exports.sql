-- Auditor bundles made for one month (all months when $month is NULL), newest first.
-- tenant NULL: a whole-log bundle. made_at: UTC.
SELECT e.id, e.month, e.tenant, e.made_by, e.made_at, e.entry_idx, e.checkpoint_id, c.size AS checkpoint_size
FROM audit_exports AS e
LEFT JOIN audit_checkpoints AS c ON c.id = e.checkpoint_id
WHERE $month::VARCHAR IS NULL OR e.month = $month
ORDER BY e.id DESC
LIMIT 200;
