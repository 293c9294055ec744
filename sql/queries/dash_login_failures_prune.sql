-- Forget refused sign-ins older than $before (UTC), and all but the latest $keep rows.
DELETE FROM dashboard_login_failures
WHERE failed_at < $before
   OR id <= (SELECT coalesce(max(id), 0) FROM dashboard_login_failures) - $keep;
