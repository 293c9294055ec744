-- 0008: the audit tree as C2SP tlog-tiles (docs/adr/0008-tiles.md).
-- audit_tree kept every perfect subtree (about 2n rows); audit_tiles keeps the tree as
-- tiles of 256 hashes (about n/128 rows): full tiles are inserted once, the partial tile
-- at the right edge of each level is replaced as it grows until it is full.
-- The tiles are rebuilt here from the stored entry bytes, and the root they give at the
-- latest checkpoint's size must equal the root in that checkpoint's signed note, or the
-- migration fails and the store stays as it was.

CREATE TABLE audit_tiles (
    level  SMALLINT NOT NULL,         -- tile level L: hash i is the root of 256^L leaves
    idx    BIGINT NOT NULL,           -- tile index N within its level
    width  SMALLINT NOT NULL,         -- hashes held: 256 when full, 1..255 at the right edge
    hashes BLOB NOT NULL,             -- width x 32 bytes, left to right
    PRIMARY KEY (level, idx)
);

-- Every perfect subtree of the stored entries, from the leaf hashes SHA-256(0x00 || entry)
-- up: a node of level l + 1 hashes SHA-256(0x01 || left || right) of two of level l.
CREATE TEMP TABLE audit_rebuilt AS
WITH RECURSIVE nodes(level, i, h) AS (
    SELECT 0, idx, unhex(sha256(from_hex('00') || entry))
    FROM audit_entries
    UNION ALL
    SELECT level + 1, i // 2, unhex(sha256(from_hex('01') || list(h ORDER BY i)[1] || list(h ORDER BY i)[2]))
    FROM nodes
    GROUP BY level, i // 2
    HAVING count(*) = 2
)
SELECT level, i, h FROM nodes;

-- Tile L holds the subtrees of level 8L, 256 to a tile.
INSERT INTO audit_tiles (level, idx, width, hashes)
SELECT level // 8, i // 256, count(*), unhex(string_agg(hex(h), '' ORDER BY i))
FROM audit_rebuilt
WHERE level % 8 = 0
GROUP BY level, i // 256;

-- The entries must be 0..n-1 without gaps, and the root at the latest checkpoint's size
-- (the right fold of its perfect subtrees, one per set bit of the size) must be the one
-- its signed note carries.
SELECT error('audit entries are not numbered 0..' || (count(*) - 1) || ' without gaps; run `gpumeter audit check` on the old version')
FROM audit_entries
HAVING count(*) > 0 AND (min(idx) <> 0 OR max(idx) <> count(*) - 1);

WITH RECURSIVE latest AS (
    SELECT size, from_base64(split_part(note, chr(10), 3)) AS signed_root
    FROM audit_checkpoints
    ORDER BY id DESC
    LIMIT 1
),
parts AS (
    SELECT row_number() OVER (ORDER BY b) AS k, n.h
    FROM latest, range(63) AS bits(b)
    JOIN audit_rebuilt AS n ON n.level = b AND n.i = (latest.size >> (b + 1)) * 2
    WHERE (latest.size >> b) & 1 = 1
),
folded(k, acc) AS (
    SELECT k, h FROM parts WHERE k = 1
    UNION ALL
    SELECT p.k, unhex(sha256(from_hex('01') || p.h || f.acc))
    FROM folded AS f
    JOIN parts AS p ON p.k = f.k + 1
)
SELECT error('the tiles rebuilt from the stored entries do not give the root of the latest signed checkpoint (size '
             || latest.size || '); the store is left as it was: run `gpumeter audit check` on the old version')
FROM latest
WHERE latest.size > 0
  AND (SELECT acc FROM folded ORDER BY k DESC LIMIT 1) IS DISTINCT FROM latest.signed_root;

DROP TABLE audit_rebuilt;
DROP TABLE audit_tree;
