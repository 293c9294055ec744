-- The failures that count toward a backoff since $since (UTC): the user's (only those after
-- its last successful sign-in) and the client's. Refusals for being rate-limited do not
-- count, so waiting out a backoff is enough to end it.
SELECT 'user' AS scope, failed_at
FROM dashboard_login_failures
WHERE name = $name AND failed_at >= $since AND reason <> 'rate_limited'
  AND failed_at > coalesce(
      (SELECT last_login_at FROM dashboard_users WHERE name = $name), '-infinity'::TIMESTAMPTZ)
UNION ALL
SELECT 'client' AS scope, failed_at
FROM dashboard_login_failures
WHERE client = $client AND failed_at >= $since AND reason <> 'rate_limited'
ORDER BY failed_at;
