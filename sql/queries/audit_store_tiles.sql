-- Store tiles staged as audit_staged_tiles (level, idx, width, hashes): each replaces the
-- stored tile of the same (level, idx), which can only be its shorter, partial version.
DELETE FROM audit_tiles AS t
USING audit_staged_tiles AS s
WHERE t.level = s.level AND t.idx = s.idx;

INSERT INTO audit_tiles (level, idx, width, hashes)
SELECT level, idx, width, hashes
FROM audit_staged_tiles;
