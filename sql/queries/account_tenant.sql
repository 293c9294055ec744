-- One tenant of the current tenants.csv (none when it is not there): who a tenant user is bound to.
SELECT tenant, legal_name, country, vat_id
FROM tenants
WHERE tenant = $tenant;
