-- The tenants of the current tenants.csv, for invoice parties.
SELECT tenant, legal_name, country, vat_id, email, address, stripe_customer
FROM tenants
ORDER BY tenant;
