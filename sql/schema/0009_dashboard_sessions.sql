-- 0009: sign-in hardening (docs/adr/0006-dashboards.md, "Sign-in under attack" and "Sessions").
-- A password change ends the user's open sessions, so the user row says when it happened.
-- A client (address, or IPv6 /64) that signed in as a user is exempt from that user's
-- per-name backoff: someone who only knows the name cannot lock its owner out from there.
-- Refused sign-ins no longer hold 'rate_limited' rows (those stay in the server's memory),
-- and rows older than 30 days are pruned.

ALTER TABLE dashboard_users ADD COLUMN password_changed_at TIMESTAMPTZ;  -- UTC; set by `users add [--replace]`
UPDATE dashboard_users SET password_changed_at = created_at;

DELETE FROM dashboard_login_failures WHERE reason = 'rate_limited';

CREATE TABLE dashboard_known_clients (
    name    VARCHAR NOT NULL,              -- a dashboard user
    client  VARCHAR NOT NULL,              -- the client key it signed in from (IPv4 address, IPv6 /64, 'local')
    last_at TIMESTAMPTZ NOT NULL,          -- UTC, its latest successful sign-in from there
    PRIMARY KEY (name, client)
);
