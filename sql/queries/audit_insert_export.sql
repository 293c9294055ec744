-- Record which checkpoint a bundle carried.
INSERT INTO audit_exports (id, month, tenant, checkpoint_id, entry_idx, made_by, made_at)
SELECT coalesce(max(id), 0) + 1, $month, $tenant, $checkpoint_id, $entry_idx, $made_by, $made_at
FROM audit_exports;
