-- One tenant of the current tenants.csv (none when it is not there): who a tenant user is
-- bound to. Not its Stripe customer id: that is the operator's.
SELECT tenant, legal_name, country, vat_id, email, address
FROM tenants
WHERE tenant = $tenant;
