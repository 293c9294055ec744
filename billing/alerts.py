"""Budget alerts: the I/O edge of :mod:`billing.budgets` (store, pricing, clock).

After each ``collect`` or metered hour the app calls :func:`after_metering` with the months
the metering touched:

1. **decide** (:func:`evaluate`): each budgeted tenant's month-to-date net is priced exactly as
   a draft invoice of the month would price it (:func:`month_to_date_nets`, billing's own
   :func:`billing.run.month_plan`, contracts included); every threshold reached and not
   decided before becomes a row of the outbox ``budget_alerts``, with its CloudEvent frozen
   as bytes, in one transaction. The unique key (tenant, month, threshold) makes a second
   decision impossible, across restarts and re-collects alike;
2. **deliver** (:func:`billing.alert_delivery.deliver`): every alert not yet accepted is
   POSTed, signed, to ``[alerts] webhook_url``, and every attempt is recorded.

gpumeter never creates a second event for a threshold. A receiver can still see an event
twice if gpumeter stopped (or the answer was lost) after the receiver took it and before
gpumeter recorded the 2xx; the retry then has the same ``id`` and the same bytes, and the
receiver drops it as already seen.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime
from decimal import Decimal

import duckdb

from billing.alert_delivery import DeliveryReport, alert_settings, deliver, delivery_lines
from billing.budgets import DEFAULT_SOURCE, Budget, Reached, event_body, event_id, newly_reached
from billing.errors import BillingError
from billing.invoice import Kind, Period
from billing.money import ZERO, fmt_amount
from billing.run import month_plan
from gpumeter import store
from gpumeter.config import Config
from gpumeter.errors import GpumeterError
from gpumeter.months import Month

Say = Callable[[str], None]


# --- budgets ---------------------------------------------------------------------------------


def read_budgets(con: duckdb.DuckDBPyConnection) -> dict[str, Budget]:
    """Every tenant's budget, by tenant."""
    return {
        tenant: Budget(tenant, monthly, tuple(thresholds))
        for tenant, monthly, thresholds, _ in store.run(con, "budgets_list").fetchall()
    }


def budget_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[Budget, datetime]]:
    """Every budget with the time it was last set (UTC), by tenant."""
    return [
        (Budget(tenant, monthly, tuple(thresholds)), updated)
        for tenant, monthly, thresholds, updated in store.run(con, "budgets_list").fetchall()
    ]


def set_budget(con: duckdb.DuckDBPyConnection, budget: Budget, *, at: datetime | None = None) -> Budget | None:
    """Set (or replace) a tenant's budget; returns the one it replaced."""
    previous = read_budgets(con).get(budget.tenant)
    store.run(
        con,
        "budgets_set",
        {
            "tenant": budget.tenant,
            "monthly_eur": budget.monthly,
            "thresholds": list(budget.thresholds),
            "updated_at": at or datetime.now(UTC),
        },
    )
    return previous


def remove_budget(con: duckdb.DuckDBPyConnection, tenant: str) -> bool:
    """Remove a tenant's budget; False when it had none. Alerts already decided stay."""
    return bool(store.run(con, "budgets_remove", {"tenant": tenant}).fetchall())


# --- decide ----------------------------------------------------------------------------------


def month_to_date_nets(
    con: duckdb.DuckDBPyConnection, config: Config, month: Month, tenants: Collection[str]
) -> dict[str, Decimal]:
    """Each of ``tenants``' net for ``month`` so far (EUR excl. VAT), as its documents have it.

    Billing's own plan of the month (:func:`billing.run.month_plan`): the usage priced by the
    rate card (tiers, discounts, MIG shares), reservations billed whether used or not, the
    minimum-spend true-up and promotional credits (contracts.toml), exactly as a draft
    invoice prices them. Once documents of the month are issued, the net is theirs (credit
    notes subtracted) plus the corrections pending, i.e. the month as priced now. Only the
    given tenants are planned, so a pricing problem of another tenant does not stop their alerts.
    """
    plan, _ = month_plan(con, config, Period.of(month), only=set(tenants))
    nets = dict.fromkeys(tenants, ZERO)
    for doc in plan.issued:
        nets[doc.tenant] += -doc.net if doc.kind == Kind.CREDIT_NOTE.value else doc.net
    for invoice in plan.pending:
        nets[invoice.tenant] += -invoice.net if invoice.kind is Kind.CREDIT_NOTE else invoice.net
    return nets


def evaluate(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    months: Iterable[Month],
    *,
    source: str = DEFAULT_SOURCE,
    at: datetime | None = None,
) -> list[Reached]:
    """Decide the alerts of ``months``: the thresholds reached now and never decided before.

    Each month's decisions are one transaction (the outbox rows and their frozen events).
    Returns what was decided by this call; nothing at all when no tenant has a budget.
    """
    budgets = read_budgets(con)
    if not budgets:
        return []
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    decided: list[Reached] = []
    for month in sorted(set(months)):
        nets = month_to_date_nets(con, config, month, budgets)
        with store.transaction(con):
            fired: dict[str, set[int]] = {}
            for tenant, threshold in store.run(con, "budget_alerts_fired", {"month": str(month)}).fetchall():
                fired.setdefault(tenant, set()).add(threshold)
            for tenant in sorted(budgets):
                for alert in newly_reached(budgets[tenant], str(month), nets[tenant], fired.get(tenant, set())):
                    params = {
                        "event_id": event_id(source, alert.tenant, alert.month, alert.threshold_percent),
                        "tenant": alert.tenant,
                        "month": alert.month,
                        "threshold_percent": alert.threshold_percent,
                        "budget_eur": alert.budget,
                        "net_eur": alert.net,
                        "decided_at": moment,
                        "body": event_body(alert, source=source, at=moment),
                    }
                    if store.run(con, "budget_alert_insert", params).fetchall():
                        decided.append(alert)
    return decided


# --- after a collect or a metered hour --------------------------------------------------------


def describe(alert: Reached) -> str:
    """One line about a decided alert."""
    return (
        f"budget alert: tenant {alert.tenant} reached {alert.threshold_percent}% of its {alert.month} budget "
        f"({fmt_amount(alert.net)} of {fmt_amount(alert.budget)} EUR excl. VAT)"
    )


def after_metering(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    months: Iterable[Month],
    *,
    secret: str | None,
    say: Say,
    at: datetime | None = None,
) -> DeliveryReport:
    """Decide the alerts of ``months``, then deliver every pending one (also older ones).

    Settings are read only when there is a budget or a pending alert, so a site without
    budgets never depends on ``[alerts]``. A decision that fails (usage that cannot be
    priced) is raised after the pending alerts have been delivered.
    """
    budgets = read_budgets(con)
    pending = store.run(con, "budget_alerts_pending").fetchall()
    if not budgets and not pending:
        return DeliveryReport()
    settings = alert_settings(config)
    failure: GpumeterError | None = None
    months = sorted(set(months))
    try:
        for alert in evaluate(con, config, months, source=settings.source, at=at):
            say(describe(alert))
    except GpumeterError as exc:
        failure = exc
    report = deliver(con, settings, secret, config_path=str(config.path))
    for line in delivery_lines(report):
        say(line)
    if failure is not None:
        raise BillingError(
            f"budget alerts for {', '.join(map(str, months))} not decided (the metered usage is stored): "
            + failure.message,
            file=failure.file,
            line=failure.line,
            value=failure.value,
        ) from failure
    return report
