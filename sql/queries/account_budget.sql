-- One tenant's monthly budget, if it has one (EUR excl. VAT; thresholds in percent; updated_at UTC).
SELECT tenant, monthly_eur, thresholds, updated_at
FROM budgets
WHERE tenant = $tenant;
