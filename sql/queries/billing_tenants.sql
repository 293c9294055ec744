-- The tenants of the current tenants.csv, for invoice parties (einvoice NULL: loaded before
-- migration 0010, read as facturx).
SELECT tenant, legal_name, country, vat_id, email, address, stripe_customer, einvoice, peppol_id
FROM tenants
ORDER BY tenant;
