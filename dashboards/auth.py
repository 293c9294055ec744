"""Dashboard users, their argon2id password hashes, and signing in.

* Users live in the store (``dashboard_users``, ``sql/schema/0005_dashboards.sql``) with a
  role and, for an auditor, optionally one tenant. ``gpumeter users add|list|remove``
  manages them; the dashboards only read them (and note the last sign-in).
* Passwords are hashed with argon2id (argon2-cffi's :class:`~argon2.PasswordHasher`, RFC
  9106 low-memory profile); the PHC string carries salt and parameters, and a hash made
  with older parameters is replaced at the next successful sign-in.
* :func:`sign_in` checks the backoff (:mod:`dashboards.ratelimit`) *before* it looks at the
  password, spends one argon2 verification even for an unknown name (so timing does not
  tell which names exist), and on failure records the attempt in
  ``dashboard_login_failures`` and writes one log line with the name (escaped, cut short),
  the client and the reason. The password is never stored, logged or put in a message.
* With ``[dashboard] oidc = true`` the identity comes from ``st.login`` instead and
  :func:`sign_in_oidc` maps it (by default its e-mail) to a user of the same name.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import duckdb
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from dashboards.errors import RateLimited, UserError
from dashboards.ratelimit import Throttle, verify_throttle
from dashboards.reader import StoreAccess
from dashboards.roles import Role, Viewer
from gpumeter import store

log = logging.getLogger("gpumeter.dashboards.auth")

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
MAX_NAME_CHARS = 128


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile


@cache
def _dummy_hash() -> str:
    """A hash no password matches quickly: unknown names cost one verification too."""
    return _hasher().hash("gpumeter: no such user, verify anyway")


def hash_password(password: str) -> str:
    check_password_policy(password)
    return _hasher().hash(password)


def check_password_policy(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise UserError(f"a dashboard password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError(f"a dashboard password has at most {MAX_PASSWORD_CHARS} characters")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name or name != name.strip() or len(name) > MAX_NAME_CHARS:
        raise UserError(f"a user name is 1-{MAX_NAME_CHARS} characters without leading or trailing spaces", value=name)
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise UserError("a user name cannot hold control characters", value=name)
    return name


def password_matches(password_hash: str, password: str) -> tuple[bool, bool]:
    """(matches, needs a rehash)."""
    try:
        _hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, False
    return True, _hasher().check_needs_rehash(password_hash)


# --------------------------------------------------------------------------- the users table


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: Role
    tenant: str | None
    created_at: datetime
    last_login_at: datetime | None

    def viewer(self, via: str = "password") -> Viewer:
        return Viewer(self.name, self.role, self.tenant, via)


def _tenants(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {str(t) for t, _ in store.run(con, "dash_tenants").fetchall()}


def add_user(
    con: duckdb.DuckDBPyConnection,
    name: str,
    role: str,
    tenant: str | None,
    password: str,
    *,
    at: datetime,
    replace: bool = False,
) -> UserRecord:
    """Add (or with ``replace`` change) a user; bad input changes nothing."""
    check_name(name)
    try:
        parsed = Role(role)
    except ValueError:
        raise UserError(f"unknown role (roles: {', '.join(r.value for r in Role)})", value=role) from None
    if tenant is not None:
        if parsed is not Role.AUDITOR:
            raise UserError("--tenant scopes an auditor; other roles see every tenant", value=role)
        if tenant not in _tenants(con):
            raise UserError("no such tenant in tenants.csv (run `gpumeter collect` after adding it)", value=tenant)
    password_hash = hash_password(password)
    with store.transaction(con):
        if store.run(con, "dash_user_get", {"name": name}).fetchall() and not replace:
            raise UserError("a user of this name exists; remove it first or pass --replace", value=name)
        store.run(
            con,
            "dash_user_insert",
            {"name": name, "role": parsed.value, "tenant": tenant, "password_hash": password_hash, "at": at},
        )
    return UserRecord(name, parsed, tenant, at, None)


def remove_user(con: duckdb.DuckDBPyConnection, name: str) -> None:
    if not store.run(con, "dash_user_delete", {"name": name}).fetchall():
        raise UserError("no dashboard user of this name", value=name)


def list_users(con: duckdb.DuckDBPyConnection) -> list[UserRecord]:
    rows = store.run(con, "dash_users").fetchall()
    return [UserRecord(str(n), Role(r), t, created, last) for n, r, t, created, last in rows]


# --------------------------------------------------------------------------- signing in


@dataclass(frozen=True)
class SignIn:
    """The outcome of one attempt: a viewer, or why not (never the password)."""

    viewer: Viewer | None
    reason: str | None  # None | unknown_user | bad_password | rate_limited | oidc_unknown
    message: str
    retry_at: datetime | None = None

    @property
    def passed(self) -> bool:
        return self.viewer is not None


def _shown(name: str) -> str:
    """The tried name as it goes into a log line: escaped and cut short."""
    return repr(name[:64] + ("…" if len(name) > 64 else ""))


def _refuse(
    access: StoreAccess, name: str, client: str, reason: str, message: str, now: datetime, counts: tuple[int, int]
) -> SignIn:
    """Record and log one refusal; ``counts`` are the user's and the client's counted failures."""
    with access.write() as con:
        store.run(
            con,
            "dash_login_failure_insert",
            {"at": now, "name": name[:MAX_NAME_CHARS], "client": client[:128], "reason": reason},
        )
    log.warning(
        "dashboard sign-in refused: user=%s client=%s reason=%s user_failures=%d client_failures=%d",
        _shown(name),
        client[:128],
        reason,
        *counts,
    )
    return SignIn(None, reason, message)


def _recent_failures(
    con: duckdb.DuckDBPyConnection, throttle: Throttle, name: str, client: str, now: datetime
) -> tuple[list[datetime], list[datetime]]:
    rows = store.run(
        con, "dash_login_failures_recent", {"name": name, "client": client, "since": throttle.since(now)}
    ).fetchall()
    return [at for scope, at in rows if scope == "user"], [at for scope, at in rows if scope == "client"]


def sign_in(
    access: StoreAccess,
    name: str,
    password: str,
    *,
    client: str,
    now: datetime,
    throttle: Throttle | None = None,
) -> SignIn:
    """Check a name and password; every refusal is recorded and logged."""
    throttle = throttle or Throttle()
    with access.read() as con:
        store.require_schema(con)
        row = store.run(con, "dash_user_get", {"name": name}).fetchone()
        user_failures, client_failures = _recent_failures(con, throttle, name, client, now)
    counts = (len(user_failures), len(client_failures))
    try:
        verify_throttle(throttle, user_failures, client_failures, now)
    except RateLimited as exc:
        refused = _refuse(access, name, client, "rate_limited", exc.message, now, counts)
        return SignIn(None, refused.reason, refused.message, exc.retry_at)
    after = (counts[0] + 1, counts[1] + 1)  # this failure counts from now on
    if row is None:
        password_matches(_dummy_hash(), password)
        return _refuse(access, name, client, "unknown_user", "unknown user or wrong password", now, after)
    ok, rehash = password_matches(str(row[3]), password)
    if not ok:
        return _refuse(access, name, client, "bad_password", "unknown user or wrong password", now, after)
    with access.write() as con:
        store.run(
            con,
            "dash_user_signed_in",
            {"name": name, "at": now, "password_hash": _hasher().hash(password) if rehash else None},
        )
    log.info("dashboard sign-in: user=%s client=%s role=%s", _shown(name), client[:128], row[1])
    return SignIn(Viewer(str(row[0]), Role(row[1]), row[2], "password"), None, "signed in")


def sign_in_oidc(access: StoreAccess, identity: str, *, client: str, now: datetime) -> SignIn:
    """Map an identity the OIDC provider vouched for to a dashboard user of that name."""
    with access.read() as con:
        store.require_schema(con)
        row = store.run(con, "dash_user_get", {"name": identity}).fetchone()
    if row is None:
        return _refuse(
            access,
            identity,
            client,
            "oidc_unknown",
            "this identity is not a dashboard user; ask an admin to run `gpumeter users add`",
            now,
            (1, 1),
        )
    with access.write() as con:
        store.run(con, "dash_user_signed_in", {"name": identity, "at": now, "password_hash": None})
    log.info("dashboard sign-in (oidc): user=%s client=%s role=%s", _shown(identity), client[:128], row[1])
    return SignIn(Viewer(str(row[0]), Role(row[1]), row[2], "oidc"), None, "signed in")


def recent_failures(access: StoreAccess, limit: int = 200) -> list[tuple[datetime, str, str, str]]:
    """The latest refused sign-ins (admins' Access page)."""
    with access.read() as con:
        rows = store.run(con, "dash_login_failures", {"limit": limit}).fetchall()
    return [(at, str(n), str(c), str(r)) for at, n, c, r in rows]


def refresh(access: StoreAccess, viewer: object) -> Viewer | None:
    """The session's viewer as the store has it now: None when removed, new role if changed."""
    if not isinstance(viewer, Viewer):
        return None
    with access.read() as con:
        store.require_schema(con)
        row = store.run(con, "dash_user_get", {"name": viewer.name}).fetchone()
    if row is None:
        return None
    return Viewer(str(row[0]), Role(row[1]), row[2], viewer.via)
