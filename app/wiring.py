"""Which commands the app offers, and how one domain's events reach another.

- ``collect`` (metering) and ``serve`` (the app's long-running metering, :mod:`app.serve`)
  are followed by :func:`app.reactions.after_metering`: the audit log records new inventory
  versions and (re)metered usage windows, and budget alerts are decided and delivered
  (``serve`` calls it after each metered run of hours);
- ``usage --format focus`` (metering's command) is billing's FOCUS export;
- ``init``, ``check`` and ``demo`` span domains and live in the app.
"""

from __future__ import annotations

import typer

from app import check, demo, reactions, serve, setup
from audit import commands as audit_commands
from audit.witness_commands import witness_app
from billing import budget_commands
from billing import commands as billing_commands
from billing.focus import usage_focus
from dashboards import commands as dashboards_commands
from metering import commands as metering_commands


def mount(root: typer.Typer) -> None:
    """Mount every domain's commands on ``root``, in the order ``--help`` lists them."""
    root.command("init")(setup.init)
    root.command("check")(check.check)
    root.add_typer(
        metering_commands.build(after_collect=reactions.after_metering, usage_formats={"focus": usage_focus})
    )
    root.add_typer(serve.build(after_collect=reactions.after_metering))
    root.add_typer(billing_commands.commands)
    root.add_typer(budget_commands.budgets_app, name="budgets")
    root.add_typer(audit_commands.audit_app, name="audit")
    root.add_typer(witness_app, name="witness")
    root.add_typer(dashboards_commands.commands)
    tail = typer.Typer(add_completion=False)  # mounted last so that `demo` ends the list
    tail.command("demo")(demo.demo)
    root.add_typer(tail)
