-- 0015: the `tenant` dashboard role, a customer's own login bound to one tenant
-- (docs/tenant.md). DuckDB cannot change a CHECK constraint in place, so dashboard_users is
-- rebuilt with the same columns and rows: an auditor may be scoped to a tenant, a tenant
-- user must be, no other role can be. Times stay TIMESTAMPTZ in UTC; only hashes are stored.

CREATE TABLE dashboard_users_0015 (
    name                VARCHAR PRIMARY KEY,     -- sign-in name (with OIDC: the identity's e-mail)
    role                VARCHAR NOT NULL
        CHECK (role IN ('finance', 'compliance', 'auditor', 'tenant', 'admin')),
    tenant              VARCHAR,                 -- auditor: may export only this tenant; tenant: sees only it
    password_hash       VARCHAR NOT NULL,        -- argon2id PHC string ($argon2id$v=19$m=…)
    created_at          TIMESTAMPTZ NOT NULL,    -- UTC
    last_login_at       TIMESTAMPTZ,             -- UTC, last successful sign-in
    password_changed_at TIMESTAMPTZ,             -- UTC; set by `users add [--replace]`
    CHECK (tenant IS NULL OR role IN ('auditor', 'tenant')),
    CHECK (role <> 'tenant' OR tenant IS NOT NULL)
);

INSERT INTO dashboard_users_0015
    (name, role, tenant, password_hash, created_at, last_login_at, password_changed_at)
SELECT name, role, tenant, password_hash, created_at, last_login_at, password_changed_at
FROM dashboard_users;

DROP TABLE dashboard_users;

ALTER TABLE dashboard_users_0015 RENAME TO dashboard_users;
