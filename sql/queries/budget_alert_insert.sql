-- Decide one alert; a threshold already decided for the tenant and month inserts nothing.
INSERT INTO budget_alerts (
    event_id, tenant, month, threshold_percent, budget_eur, net_eur, decided_at, body
)
VALUES ($event_id, $tenant, $month, $threshold_percent, $budget_eur, $net_eur, $decided_at, $body)
ON CONFLICT DO NOTHING
RETURNING event_id;
