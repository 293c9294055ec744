-- Every stored tile of one level, in index order.
SELECT idx, width, hashes
FROM audit_tiles
WHERE level = $level
ORDER BY idx;
