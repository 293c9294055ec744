-- 0002: issued invoices and credit notes, frozen, and their gapless number series.
-- Money is DECIMAL (EUR, excl. VAT unless named otherwise), never DOUBLE. Dates are the
-- legal dates printed on the document (DATE, no time zone); instants are TIMESTAMPTZ UTC.
-- Rows here are only ever inserted: an issued document is never updated or deleted
-- (corrections are new documents that reference the original; docs/adr/0005).

-- One gapless series per supplier (VAT id), document series and year of issue.
CREATE TABLE billing_sequences (
    supplier_vat_id VARCHAR NOT NULL,         -- the issuing supplier
    series          VARCHAR NOT NULL,         -- 'invoice' | 'credit_note'
    year            INTEGER NOT NULL,         -- year of the issue date
    last_seq        INTEGER NOT NULL,         -- last number used; the next is last_seq + 1
    PRIMARY KEY (supplier_vat_id, series, year)
);

CREATE TABLE billing_documents (
    number            VARCHAR PRIMARY KEY,    -- e.g. GM-2026-000001, GMC-2026-000001
    supplier_vat_id   VARCHAR NOT NULL,
    series            VARCHAR NOT NULL,       -- 'invoice' | 'credit_note'
    year              INTEGER NOT NULL,
    seq               INTEGER NOT NULL,       -- position in the series, from 1, no gaps
    kind              VARCHAR NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    type_code         VARCHAR NOT NULL,       -- EN 16931 BT-3: 380 invoice, 381 credit note
    tenant            VARCHAR NOT NULL,
    period            VARCHAR NOT NULL,       -- YYYY-MM, calendar month in UTC
    issue_date        DATE NOT NULL,
    due_date          DATE NOT NULL,
    references_number VARCHAR,                -- the original invoice (supplements, credit notes)
    references_date   DATE,                   -- its issue date (BT-26)
    currency          VARCHAR NOT NULL,       -- 'EUR'
    net               DECIMAL(18, 2) NOT NULL,  -- EUR excl. VAT, sum of the rounded lines
    vat_treatment     VARCHAR NOT NULL,       -- domestic | reverse_charge | outside_scope
    vat_rate          DECIMAL(5, 2) NOT NULL, -- percent
    vat               DECIMAL(18, 2) NOT NULL,  -- EUR
    total             DECIMAL(18, 2) NOT NULL,  -- EUR incl. VAT
    rates_sha256      VARCHAR NOT NULL,       -- hex digest of the rates.toml priced with
    json_bytes        BLOB NOT NULL,          -- the exact bytes of <number>.json
    json_sha256       VARCHAR NOT NULL,       -- hex
    pdf_bytes         BLOB NOT NULL,          -- the exact bytes of <number>.pdf (Factur-X)
    pdf_sha256        VARCHAR NOT NULL,       -- hex
    xml_sha256        VARCHAR NOT NULL,       -- hex of the embedded factur-x.xml
    finalized_at      TIMESTAMPTZ NOT NULL,   -- UTC
    UNIQUE (supplier_vat_id, series, year, seq)
);

CREATE TABLE billing_document_lines (
    number              VARCHAR NOT NULL,     -- billing_documents.number
    line_no             INTEGER NOT NULL,     -- 1, 2, ... as printed
    gpu_model           VARCHAR NOT NULL,
    mig_profile         VARCHAR,              -- set when the profile is priced apart
    site                VARCHAR,              -- set when the site is priced apart
    tier_from_gpu_hours DECIMAL(38, 6) NOT NULL,  -- start of the volume band, 0 = base
    description         VARCHAR NOT NULL,
    gpu_hours           DECIMAL(38, 6) NOT NULL,  -- GPU-hours as printed (half-up, 6 places)
    unit_price          DECIMAL(38, 12) NOT NULL, -- EUR per GPU-hour after discount
    list_unit_price     DECIMAL(38, 12) NOT NULL, -- EUR per GPU-hour before discount
    discount_percent    DECIMAL(9, 4) NOT NULL,
    amount              DECIMAL(18, 2) NOT NULL,  -- EUR excl. VAT, rounded once
    PRIMARY KEY (number, line_no)
);
