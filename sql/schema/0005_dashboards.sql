-- 0005: who may open the dashboards, and every failed attempt to sign in
-- (docs/adr/0006-dashboards.md). Times are TIMESTAMPTZ in UTC. No password is ever stored,
-- only its argon2id hash (a PHC string that carries its own salt and parameters).

CREATE TABLE dashboard_users (
    name          VARCHAR PRIMARY KEY,     -- sign-in name (with OIDC: the identity's e-mail)
    role          VARCHAR NOT NULL CHECK (role IN ('finance', 'compliance', 'auditor', 'admin')),
    tenant        VARCHAR,                 -- set: an auditor who may export only this tenant
    password_hash VARCHAR NOT NULL,        -- argon2id PHC string ($argon2id$v=19$m=…)
    created_at    TIMESTAMPTZ NOT NULL,    -- UTC
    last_login_at TIMESTAMPTZ,             -- UTC, last successful sign-in (resets the user's backoff)
    CHECK (tenant IS NULL OR role = 'auditor')
);

CREATE SEQUENCE dashboard_login_failure_id START 1;

-- Append-only: one row per refused sign-in. Never holds the password that was tried.
CREATE TABLE dashboard_login_failures (
    id        BIGINT PRIMARY KEY DEFAULT nextval('dashboard_login_failure_id'),
    failed_at TIMESTAMPTZ NOT NULL,        -- UTC
    name      VARCHAR NOT NULL,            -- the name that was tried (may be no user's)
    client    VARCHAR NOT NULL,            -- the client's address as the server saw it ('local' on loopback)
    reason    VARCHAR NOT NULL             -- unknown_user | bad_password | rate_limited | oidc_unknown
);
