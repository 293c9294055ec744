-- The tree's size as its level-0 tiles give it.
SELECT coalesce(max(idx * 256 + width), 0) AS size
FROM audit_tiles
WHERE level = 0;
