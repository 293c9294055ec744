-- The failures that count toward a backoff since $since (UTC), by scope:
--   user:   the name's, from every client (only those after its last successful sign-in);
--   pair:   the name's from this client key (same rule);
--   client: this client key's, for any name.
-- Rate-limited refusals are not stored, so waiting out a backoff is enough to end it.
WITH named AS (
    SELECT failed_at, client
    FROM dashboard_login_failures
    WHERE name = $name AND failed_at >= $since
      AND failed_at > coalesce(
          (SELECT last_login_at FROM dashboard_users WHERE name = $name), '-infinity'::TIMESTAMPTZ)
)
SELECT 'user' AS scope, failed_at FROM named
UNION ALL
SELECT 'pair' AS scope, failed_at FROM named WHERE client = $client
UNION ALL
SELECT 'client' AS scope, failed_at
FROM dashboard_login_failures
WHERE client = $client AND failed_at >= $since
ORDER BY failed_at;
