-- A successful sign-in of $name from $client (a client key) at $at (UTC).
INSERT INTO dashboard_known_clients (name, client, last_at)
VALUES ($name, $client, $at)
ON CONFLICT (name, client) DO UPDATE SET last_at = excluded.last_at;
