-- One dashboard user, or no row. Times UTC; password_changed_at falls back to created_at.
SELECT name, role, tenant, password_hash, created_at, last_login_at,
       coalesce(password_changed_at, created_at) AS password_changed_at
FROM dashboard_users
WHERE name = $name;
