-- Entries a bundle carries: the month's entries (a tenant's only, when one is given),
-- every key event (log-wide, so a verifier learns the key history), and for a whole-log
-- bundle every inventory version loaded up to that month (the inventory in force).
SELECT idx, entry
FROM audit_entries
WHERE (month = $month AND ($tenant::VARCHAR IS NULL OR tenant = $tenant))
   OR entry_type = 'key_event'
   OR (entry_type = 'inventory_snapshot' AND month <= $month AND $tenant::VARCHAR IS NULL)
ORDER BY idx;
