-- Tiles by key (level * 2^40 + index), and on each row the tree's size as its level-0
-- tiles give it, so that one query serves a proof.
SELECT
    level,
    idx,
    width,
    hashes,
    (SELECT coalesce(max(idx * 256 + width), 0) FROM audit_tiles WHERE level = 0) AS size
FROM audit_tiles
WHERE list_contains($keys::BIGINT[], level * 1099511627776 + idx);
