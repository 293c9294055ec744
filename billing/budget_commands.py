"""``gpumeter budgets …``: monthly budgets per tenant and their threshold alerts.

- ``set TENANT --monthly EUR [--thresholds 50,80,100]`` — set or replace a tenant's budget;
- ``list`` — every budget (stdout);
- ``remove TENANT`` — drop a budget (alerts already decided are still delivered);
- ``alerts [--month YYYY-MM]`` — the decided alerts and their deliveries (stdout);
- ``deliver`` — send every pending alert now; exit 1 while any stays pending.

Alerts are decided after each ``collect`` or metered hour (:mod:`billing.alerts`). This is
the only place of billing that reads ``GPUMETER_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from billing import alert_delivery, alerts
from billing.budgets import DEFAULT_THRESHOLDS, Budget, BudgetValueError, parse_monthly, parse_thresholds
from billing.errors import BillingError
from billing.money import fmt_amount
from gpumeter import store
from gpumeter.commandline import ConfigOpt, MonthFilterOpt, get_config, out, say
from metering.inventory import parse_tenants, read_source

budgets_app = typer.Typer(
    name="budgets",
    help="Monthly budgets per tenant; alerts (signed CloudEvents) when thresholds are reached.",
    no_args_is_help=True,
    add_completion=False,
)


def _monthly(value: str) -> str:
    try:
        return str(parse_monthly(value))
    except BudgetValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _thresholds(value: str) -> str:
    try:
        return ",".join(str(t) for t in parse_thresholds(value))
    except BudgetValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


TenantArg = Annotated[str, typer.Argument(help="Tenant id, as in tenants.csv.", show_default=False)]


def _percent_list(thresholds: tuple[int, ...]) -> str:
    return ", ".join(f"{t}%" for t in thresholds)


@budgets_app.command("set")
def set_budget(
    tenant: TenantArg,
    monthly: Annotated[
        str,
        typer.Option(
            "--monthly", help="Budget per calendar month (UTC), EUR excl. VAT, e.g. 1500.00.", callback=_monthly
        ),
    ],
    thresholds: Annotated[
        str,
        typer.Option("--thresholds", help="Alert at these percentages of the budget (1-1000).", callback=_thresholds),
    ] = ",".join(str(t) for t in DEFAULT_THRESHOLDS),
    config: ConfigOpt = None,
) -> None:
    """Set (or replace) a tenant's monthly budget; alerts follow each collect or metered hour."""
    cfg = get_config(config)
    settings = alert_delivery.alert_settings(cfg)  # a bad [alerts] section is said now, not at the next collect
    known = parse_tenants(read_source("tenants", cfg.inventory.tenants))
    if tenant not in known:
        raise BillingError("no such tenant in tenants.csv", file=cfg.inventory.tenants, value=tenant, tenant=tenant)
    budget = Budget(tenant, parse_monthly(monthly), parse_thresholds(thresholds))
    with store.opened(cfg, "write") as con:
        previous = alerts.set_budget(con, budget)
    text = f"budget of {tenant}: {fmt_amount(budget.monthly)} EUR per month excl. VAT, alerts at " + _percent_list(
        budget.thresholds
    )
    if previous is not None:
        text += f" (was {fmt_amount(previous.monthly)} EUR at {_percent_list(previous.thresholds)})"
    say(text)
    say("thresholds already alerted this month stay alerted; the others are checked after the next collect")
    if settings.webhook_url is None:
        say(f"warning: no [alerts] webhook_url in {cfg.path}: alerts will be kept pending until one is set")


@budgets_app.command("list")
def list_budgets(config: ConfigOpt = None) -> None:
    """Every tenant's budget."""
    cfg = get_config(config)
    with store.opened(cfg, "read") as con:
        rows = alerts.budget_rows(con)
    table = Table(title="Budgets (EUR excl. VAT per month)", title_justify="left")
    table.add_column("tenant", no_wrap=True)
    table.add_column("monthly", justify="right", no_wrap=True)
    table.add_column("thresholds", no_wrap=True)
    table.add_column("set at (UTC)", no_wrap=True)
    for budget, updated in rows:
        table.add_row(
            budget.tenant,
            fmt_amount(budget.monthly),
            ",".join(str(t) for t in budget.thresholds),
            updated.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)
    if not rows:
        say("no budgets: set one with `gpumeter budgets set TENANT --monthly EUR`")


@budgets_app.command("remove")
def remove_budget(tenant: TenantArg, config: ConfigOpt = None) -> None:
    """Remove a tenant's budget (alerts already decided are still delivered)."""
    cfg = get_config(config)
    with store.opened(cfg, "write") as con:
        removed = alerts.remove_budget(con, tenant)
    if not removed:
        raise BillingError("this tenant has no budget", value=tenant, tenant=tenant)
    say(f"budget of {tenant} removed")


@budgets_app.command("alerts")
def list_alerts(month: MonthFilterOpt = None, config: ConfigOpt = None) -> None:
    """The alerts decided so far, with their deliveries."""
    cfg = get_config(config)
    with store.opened(cfg, "read") as con:
        rows = store.run(con, "budget_alerts_report", {"month": month}).fetchall()
    table = Table(title="Budget alerts", title_justify="left")
    for name in ("month", "tenant", "threshold", "budget", "net", "id", "status", "attempts", "last answer"):
        table.add_column(name, no_wrap=name != "last answer")
    for m, tenant, threshold, budget, net, event, _, delivered, attempts, outcome, status, error in rows:
        state = f"delivered {delivered:%Y-%m-%d %H:%M:%S}" if delivered else "pending"
        last = "" if outcome is None else outcome + (f" {status}" if status is not None else "")
        if error and not delivered:
            last += f": {error}"
        table.add_row(
            m, tenant, f"{threshold}%", fmt_amount(budget), fmt_amount(net), event, state, str(attempts), last
        )
    out.print(table)


@budgets_app.command("deliver")
def deliver(config: ConfigOpt = None) -> None:
    """Send every pending alert now (exit 1 while any stays pending)."""
    cfg = get_config(config)
    settings = alert_delivery.alert_settings(cfg)
    with store.opened(cfg, "write"):  # checks the schema; each write below opens the store again
        pass
    report = alert_delivery.deliver(
        store.Writer(cfg.store.database),
        settings,
        os.environ.get(alert_delivery.SECRET_ENV),
        config_path=str(cfg.path),
    )
    if report.delivered:
        say(f"budget alerts: {len(report.delivered)} delivered")
    if report.pending:
        raise BillingError(f"{report.pending} budget alert(s) still pending: {report.problem}")
    if not report.delivered:
        say("no budget alert pending")
