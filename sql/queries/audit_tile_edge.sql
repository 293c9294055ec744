-- The partial tile at the right edge of each level (at most one per level), lowest first.
SELECT level, idx, width, hashes
FROM audit_tiles
WHERE width < 256
ORDER BY level, idx;
