-- Every entry in log order.
SELECT idx, entry
FROM audit_entries
ORDER BY idx;
