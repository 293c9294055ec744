-- Tiles by (level, index): $levels[k] and $idxs[k] name one tile.
WITH wanted AS (
    SELECT unnest($levels::SMALLINT[]) AS level, unnest($idxs::BIGINT[]) AS idx
)
SELECT t.level, t.idx, t.width, t.hashes
FROM audit_tiles AS t
JOIN wanted AS w ON t.level = w.level AND t.idx = w.idx;
