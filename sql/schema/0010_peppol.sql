-- 0010: Peppol BIS Billing 3.0 e-invoices.
-- A tenant's e-invoice format and Peppol electronic address, from tenants.csv (NULL on rows
-- loaded before this migration: read as facturx until the inventory is loaded again).
ALTER TABLE tenants ADD COLUMN einvoice VARCHAR;     -- facturx | peppol
ALTER TABLE tenants ADD COLUMN peppol_id VARCHAR;    -- <scheme>:<id>, e.g. 0208:0123456749

-- The UBL 2.1 XML (<number>.xml) of a document issued to a Peppol tenant, frozen with it in
-- the same transaction. Insert-only like billing_documents: a document issued without one
-- never gets one later (an issued document is never re-issued in another format).
CREATE TABLE billing_ubl_documents (
    number     VARCHAR PRIMARY KEY,    -- billing_documents.number
    ubl_bytes  BLOB NOT NULL,          -- the exact bytes of <number>.xml
    ubl_sha256 VARCHAR NOT NULL        -- hex
);
