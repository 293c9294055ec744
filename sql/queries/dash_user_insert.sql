-- Add a user, or replace one's role, tenant and password (the caller decides whether a
-- name that exists may be replaced, inside the same transaction). Either way the password
-- changed at $at (UTC): sessions signed in before then end at their next page run.
INSERT INTO dashboard_users (name, role, tenant, password_hash, created_at, last_login_at, password_changed_at)
VALUES ($name, $role, $tenant, $password_hash, $at, NULL, $at)
ON CONFLICT (name) DO UPDATE SET
    role = excluded.role,
    tenant = excluded.tenant,
    password_hash = excluded.password_hash,
    created_at = excluded.created_at,
    last_login_at = NULL,
    password_changed_at = excluded.password_changed_at;
