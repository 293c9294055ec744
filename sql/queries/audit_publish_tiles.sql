-- Every stored tile, level by level, in index order.
SELECT level, idx, width, hashes
FROM audit_tiles
ORDER BY level, idx;
