-- Every stored tile above level 0 (about n/65,536 of them).
SELECT idx, width, hashes, level
FROM audit_tiles
WHERE level > 0
ORDER BY level, idx;
