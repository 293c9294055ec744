-- Number of entries in the audit log (the next index to append).
SELECT coalesce(max(idx) + 1, 0) AS size
FROM audit_entries;
