-- The latest refused sign-ins, newest first (for admins). failed_at: UTC.
SELECT failed_at, name, client, reason
FROM dashboard_login_failures
ORDER BY id DESC
LIMIT $limit;
