-- Whether $client (a client key) signed in as $name since $since (UTC) and since the
-- user's password last changed: 1 row with known = true/false.
SELECT count(*) > 0 AS known
FROM dashboard_known_clients AS k
JOIN dashboard_users AS u ON u.name = k.name
WHERE k.name = $name AND k.client = $client AND k.last_at >= $since
  AND k.last_at >= coalesce(u.password_changed_at, u.created_at);
