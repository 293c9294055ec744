-- Remove one tenant's budget; returns the tenant when it had one.
DELETE FROM budgets
WHERE tenant = $tenant
RETURNING tenant;
