-- Entries from index $first on, in log order.
SELECT idx, entry
FROM audit_entries
WHERE idx >= $first
ORDER BY idx;
