-- Every budget, by tenant (EUR excl. VAT; updated_at UTC).
SELECT tenant, monthly_eur, thresholds, updated_at
FROM budgets
ORDER BY tenant;
