-- Every dashboard user (never the hash). Times UTC; password_changed_at falls back to created_at.
SELECT name, role, tenant, created_at, last_login_at, coalesce(password_changed_at, created_at) AS password_changed_at
FROM dashboard_users
ORDER BY name;
