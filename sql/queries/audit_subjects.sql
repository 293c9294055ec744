-- For one entry type (and month, unless NULL): each subject's latest entry.
SELECT subject, max(idx) AS idx
FROM audit_entries
WHERE entry_type = $entry_type
  AND ($month::VARCHAR IS NULL OR month = $month)
GROUP BY subject;
