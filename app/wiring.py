"""Which commands the app offers, and how one domain's events reach another.

- ``collect`` (metering) and ``serve`` (the app's long-running metering, :mod:`app.serve`)
  are followed by :func:`audit.record.after_collect`, which logs new inventory versions and
  (re)metered usage windows in the audit log;
- ``usage --format focus`` (metering's command) is billing's FOCUS export;
- ``init`` and ``demo`` span domains and live in the app.
"""

from __future__ import annotations

import duckdb
import typer

from app import demo, serve, setup
from audit import commands as audit_commands
from audit import record
from billing import commands as billing_commands
from billing.focus import usage_focus
from dashboards import commands as dashboards_commands
from gpumeter.config import Config
from metering import commands as metering_commands
from metering.run import CollectReport


def _log_collect(con: duckdb.DuckDBPyConnection, cfg: Config, report: CollectReport) -> None:
    del report  # the log reads what the collect wrote from the store itself
    record.after_collect(con, cfg)


def mount(root: typer.Typer) -> None:
    """Mount every domain's commands on ``root``, in the order ``--help`` lists them."""
    root.command("init")(setup.init)
    root.add_typer(metering_commands.build(after_collect=_log_collect, usage_formats={"focus": usage_focus}))
    root.add_typer(serve.build(after_collect=_log_collect))
    root.add_typer(billing_commands.commands)
    root.add_typer(audit_commands.audit_app, name="audit")
    root.add_typer(dashboards_commands.commands)
    tail = typer.Typer(add_completion=False)  # mounted last so that `demo` ends the list
    tail.command("demo")(demo.demo)
    root.add_typer(tail)
