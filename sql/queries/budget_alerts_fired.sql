-- The thresholds already decided for a month, per tenant (fired once, never again).
SELECT tenant, threshold_percent
FROM budget_alerts
WHERE month = $month;
