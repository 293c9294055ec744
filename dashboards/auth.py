"""Dashboard users, their argon2id password hashes, and signing in.

* Users live in the store (``dashboard_users``, ``sql/schema/0005_dashboards.sql``) with a
  role and, for an auditor optionally and for a tenant user always, one tenant. ``gpumeter users add|list|remove``
  manages them; the dashboards only read them (and note the last sign-in).
* Passwords are hashed with argon2id (argon2-cffi's :class:`~argon2.PasswordHasher`, RFC
  9106 low-memory profile); the PHC string carries salt and parameters, and a hash made
  with older parameters is replaced at the next successful sign-in.
* :func:`sign_in` checks the backoff (:mod:`dashboards.ratelimit`) *before* it looks at the
  password, and reserves the attempt under the process's :class:`~dashboards.gate.SignInGate`
  in the same step, so concurrent attempts cannot all slip past the check to argon2; at
  most two argon2 checks run at once. It spends one verification even for an unknown name
  (so timing does not tell which names exist). A failure that reached the check is
  recorded in ``dashboard_login_failures`` (pruned after 30 days, at most 100,000 rows)
  with one log line (the name escaped and cut short, the client, the reason); a refusal by
  the backoff is kept in memory only. A successful sign-in records the client
  (``dashboard_known_clients``): from there the user is exempt from the per-name backoff
  that strangers' guesses build up. The password is never stored, logged or put in a message.
* With ``[dashboard] oidc = true`` the identity comes from ``st.login`` instead and
  :func:`sign_in_oidc` maps it (by default its verified e-mail) to a user of the same name.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import duckdb
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from dashboards.errors import RateLimited, UserError
from dashboards.gate import Key, Refusal, SignInGate, gate_for
from dashboards.ratelimit import Throttle, client_key, verify_throttle
from dashboards.reader import StoreAccess
from dashboards.roles import SCOPED_ROLES, Role, Viewer
from gpumeter import store

log = logging.getLogger("gpumeter.dashboards.auth")

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
MAX_NAME_CHARS = 128
FAILURE_RETENTION = timedelta(days=30)
"""Refused sign-ins (and clients that signed in) older than this are pruned."""
FAILURE_ROWS_KEPT = 100_000
"""At most this many refused sign-ins are kept, the latest."""
READ_TRIES = 10
"""Reads of an attempt's failures before it is turned away as busy (module doc)."""
BUSY = "the server is busy with other sign-ins; try again"
KNOWN_CLIENT_FOR = timedelta(days=30)
"""How long a client that signed in as a user stays exempt from that name's backoff."""


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


def check_scope(role: str, tenant: str | None) -> Role:
    """The role named, and whether it takes ``tenant``: a tenant user needs one, an auditor
    may have one, other roles see every tenant (pure; whether the tenant exists is the store's)."""
    try:
        parsed = Role(role)
    except ValueError:
        raise UserError(f"unknown role (roles: {', '.join(r.value for r in Role)})", value=role) from None
    if tenant is None and parsed is Role.TENANT:
        raise UserError("the tenant role needs --tenant T: the one tenant whose data it sees", value=role)
    if tenant is not None and parsed not in SCOPED_ROLES:
        raise UserError("--tenant scopes an auditor or binds a tenant user; other roles see every tenant", value=role)
    return parsed


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
    password_changed_at: datetime  # UTC; sessions signed in before it have ended

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
    parsed = check_scope(role, tenant)
    if tenant is not None and tenant not in _tenants(con):
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
    return UserRecord(name, parsed, tenant, at, None, at)


def remove_user(con: duckdb.DuckDBPyConnection, name: str) -> None:
    if not store.run(con, "dash_user_delete", {"name": name}).fetchall():
        raise UserError("no dashboard user of this name", value=name)


def list_users(con: duckdb.DuckDBPyConnection) -> list[UserRecord]:
    rows = store.run(con, "dash_users").fetchall()
    return [UserRecord(str(n), Role(r), t, created, last, changed) for n, r, t, created, last, changed in rows]


# --------------------------------------------------------------------------- signing in


@dataclass(frozen=True)
class SignIn:
    """The outcome of one attempt: a viewer, or why not (never the password)."""

    viewer: Viewer | None
    reason: str | None  # None | unknown_user | bad_password | rate_limited | busy | oidc_unknown | oidc_unverified
    message: str
    retry_at: datetime | None = None

    @property
    def passed(self) -> bool:
        return self.viewer is not None


def _shown(name: str) -> str:
    """The tried name as it goes into a log line: escaped and cut short."""
    return repr(name[:64] + ("…" if len(name) > 64 else ""))


def _prune(con: duckdb.DuckDBPyConnection, now: datetime) -> None:
    before = now - FAILURE_RETENTION
    store.run(con, "dash_login_failures_prune", {"before": before, "keep": FAILURE_ROWS_KEPT})
    store.run(con, "dash_known_clients_prune", {"before": before})


def _refuse(
    access: StoreAccess,
    gate: SignInGate,
    name: str,
    client: str,
    reason: str,
    message: str,
    now: datetime,
    counts: tuple[int, int],
) -> SignIn:
    """Record and log a refusal that reached a check; ``counts`` are the name's and the client's."""
    with access.write() as con:
        store.run(
            con,
            "dash_login_failure_insert",
            {"at": now, "name": name[:MAX_NAME_CHARS], "client": client, "reason": reason},
        )
        if gate.prune_due():
            _prune(con, now)
    log.warning(
        "dashboard sign-in refused: user=%s client=%s reason=%s user_failures=%d client_failures=%d",
        _shown(name),
        client,
        reason,
        *counts,
    )
    return SignIn(None, reason, message)


def _turned_away(gate: SignInGate, name: str, client: str, reason: str, message: str, now: datetime) -> SignIn:
    """A refusal before any check: kept in memory; logged at the 1st, 2nd, 4th, … per name and client."""
    count = gate.refuse(Refusal(now, name[:MAX_NAME_CHARS], client, reason, message))
    if count & (count - 1) == 0:
        log.warning(
            "dashboard sign-in refused: user=%s client=%s reason=%s refused=%d", _shown(name), client, reason, count
        )
    return SignIn(None, reason, message)


def _recent_failures(
    con: duckdb.DuckDBPyConnection, throttle: Throttle, name: str, client: str, now: datetime
) -> dict[str, list[datetime]]:
    rows = store.run(
        con, "dash_login_failures_recent", {"name": name, "client": client, "since": throttle.since(now)}
    ).fetchall()
    found: dict[str, list[datetime]] = {"user": [], "pair": [], "client": []}
    for scope, at in rows:
        found[str(scope)].append(at)
    return found


def _known_client(con: duckdb.DuckDBPyConnection, name: str, client: str, now: datetime) -> bool:
    params = {"name": name, "client": client, "since": now - KNOWN_CLIENT_FOR}
    return bool(store.run(con, "dash_known_client", params).fetchall()[0][0])


def sign_in(
    access: StoreAccess,
    name: str,
    password: str,
    *,
    client: str,
    now: datetime,
    throttle: Throttle | None = None,
    gate: SignInGate | None = None,
) -> SignIn:
    """Check a name and password (module doc): reserved before argon2, refusals recorded."""
    throttle = throttle or Throttle()
    gate = gate or gate_for(access.path)
    key = client_key(client)
    named: Key = ("user", name)
    pair: Key = ("pair", name, key)
    by_client: Key = ("client", key)
    # The store is read outside the gate's lock (a read may wait for a writer, and the lock
    # must not be held meanwhile); an attempt released since the read means the read may
    # miss its failure, so it is read again.
    for _ in range(READ_TRIES):
        seen = gate.generation
        with access.read() as con:
            store.require_schema(con)
            row = store.run(con, "dash_user_get", {"name": name}).fetchone()
            failures = _recent_failures(con, throttle, name, key, now)
            known = row is not None and _known_client(con, name, key, now)
        with gate.lock:
            if gate.generation != seen:
                continue
            # A client that signed in as this user counts only its own failures at the name.
            user_failures = (
                failures["pair"] + gate.in_flight(pair) if known else failures["user"] + gate.in_flight(named)
            )
            client_failures = failures["client"] + gate.in_flight(by_client)
            try:
                verify_throttle(throttle, user_failures, client_failures, now)
            except RateLimited as exc:
                limited = _turned_away(gate, name, key, "rate_limited", exc.message, now)
                return SignIn(None, limited.reason, limited.message, exc.retry_at)
            reservation = gate.reserve((named, pair, by_client), now)
            break
    else:
        return _turned_away(gate, name, key, "busy", BUSY, now)
    try:
        after = (len(user_failures) + 1, len(client_failures) + 1)  # this failure counts from now on
        return _check(access, gate, row, name, password, key, now, after)
    finally:
        gate.release(reservation)


def _check(
    access: StoreAccess,
    gate: SignInGate,
    row: tuple[Any, ...] | None,
    name: str,
    password: str,
    client: str,
    now: datetime,
    after: tuple[int, int],
) -> SignIn:
    """The reserved attempt: one argon2 check (known name or not), then its record."""
    with gate.check() as free:
        if not free:
            return _turned_away(gate, name, client, "busy", BUSY, now)
        if row is None:
            password_matches(_dummy_hash(), password)
            ok = rehash = False
        else:
            ok, rehash = password_matches(str(row[3]), password)
        new_hash = _hasher().hash(password) if ok and rehash else None
    if row is None:
        return _refuse(access, gate, name, client, "unknown_user", "unknown user or wrong password", now, after)
    if not ok:
        return _refuse(access, gate, name, client, "bad_password", "unknown user or wrong password", now, after)
    with access.write() as con, store.transaction(con):
        store.run(con, "dash_user_signed_in", {"name": name, "at": now, "password_hash": new_hash})
        store.run(con, "dash_known_client_upsert", {"name": name, "client": client, "at": now})
    log.info("dashboard sign-in: user=%s client=%s role=%s", _shown(name), client, row[1])
    return SignIn(Viewer(str(row[0]), Role(row[1]), row[2], "password"), None, "signed in")


def sign_in_oidc(access: StoreAccess, claims: Mapping[str, Any], claim: str, *, client: str, now: datetime) -> SignIn:
    """Map an identity the OIDC provider vouched for to the dashboard user its ``claim`` names.

    Mapped by e-mail (the default), the provider must also say the address is verified
    (``email_verified`` is JSON ``true``): otherwise whoever registers someone's address
    at a provider that does not check it would sign in as them. Refusals are recorded.
    """
    identity = str(claims.get(claim) or "")
    key = client_key(client)
    if claim == "email" and claims.get("email_verified") is not True:
        message = f"{identity or 'This identity'} is not a verified e-mail address at the identity provider; "
        return _refuse(
            access, gate_for(access.path), identity, key, "oidc_unverified", message + "it cannot sign in.", now, (1, 1)
        )
    with access.read() as con:
        store.require_schema(con)
        row = store.run(con, "dash_user_get", {"name": identity}).fetchone()
    if row is None:
        message = f"{identity or 'This identity'} is not a dashboard user; ask an admin to run `gpumeter users add`."
        return _refuse(access, gate_for(access.path), identity, key, "oidc_unknown", message, now, (1, 1))
    with access.write() as con:
        store.run(con, "dash_user_signed_in", {"name": identity, "at": now, "password_hash": None})
    log.info("dashboard sign-in (oidc): user=%s client=%s role=%s", _shown(identity), key, row[1])
    return SignIn(Viewer(str(row[0]), Role(row[1]), row[2], "oidc"), None, "signed in")


def recent_failures(access: StoreAccess, limit: int = 200) -> list[tuple[datetime, str, str, str]]:
    """The latest refused sign-ins that reached a check (admins' Access page)."""
    with access.read() as con:
        rows = store.run(con, "dash_login_failures", {"limit": limit}).fetchall()
    return [(at, str(n), str(c), str(r)) for at, n, c, r in rows]


def find_user(access: StoreAccess, name: str) -> UserRecord | None:
    """The user of this name as the store has it now."""
    with access.read() as con:
        store.require_schema(con)
        row = store.run(con, "dash_user_get", {"name": name}).fetchone()
    if row is None:
        return None
    n, role, tenant, _hash, created, last, changed = row
    return UserRecord(str(n), Role(role), tenant, created, last, changed)
