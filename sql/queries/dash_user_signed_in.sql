-- A successful sign-in: remember when (it ends the user's backoff) and store a rehashed
-- password when the hash parameters changed ($password_hash NULL keeps the old one).
UPDATE dashboard_users
SET last_login_at = $at,
    password_hash = coalesce($password_hash, password_hash)
WHERE name = $name;
