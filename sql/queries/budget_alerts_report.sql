-- The alerts of a month (all months when $month is NULL) with their delivery history:
-- attempts made, and the latest attempt's outcome, status and error. EUR excl. VAT; UTC.
WITH attempts AS (
    SELECT
        event_id,
        count(*) AS attempts,
        arg_max(outcome, id) AS last_outcome,
        arg_max(http_status, id) AS last_status,
        arg_max(error, id) AS last_error
    FROM budget_deliveries
    GROUP BY event_id
)
SELECT
    a.month,
    a.tenant,
    a.threshold_percent,
    a.budget_eur,
    a.net_eur,
    a.event_id,
    a.decided_at,
    a.delivered_at,
    coalesce(t.attempts, 0) AS attempts,
    t.last_outcome,
    t.last_status,
    t.last_error
FROM budget_alerts AS a
LEFT JOIN attempts AS t USING (event_id)
WHERE $month::VARCHAR IS NULL OR a.month = $month
ORDER BY a.month, a.tenant, a.threshold_percent;
