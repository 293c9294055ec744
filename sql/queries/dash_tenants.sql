-- Tenant ids and names of the current tenants.csv.
SELECT tenant, legal_name
FROM tenants
ORDER BY tenant;
