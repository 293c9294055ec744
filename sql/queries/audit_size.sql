-- The log's size as its level-0 tiles give it, as its entries' largest index gives it,
-- and the number of stored entries: the same number three times unless the store was
-- damaged (appending refuses to go on when they differ).
SELECT
    (SELECT coalesce(max(idx * 256 + width), 0) FROM audit_tiles WHERE level = 0) AS tiles,
    (SELECT coalesce(max(idx) + 1, 0) FROM audit_entries) AS entries,
    (SELECT count(*) FROM audit_entries) AS stored;
