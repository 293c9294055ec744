-- Set (or replace) one tenant's budget.
INSERT OR REPLACE INTO budgets (tenant, monthly_eur, thresholds, updated_at)
VALUES ($tenant, $monthly_eur, $thresholds, $updated_at);
