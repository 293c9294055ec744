-- 0007: trust in the audit log beyond its operator (audit/cosign.py, audit/timestamp.py).
-- Witness cosignatures of signed checkpoints, every submission to a witness (so a witness
-- that was down is reported and retried), and RFC 3161 time-stamp tokens of checkpoints.
-- Rows are only inserted. A witness is identified by its vkey: the name it has in
-- gpumeter.toml may change, its key may not. All times are TIMESTAMPTZ in UTC.

-- One valid cosignature per checkpoint and witness.
CREATE TABLE audit_cosignatures (
    checkpoint_id BIGINT NOT NULL,        -- audit_checkpoints.id
    witness       VARCHAR NOT NULL,       -- the witness's vkey (type 0x04)
    name          VARCHAR NOT NULL,       -- its [audit] witnesses name when it cosigned
    signature     VARCHAR NOT NULL,       -- the signed-note signature line, verbatim, ending in '\n'
    cosigned_at   TIMESTAMPTZ NOT NULL,   -- UTC, the time the cosignature carries
    received_at   TIMESTAMPTZ NOT NULL,   -- UTC
    PRIMARY KEY (checkpoint_id, witness)
);

CREATE SEQUENCE audit_witness_submission_id START 1;

-- One row per add-checkpoint request (and per unanswered attempt). The latest row with a
-- witness_size is what the log knows of the witness: the size of the tree head it holds.
CREATE TABLE audit_witness_submissions (
    id            BIGINT PRIMARY KEY DEFAULT nextval('audit_witness_submission_id'),
    witness       VARCHAR NOT NULL,       -- vkey
    name          VARCHAR NOT NULL,
    checkpoint_id BIGINT NOT NULL,        -- audit_checkpoints.id submitted
    old_size      BIGINT NOT NULL,        -- the 'old' size sent (number of entries)
    status        INTEGER,                -- HTTP status; NULL when there was no answer
    outcome       VARCHAR NOT NULL CHECK (outcome IN ('cosigned', 'conflict', 'failed')),
    witness_size  BIGINT,                 -- entries in the tree head the witness holds, when known
    detail        VARCHAR NOT NULL,       -- one line: what happened
    submitted_at  TIMESTAMPTZ NOT NULL    -- UTC
);

-- The RFC 3161 time-stamp token of a checkpoint's note text (SHA-256 imprint).
CREATE TABLE audit_timestamps (
    checkpoint_id BIGINT PRIMARY KEY,     -- audit_checkpoints.id
    tsa_url       VARCHAR NOT NULL,
    tsr           BLOB NOT NULL,          -- the DER TimeStampResp, verbatim
    gen_time      TIMESTAMPTZ NOT NULL,   -- UTC, the time the TSA asserts
    received_at   TIMESTAMPTZ NOT NULL    -- UTC
);
