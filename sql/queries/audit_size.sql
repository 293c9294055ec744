-- The log's size as its level-0 tiles give it, and as its entries give it: the same
-- number unless the store was damaged (appending refuses to go on when they differ).
SELECT
    (SELECT coalesce(max(idx * 256 + width), 0) FROM audit_tiles WHERE level = 0) AS tiles,
    (SELECT coalesce(max(idx) + 1, 0) FROM audit_entries) AS entries;
