-- Alerts not yet accepted by the webhook, oldest decision first.
SELECT event_id, tenant, month, threshold_percent, body
FROM budget_alerts
WHERE delivered_at IS NULL
ORDER BY decided_at, tenant, month, threshold_percent;
