-- Forget clients that have not signed in since $before (UTC), and those of removed users.
DELETE FROM dashboard_known_clients
WHERE last_at < $before
   OR name NOT IN (SELECT name FROM dashboard_users);
