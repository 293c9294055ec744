-- Mark an alert accepted by the webhook (UTC).
UPDATE budget_alerts
SET delivered_at = $delivered_at
WHERE event_id = $event_id AND delivered_at IS NULL;
