-- The tenants of the current tenants.csv, for invoice parties.
SELECT tenant, legal_name, country, vat_id, email, address, coalesce(einvoice, 'facturx') AS einvoice, peppol_id
FROM tenants
ORDER BY tenant;
