-- Store staged perfect-subtree hashes (registered as audit_staged_tree: level, idx, hash)
-- under their position in append order: 2e - popcount(e) + level, e = (idx + 1) * 2^level - 1
-- being the leaf that completes the subtree (audit.merkle.position).
INSERT INTO audit_tree (pos, hash)
WITH staged AS (
    SELECT level, hash, ((idx + 1) * (1::BIGINT << level)) - 1 AS e
    FROM audit_staged_tree
)
SELECT 2 * e - bit_count(e) + level, hash
FROM staged;
