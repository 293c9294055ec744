-- 0016: audit_entries without a primary key (docs/adr/0011-append-cost.md).
-- The index DuckDB kept for the key cost more than storing the entry itself on every
-- append, and no query needs it: entries are appended in index order, so a lookup by
-- index prunes row groups by their min/max. That indices run 0..n-1 once each is the
-- log's own invariant: appending checks the entries' count and largest index against
-- the tiles' size before every append, and `gpumeter audit check` names a missing or
-- twice-stored index.

CREATE TABLE audit_entries_unkeyed (
    idx         BIGINT NOT NULL,          -- 0-based leaf index, once each, in append order
    entry       BLOB NOT NULL,            -- the exact canonical JSON bytes (the leaf input)
    entry_type  VARCHAR NOT NULL,         -- the entry's "type"
    month       VARCHAR NOT NULL,         -- 'YYYY-MM' (UTC) the entry is about
    tenant      VARCHAR,                  -- the tenant it concerns; NULL for log-wide entries
    subject     VARCHAR,                  -- what it is about (job id, invoice number, window, vkey)
    appended_at TIMESTAMPTZ NOT NULL      -- UTC, when appended (not hashed)
);

INSERT INTO audit_entries_unkeyed
SELECT idx, entry, entry_type, month, tenant, subject, appended_at
FROM audit_entries
ORDER BY idx;

DROP TABLE audit_entries;
ALTER TABLE audit_entries_unkeyed RENAME TO audit_entries;
