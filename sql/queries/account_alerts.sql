-- The budget alerts fired for one tenant (in $month, or every month when NULL): each
-- threshold reached, the budget and month-to-date net that reached it (EUR excl. VAT),
-- when it was decided and when the webhook accepted it (UTC; NULL while pending).
SELECT month, tenant, threshold_percent, budget_eur, net_eur, decided_at, delivered_at
FROM budget_alerts
WHERE tenant = $tenant
  AND ($month::VARCHAR IS NULL OR month = $month)
ORDER BY month, threshold_percent;
