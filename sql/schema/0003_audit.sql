-- 0003: the audit log (docs/adr/0004-audit-log.md).
-- An RFC 6962 Merkle tree over the exact RFC 8785 bytes of each entry. Rows are only ever
-- inserted: entries, tree hashes, documents, checkpoints and exports are never updated or
-- deleted. All times are TIMESTAMPTZ in UTC.

-- One row per log entry, in log order.
CREATE TABLE audit_entries (
    idx         BIGINT PRIMARY KEY,       -- 0-based leaf index
    entry       BLOB NOT NULL,            -- the exact canonical JSON bytes (the leaf input)
    entry_type  VARCHAR NOT NULL,         -- the entry's "type"
    month       VARCHAR NOT NULL,         -- 'YYYY-MM' (UTC) the entry is about
    tenant      VARCHAR,                  -- the tenant it concerns; NULL for log-wide entries
    subject     VARCHAR,                  -- what it is about (job id, invoice number, window, vkey)
    appended_at TIMESTAMPTZ NOT NULL      -- UTC, when appended (not hashed)
);

-- Every complete perfect subtree of the tree: (level L, index i) covers leaves
-- [i*2^L, (i+1)*2^L); level 0 holds the leaf hashes SHA-256(0x00 || entry). About 2n rows.
-- A subtree is keyed by its position in the order appending creates subtrees,
-- pos = 2e - popcount(e) + L with e = (i+1)*2^L - 1 (audit.merkle.position): monotonic, so
-- lookups prune by block instead of scanning, and a check reads the tree in one pass.
CREATE TABLE audit_tree (
    pos  BIGINT PRIMARY KEY,
    hash BLOB NOT NULL                    -- 32 bytes
);

-- Files an entry vouches for by SHA-256, kept so a bundle can include them.
CREATE TABLE audit_documents (
    name      VARCHAR PRIMARY KEY,        -- 'documents/<file>'
    sha256    VARCHAR NOT NULL,           -- lowercase hex of content
    content   BLOB NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL        -- UTC
);

-- Signed checkpoints (C2SP tlog-checkpoint notes), in signing order.
CREATE TABLE audit_checkpoints (
    id        BIGINT PRIMARY KEY,         -- 1, 2, ... in signing order
    size      BIGINT NOT NULL,            -- tree size the checkpoint commits to
    root      BLOB NOT NULL,              -- RFC 6962 root, 32 bytes
    note      VARCHAR NOT NULL,           -- the signed note text, verbatim
    signed_at TIMESTAMPTZ NOT NULL        -- UTC
);

-- Which checkpoint each exported bundle carried (the next month's bundle proves
-- consistency from it).
CREATE TABLE audit_exports (
    id            BIGINT PRIMARY KEY,
    month         VARCHAR NOT NULL,       -- 'YYYY-MM'
    tenant        VARCHAR,                -- NULL for a whole-log bundle
    checkpoint_id BIGINT NOT NULL,        -- audit_checkpoints.id
    entry_idx     BIGINT NOT NULL,        -- the 'export' entry that records it
    made_by       VARCHAR NOT NULL,
    made_at       TIMESTAMPTZ NOT NULL    -- UTC
);
