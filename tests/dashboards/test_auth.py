"""Users, argon2id hashes, sign-in with backoff and logged refusals, and ``gpumeter users``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from dashboards.auth import add_user, list_users, remove_user, sign_in
from dashboards.errors import UserError
from dashboards.ratelimit import Backoff, Throttle
from dashboards.roles import Role
from gpumeter import store
from gpumeter.config import load_config
from tests.dashboards.fixtures import CREATED, PASSWORD, access, rows

T0 = datetime(2026, 11, 30, 9, tzinfo=UTC)


def test_passwords_are_stored_as_argon2id_only(empty_site: Path) -> None:
    (stored,) = rows(empty_site, "SELECT password_hash FROM dashboard_users WHERE name = 'fin'")
    assert str(stored[0]).startswith("$argon2id$v=19$")
    assert PASSWORD not in str(stored[0])
    dump = rows(empty_site, "SELECT * FROM dashboard_users")
    assert not any(PASSWORD in str(v) for row in dump for v in row)


def test_adding_users_checks_role_tenant_name_and_password(demo_site: Path) -> None:
    con = store.connect(load_config(demo_site).store.database)
    try:
        with pytest.raises(UserError, match="unknown role"):
            add_user(con, "x", "root", None, PASSWORD, at=CREATED)
        with pytest.raises(UserError, match="scopes an auditor"):
            add_user(con, "x", "finance", "laguna-lab", PASSWORD, at=CREATED)
        with pytest.raises(UserError, match="no such tenant"):
            add_user(con, "x", "auditor", "nobody-inc", PASSWORD, at=CREATED)
        with pytest.raises(UserError, match="the tenant role needs --tenant T"):
            add_user(con, "x", "tenant", None, PASSWORD, at=CREATED)
        with pytest.raises(UserError, match="no such tenant"):
            add_user(con, "x", "tenant", "nobody-inc", PASSWORD, at=CREATED)
        assert "x" not in {u.name for u in list_users(con)}
        add_user(con, "x", "tenant", "laguna-lab", PASSWORD, at=CREATED)
        (x,) = [u for u in list_users(con) if u.name == "x"]
        assert (x.role, x.tenant, x.viewer().tenant) == (Role.TENANT, "laguna-lab", "laguna-lab")
        with pytest.raises(UserError, match="at least 12 characters"):
            add_user(con, "x", "finance", None, "short", at=CREATED)
        with pytest.raises(UserError, match="control characters"):
            add_user(con, "x\x1b[31m", "finance", None, PASSWORD, at=CREATED)
        with pytest.raises(UserError, match="exists"):
            add_user(con, "fin", "admin", None, PASSWORD, at=CREATED)
        add_user(con, "fin", "auditor", "laguna-lab", PASSWORD + "!", at=CREATED, replace=True)
        (fin,) = [u for u in list_users(con) if u.name == "fin"]
        assert (fin.role, fin.tenant) == (Role.AUDITOR, "laguna-lab")
        remove_user(con, "fin")
        with pytest.raises(UserError, match="no dashboard user"):
            remove_user(con, "fin")
        assert "fin" not in {u.name for u in list_users(con)}
    finally:
        con.close()


def test_sign_in_and_refusals_are_recorded_and_logged_without_the_password(
    empty_site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = access(empty_site)
    caplog.set_level(logging.INFO, logger="gpumeter.dashboards")
    ok = sign_in(db, "fin", PASSWORD, client="203.0.113.7", now=T0)
    assert ok.passed and ok.viewer is not None and ok.viewer.role is Role.FINANCE
    secret = "s3cret-guess-s3cret-guess"
    bad = sign_in(db, "fin", secret, client="203.0.113.7", now=T0 + timedelta(seconds=1))
    unknown = sign_in(db, "nobody", secret, client="203.0.113.7", now=T0 + timedelta(seconds=2))
    assert (bad.passed, bad.reason, unknown.reason) == (False, "bad_password", "unknown_user")
    assert bad.message == unknown.message == "unknown user or wrong password"  # no hint which names exist
    assert rows(empty_site, "SELECT name, client, reason FROM dashboard_login_failures ORDER BY id") == [
        ("fin", "203.0.113.7", "bad_password"),
        ("nobody", "203.0.113.7", "unknown_user"),
    ]
    assert rows(empty_site, "SELECT last_login_at FROM dashboard_users WHERE name = 'fin'") == [(T0,)]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    line = "dashboard sign-in refused: user={} client=203.0.113.7 reason={} user_failures=1 client_failures={}"
    assert refusals == [line.format("'fin'", "bad_password", 1), line.format("'nobody'", "unknown_user", 2)]
    assert not any(secret in r.getMessage() or PASSWORD in r.getMessage() for r in caplog.records)
    assert not any(secret in str(v) for row in rows(empty_site, "SELECT * FROM dashboard_login_failures") for v in row)


def test_backoff_per_user_then_success_resets_the_user_not_the_client(empty_site: Path) -> None:
    db = access(empty_site)
    throttle = Throttle(user=Backoff(3, 10.0, 60.0), client=Backoff(5, 10.0, 60.0))
    t = T0
    for i in range(3):
        tried = sign_in(db, "fin", f"wrong password {i:04d}", client="198.51.100.1", now=t, throttle=throttle)
        assert tried.reason == "bad_password"
        t += timedelta(seconds=1)
    # The 3rd failure (at T0+2s) starts a 10 s backoff: even the right password is not checked.
    limited = sign_in(db, "fin", PASSWORD, client="198.51.100.1", now=t, throttle=throttle)
    assert limited.reason == "rate_limited" and limited.retry_at == T0 + timedelta(seconds=12)
    assert "try again in 9 s" in limited.message
    # Another client is refused too: the backoff belongs to the user name.
    assert sign_in(db, "fin", PASSWORD, client="192.0.2.9", now=t, throttle=throttle).reason == "rate_limited"
    # Waiting it out is enough (refusals while limited do not count); success resets the user.
    t = T0 + timedelta(seconds=12)
    assert sign_in(db, "fin", PASSWORD, client="198.51.100.1", now=t, throttle=throttle).passed
    again = sign_in(db, "fin", "wrong again, once", client="192.0.2.9", now=t, throttle=throttle)
    assert again.reason == "bad_password"
    # The first client has 3 counted failures; two more on other names trip its own backoff.
    t += timedelta(seconds=1)
    for name in ("comp", "aud"):
        sign_in(db, name, "wrong password xx", client="198.51.100.1", now=t, throttle=throttle)
    by_client = sign_in(db, "ada", PASSWORD, client="198.51.100.1", now=t, throttle=throttle)
    assert by_client.reason == "rate_limited" and "from this address" in by_client.message
    assert sign_in(db, "ada", PASSWORD, client="192.0.2.9", now=t, throttle=throttle).passed


def test_a_rehash_replaces_weaker_parameters(empty_site: Path) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    con = store.connect(load_config(empty_site).store.database)
    try:
        con.execute("UPDATE dashboard_users SET password_hash = ? WHERE name = 'comp'", [weak])
    finally:
        con.close()
    assert sign_in(access(empty_site), "comp", PASSWORD, client="local", now=T0).passed
    ((stored,),) = rows(empty_site, "SELECT password_hash FROM dashboard_users WHERE name = 'comp'")
    assert stored != weak and not PasswordHasher().check_needs_rehash(str(stored))


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def test_users_cli(empty_site: Path, cli: CliRunner) -> None:
    from app.cli import app

    cfg = ["--config", str(empty_site)]
    added = cli.invoke(app, ["users", "add", "erin", "--role", "compliance", *cfg], env={"GPUMETER_PASSWORD": PASSWORD})
    assert added.exit_code == 0, added.output
    prompted = cli.invoke(
        app,
        ["users", "add", "fay", "--role", "auditor", *cfg],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        env={"GPUMETER_PASSWORD": ""},
    )
    assert prompted.exit_code == 0, prompted.output
    assert PASSWORD not in prompted.output
    listed = cli.invoke(app, ["users", "list", *cfg])
    assert listed.exit_code == 0
    assert "erin" in listed.output and "compliance" in listed.output and "$argon2" not in listed.output
    short = cli.invoke(app, ["users", "add", "gus", "--role", "admin", *cfg], env={"GPUMETER_PASSWORD": "tiny"})
    assert short.exit_code != 0 and isinstance(short.exception, UserError)
    scoped = cli.invoke(
        app, ["users", "add", "hal", "--role", "finance", "--tenant", "acme", *cfg], env={"GPUMETER_PASSWORD": PASSWORD}
    )
    assert isinstance(scoped.exception, UserError) and "scopes an auditor" in str(scoped.exception)
    removed = cli.invoke(app, ["users", "remove", "erin", *cfg])
    assert removed.exit_code == 0
    assert {n for (n,) in rows(empty_site, "SELECT name FROM dashboard_users")} == {"ada", "fin", "comp", "aud", "fay"}


def test_dashboard_command_checks_before_serving(tmp_path: Path, cli: CliRunner) -> None:
    from app.cli import app
    from dashboards.commands import streamlit_argv
    from gpumeter.errors import ConfigError, StoreError
    from testing.stores import SITE_CONFIG

    (tmp_path / "gpumeter.toml").write_text(SITE_CONFIG, encoding="utf-8")
    missing = cli.invoke(app, ["dashboard", "--port", "8599", "--config", str(tmp_path / "gpumeter.toml")])
    assert isinstance(missing.exception, StoreError) and "run `gpumeter init` first" in str(missing.exception)
    (tmp_path / "gpumeter.toml").write_text(SITE_CONFIG + "\n[dashboard]\noidc = 1\n", encoding="utf-8")
    bad = cli.invoke(app, ["dashboard", "--config", str(tmp_path / "gpumeter.toml")])
    assert isinstance(bad.exception, ConfigError)
    line = len((SITE_CONFIG + "\n[dashboard]\noidc = 1\n").splitlines())
    assert bad.exception.explain() == (
        f"{tmp_path / 'gpumeter.toml'}:{line}: [dashboard] oidc must be true or false, not an integer (value 1)"
    )
    argv = streamlit_argv("127.0.0.1", 8599)
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("dashboards/app.py")
    pairs = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert pairs["--server.address"] == "127.0.0.1" and pairs["--server.port"] == "8599"
    assert pairs["--server.headless"] == "true" and pairs["--browser.gatherUsageStats"] == "false"
