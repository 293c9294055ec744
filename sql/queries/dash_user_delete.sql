-- Remove a user; returns its name when there was one.
DELETE FROM dashboard_users
WHERE name = $name
RETURNING name;
