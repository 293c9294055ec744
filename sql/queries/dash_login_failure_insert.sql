-- Record one refused sign-in (never the password tried).
INSERT INTO dashboard_login_failures (failed_at, name, client, reason)
VALUES ($at, $name, $client, $reason);
