-- The latest entry of a type about a subject within a month (NULL month: any month).
SELECT idx, entry
FROM audit_entries
WHERE entry_type = $entry_type
  AND subject = $subject
  AND ($month::VARCHAR IS NULL OR month = $month)
ORDER BY idx DESC
LIMIT 1;
