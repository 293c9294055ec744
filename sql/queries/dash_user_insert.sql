-- Add a user, or replace one's role, tenant and password (the caller decides whether a
-- name that exists may be replaced, inside the same transaction).
INSERT INTO dashboard_users (name, role, tenant, password_hash, created_at, last_login_at)
VALUES ($name, $role, $tenant, $password_hash, $at, NULL)
ON CONFLICT (name) DO UPDATE SET
    role = excluded.role,
    tenant = excluded.tenant,
    password_hash = excluded.password_hash,
    created_at = excluded.created_at,
    last_login_at = NULL;
