-- 0013: contracts (reservations, minimum spend, credits) and job classes (docs/adr/0009-contracts.md).
-- Money is DECIMAL (EUR), never DOUBLE. Rows of the billing tables are only ever inserted.

-- jobs.csv's optional `class` column: on_demand (default) | spot | reserved.
ALTER TABLE jobs ADD COLUMN job_class VARCHAR NOT NULL DEFAULT 'on_demand';

-- What an issued line is: usage | spot | reservation | minimum_spend (earlier lines are usage).
ALTER TABLE billing_document_lines ADD COLUMN kind VARCHAR NOT NULL DEFAULT 'usage';
-- The contracts.toml id of a reservation line (minimum-spend lines: their id, when given).
ALTER TABLE billing_document_lines ADD COLUMN contract VARCHAR;
-- A reservation line's GPU-hours drawn from it, as printed (half-up, 6 places); else NULL.
ALTER TABLE billing_document_lines ADD COLUMN used_gpu_hours DECIMAL(38, 6);
-- A minimum-spend line names no GPU model.
ALTER TABLE billing_document_lines ALTER COLUMN gpu_model DROP NOT NULL;

-- What each issued document did with each credit of contracts.toml: the only record of a
-- credit's balance (eur - drawn + given back - expired), so nothing can drift from the documents.
-- On an invoice `allowance` (promotional) and `paid` (prepaid) are drawn; on a credit note
-- they are given back. `expired` writes off what was left once the credit can no longer be used.
CREATE TABLE billing_document_credits (
    number VARCHAR NOT NULL,                 -- billing_documents.number
    tenant VARCHAR NOT NULL,
    credit VARCHAR NOT NULL,                 -- [[credit]] id in contracts.toml
    role   VARCHAR NOT NULL CHECK (role IN ('allowance', 'paid', 'expired')),
    amount DECIMAL(18, 2) NOT NULL CHECK (amount > 0),  -- EUR
    PRIMARY KEY (number, credit, role)
);
