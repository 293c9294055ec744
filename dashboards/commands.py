"""``gpumeter dashboard``, ``gpumeter users add|list|remove`` and ``gpumeter export``, as a ``typer.Typer``.

``dashboard`` checks the configuration and the store, then replaces itself with
``streamlit run dashboards/app.py`` (headless, bound to ``--host``/``--port``), passing the
configuration's path in ``GPUMETER_DASHBOARD_CONFIG``; the audit passphrase, when set,
passes through unchanged so the dashboards can sign bundles.

``users add`` reads the password from ``GPUMETER_PASSWORD`` or prompts for it twice,
hidden; only its argon2id hash is stored.

``export --tenant T --out DIR`` writes the tenant's exit package (:mod:`dashboards.exit_package`):
the same tenant reader as My account, and the auditor bundles signed with the audit key
(its passphrase from ``GPUMETER_AUDIT_PASSPHRASE``, as for ``audit export``).
"""

from __future__ import annotations

import getpass
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from audit import highwater, keys
from dashboards import account, auth
from dashboards.exit_package import check_out_dir, write_package
from dashboards.settings import CONFIG_ENV, PASSPHRASE_ENV, dashboard_settings
from gpumeter import store
from gpumeter.commandline import ConfigOpt, err, get_config, out, say

PASSWORD_ENV = "GPUMETER_PASSWORD"  # noqa: S105 - the name of the variable, not a secret
APP = Path(__file__).resolve().with_name("app.py")

commands = typer.Typer(add_completion=False)
users_app = typer.Typer(
    name="users",
    help="Dashboard users: add, list, remove (roles finance, compliance, auditor, tenant, admin).",
    no_args_is_help=True,
)
commands.add_typer(users_app, name="users")


def streamlit_argv(host: str, port: int) -> list[str]:
    """The command that serves the dashboards (no telemetry, no file watching, no browser)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--client.showErrorDetails",
        "none",
        "--global.developmentMode",
        "false",
    ]


@commands.command()
def dashboard(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8501,
    config: ConfigOpt = None,
) -> None:
    """Serve the Finance, Utilisation, Compliance and Auditor dashboards (Streamlit)."""
    cfg = get_config(config)
    dashboard_settings(cfg)  # a bad [dashboard] table stops here, with its key named
    with store.opened(cfg, "read") as con:
        users = auth.list_users(con)
    if not users:
        say("warning: no dashboard user yet; add one with `gpumeter users add NAME --role admin`")
    env = dict(os.environ)
    env[CONFIG_ENV] = str(cfg.path)
    say(f"serving the dashboards of {cfg.path} on http://{host}:{port}")
    sys.stderr.flush()
    sys.stdout.flush()
    argv = streamlit_argv(host, port)
    os.execve(argv[0], argv, env)  # noqa: S606 - replaces this process; argv is fixed, no shell


def _password() -> str:
    given = os.environ.get(PASSWORD_ENV)
    if given:
        return given
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return password


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Sign-in name (with OIDC: the identity's e-mail).")],
    role: Annotated[str, typer.Option("--role", help="finance, compliance, auditor, tenant or admin.")],
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Bind a tenant user to this tenant (required), or scope an auditor to it."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Change an existing user's role and password (ends their sessions).")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Add a dashboard user; the password comes from GPUMETER_PASSWORD or a hidden prompt."""
    cfg = get_config(config)
    auth.check_name(name)
    auth.check_scope(role, tenant)  # before the password prompt: a wrong role or scope asks for nothing
    password = _password()
    auth.check_password_policy(password)
    with store.opened(cfg, "write") as con:
        user = auth.add_user(con, name, role, tenant, password, at=datetime.now(UTC), replace=replace)
    scope = f" for tenant {user.tenant}" if user.tenant else ""
    say(f"dashboard user {user.name!r}: role {user.role.value}{scope}")


@users_app.command("list")
def users_list(config: ConfigOpt = None) -> None:
    """List dashboard users (never their hashes)."""
    cfg = get_config(config)
    with store.opened(cfg, "read") as con:
        users = auth.list_users(con)
    table = Table("name", "role", "tenant", "created (UTC)", "last sign-in (UTC)")
    for u in users:
        table.add_row(
            u.name,
            u.role.value,
            u.tenant or "",
            f"{u.created_at:%Y-%m-%d %H:%M}",
            f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "",
        )
    out.print(table)


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="The user to remove.")], config: ConfigOpt = None) -> None:
    """Remove a dashboard user; their open sessions end at their next page load."""
    cfg = get_config(config)
    with store.opened(cfg, "write") as con:
        auth.remove_user(con, name)
    say(f"dashboard user {name!r} removed")


@commands.command("export")
def export(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant whose data to export.")],
    out_dir: Annotated[Path, typer.Option("--out", help="A new (or empty) folder for the package.")],
    config: ConfigOpt = None,
) -> None:
    """Write one tenant's exit package: usage, FOCUS, invoices, auditor bundles, manifest."""
    cfg = get_config(config)
    with store.opened(cfg, "read") as con:
        account.tenant_info(con, tenant)  # refusals before the key, the lock or any file
    check_out_dir(out_dir)
    signer = keys.load_signer(cfg.audit.signing_key, os.environ.get(PASSPHRASE_ENV) or None, cfg.audit.origin)
    mark = highwater.mark_path(cfg.audit.signing_key)
    with store.opened(cfg, "write") as con, err.status(f"writing the exit package of {tenant}"):
        done = write_package(
            con,
            cfg,
            signer,
            tenant,
            out_dir,
            by=getpass.getuser(),
            at=datetime.now(UTC),
            after_bundle=lambda note: highwater.record(mark, note),
        )
    say(
        f"tenant {tenant}: {done.files} files for {len(done.months)} month(s), {done.documents} document(s), "
        f"{done.bundles} auditor bundle(s); manifest.json lists each with its SHA-256"
    )
    typer.echo(str(done.out))
