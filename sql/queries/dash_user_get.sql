-- One dashboard user, or no row.
SELECT name, role, tenant, password_hash, created_at, last_login_at
FROM dashboard_users
WHERE name = $name;
