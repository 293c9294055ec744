-- Every dashboard user (never the hash). Times UTC.
SELECT name, role, tenant, created_at, last_login_at
FROM dashboard_users
ORDER BY name;
