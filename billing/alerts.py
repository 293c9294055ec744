"""Budget alerts: the I/O edge of :mod:`billing.budgets` (store, pricing, webhook, clock).

After each ``collect`` or metered hour the app calls :func:`after_metering` with the months
the metering touched:

1. **decide** (:func:`evaluate`): each budgeted tenant's month-to-date net is priced exactly as
   a draft invoice of the month would price it (:func:`month_to_date_nets`, billing's own
   :func:`billing.plan.plan_month`); every threshold reached and not decided before becomes a
   row of the outbox ``budget_alerts``, with its CloudEvent frozen as bytes, in one
   transaction. The unique key (tenant, month, threshold) makes a second decision impossible,
   across restarts and re-collects alike;
2. **deliver** (:func:`deliver`): every undelivered row is POSTed to ``[alerts] webhook_url``,
   signed; each attempt is written to ``budget_deliveries`` *before* its request goes out and
   completed when it ends, and a 2xx marks the row delivered. Within a run an alert is tried
   up to ``attempts`` times with exponential backoff (``backoff_s`` doubling, capped at
   :data:`MAX_BACKOFF_S`); what stays pending is retried by the next collect, the next metered
   hour, or ``gpumeter budgets deliver``. When the endpoint does not answer (or answers 5xx,
   408 or 429) the run stops there instead of trying every other alert against it; another
   refusal (4xx) concerns that alert only, and the run goes on with the next.

gpumeter never creates a second event for a threshold. A receiver can still see an event
twice if gpumeter stopped (or the answer was lost) after the receiver took it and before
gpumeter recorded the 2xx; the retry then has the same ``id`` and the same bytes, and the
receiver drops it as already seen. Without ``GPUMETER_WEBHOOK_SECRET`` nothing is sent
unsigned: alerts stay pending and the run says so once. Each request is bounded by
``timeout_s`` in total and reads at most :data:`MAX_ANSWER_BYTES` of the answer. The webhook
is reached directly: proxy variables of the environment are not used.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb
import httpx

from billing.budgets import (
    CONTENT_TYPE,
    DEFAULT_SOURCE,
    SIGNATURE_HEADER,
    Budget,
    Reached,
    event_body,
    event_id,
    newly_reached,
    signature,
)
from billing.errors import BillingError
from billing.invoice import Period, aggregate_usage
from billing.money import ZERO, fmt_amount
from billing.plan import plan_month
from billing.run import default_usage, read_rates, read_tenants
from gpumeter import store
from gpumeter.config import Config
from gpumeter.errors import ConfigError, GpumeterError
from gpumeter.months import Month
from gpumeter.tomllines import key_line

SECRET_ENV = "GPUMETER_WEBHOOK_SECRET"  # noqa: S105 - the name of the variable, not a secret
"""The environment variable the CLI reads the signing secret from (never this module)."""
MAX_BACKOFF_S = 60.0
MAX_ANSWER_BYTES = 1024
MAX_ERROR_CHARS = 500
RETRY_STATUSES = frozenset({408, 429})
"""4xx answers that mean "later", treated like a 5xx: the endpoint is not taking alerts now."""

Say = Callable[[str], None]
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- [alerts] in gpumeter.toml ---------------------------------------------------------------


@dataclass(frozen=True)
class AlertSettings:
    """``[alerts]``: where alerts go and how hard each run tries."""

    webhook_url: str | None = None
    source: str = DEFAULT_SOURCE
    timeout_s: float = 10.0
    attempts: int = 3
    backoff_s: float = 1.0

    def delay_s(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (1-based): exponential, capped."""
        return float(min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))


_ALERT_KEYS = ("webhook_url", "source", "timeout_s", "attempts", "backoff_s")
_SECTION = re.compile(r"^\s*\[\s*alerts\s*\]\s*(#.*)?$")


def _line(config: Config, key: str | None) -> int | None:
    """The line of ``[alerts]`` (or of ``key`` inside it) in gpumeter.toml, for errors."""
    try:
        text = config.path.read_text(encoding="utf-8")
    except OSError:
        return None
    start = next((i for i, ln in enumerate(text.splitlines(), start=1) if _SECTION.match(ln)), None)
    return start if key is None else key_line(text, start, key)


def check_webhook_url(url: str) -> str | None:
    """Why ``url`` cannot be a webhook (None when it can): http(s), a host, no credentials."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (the signature is what authenticates gpumeter)"
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    return None


def alert_settings(config: Config) -> AlertSettings:
    """Parse ``[alerts]``; an unknown key or a bad value names the file, line and value."""
    raw = config.raw.get("alerts", {})
    if not isinstance(raw, dict):
        raise ConfigError("[alerts] must be a table", file=config.path, value=raw)

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"[alerts] {key} {why}", file=config.path, line=_line(config, key), value=raw.get(key))

    unknown = sorted(set(raw) - set(_ALERT_KEYS))
    if unknown:
        raise ConfigError(
            f"[alerts] has an unknown key (keys: {', '.join(_ALERT_KEYS)})",
            file=config.path,
            line=_line(config, unknown[0]),
            value=unknown[0],
        )
    values: dict[str, Any] = {}
    url = raw.get("webhook_url")
    if url is not None:
        if not isinstance(url, str):
            raise bad("webhook_url", "must be a string")
        why = check_webhook_url(url)
        if why:
            raise bad("webhook_url", why)
        values["webhook_url"] = url
    source = raw.get("source")
    if source is not None:
        if not isinstance(source, str) or not source.strip() or len(source) > 500:
            raise bad("source", "must be a non-empty string (a URI-reference) of at most 500 characters")
        values["source"] = source
    for key, positive, high in (("timeout_s", True, 300.0), ("backoff_s", False, MAX_BACKOFF_S)):
        if key in raw:
            v = raw[key]
            low_ok = isinstance(v, int | float) and (v > 0 if positive else v >= 0)
            if isinstance(v, bool) or not isinstance(v, int | float) or not low_ok or v > high:
                floor = "more than 0" if positive else "0"
                raise bad(key, f"must be a number of seconds, from {floor} to {high:g}")
            values[key] = float(v)
    if "attempts" in raw:
        v = raw["attempts"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 10:
            raise bad("attempts", "must be a whole number from 1 to 10")
        values["attempts"] = v
    return AlertSettings(**values)


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
            "updated_at": at or _utcnow(),
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
    """Each of ``tenants``' net for ``month`` so far (EUR excl. VAT), as its draft invoice would have it.

    Billing's plan of the month, with nothing counted as issued: the full month's usage priced
    by the rate card (tiers, discounts, MIG shares). Only the given tenants' usage is priced,
    so a pricing problem of another tenant does not stop their alerts.
    """
    period = Period.of(month)
    groups = [g for g in aggregate_usage(default_usage(con, period.month)) if g.tenant in tenants]
    plan = plan_month(
        period=period,
        groups=groups,
        card=read_rates(config.billing.rates),
        tenants=read_tenants(con),
        supplier=config.billing.supplier,
        payment_terms_days=config.billing.payment_terms_days,
        issued=(),
        positions={},
    )
    nets = dict.fromkeys(tenants, ZERO)
    for invoice in plan.pending:
        nets[invoice.tenant] += invoice.net
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
    moment = (at or _utcnow()).astimezone(UTC)
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


# --- deliver ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one request got back: a status, or None and why there was none."""

    status: int | None
    error: str | None

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def endpoint_down(self) -> bool:
        """No answer, or one that says the endpoint cannot take alerts now."""
        return self.status is None or self.status >= 500 or self.status in RETRY_STATUSES

    @property
    def outcome(self) -> str:
        if self.accepted:
            return "accepted"
        return "unreachable" if self.status is None else "refused"


Post = Callable[[str, bytes, Mapping[str, str], float], Answer]


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_ERROR_CHARS else flat[: MAX_ERROR_CHARS - 1] + "…"


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Answer:
    """POST ``body`` to ``url``; the whole exchange is bounded by ``timeout_s``.

    The request runs on a daemon thread so that an endpoint that trickles its answer cannot
    hold the caller past the deadline; redirects are not followed (a 3xx is not acceptance).
    """
    answers: list[Answer] = []

    def work() -> None:
        try:
            with (
                httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client,
                client.stream("POST", url, content=body, headers=dict(headers)) as resp,
            ):
                head = b""
                for chunk in resp.iter_bytes():
                    head += chunk
                    if len(head) >= MAX_ANSWER_BYTES:
                        break
                error = None
                if not 200 <= resp.status_code < 300:
                    text = head[:MAX_ANSWER_BYTES].decode("utf-8", "replace").strip()
                    error = _clip(f"HTTP {resp.status_code}" + (f": {text}" if text else ""))
                answers.append(Answer(resp.status_code, error))
        except httpx.HTTPError as exc:
            answers.append(Answer(None, _clip(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)))

    worker = threading.Thread(target=work, name="gpumeter-webhook", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if answers:
        return answers[0]
    return Answer(None, f"no answer within {timeout_s:g} s")


@dataclass
class DeliveryReport:
    """One delivery pass: what was accepted, what stays pending and why."""

    delivered: list[str] = field(default_factory=list)  # event ids accepted in this pass
    pending: int = 0  # alerts still undelivered after the pass
    problem: str | None = None  # why some stay pending, in one line


def deliver(
    target: duckdb.DuckDBPyConnection | store.Writer,
    settings: AlertSettings,
    secret: str | None,
    *,
    config_path: str = "gpumeter.toml",
    clock: Clock = _utcnow,
    sleep: Callable[[float], None] = time.sleep,
    send: Post = post,
) -> DeliveryReport:
    """Send every undelivered alert (see the module docstring); nothing is ever dropped.

    ``target`` is an open connection, or a :class:`gpumeter.store.Writer` that opens the
    store only for each write (so that readers get in while a request waits).
    """
    with store.session(target) as con:
        pending = store.run(con, "budget_alerts_pending").fetchall()
    report = DeliveryReport(pending=len(pending))
    if not pending:
        return report
    if settings.webhook_url is None:
        report.problem = f"no [alerts] webhook_url in {config_path}: nothing sent"
        return report
    if not secret or not secret.strip():
        report.problem = f"{SECRET_ENV} is not set: nothing sent (alerts are never sent unsigned)"
        return report
    url = settings.webhook_url
    for event, tenant, month, threshold, body in pending:
        answer = _send(target, url, settings, secret, event, bytes(body), clock, sleep, send)
        if answer.accepted:
            report.delivered.append(event)
            continue
        what = f"alert {tenant} {month} {threshold}%: {answer.error}"
        if answer.endpoint_down:
            report.problem = f"webhook {url} is not taking alerts ({what})"
            break
        report.problem = f"webhook {url} refused {what}"
    report.pending = len(pending) - len(report.delivered)
    return report


def _send(
    target: duckdb.DuckDBPyConnection | store.Writer,
    url: str,
    settings: AlertSettings,
    secret: str,
    event: str,
    body: bytes,
    clock: Clock,
    sleep: Callable[[float], None],
    send: Post,
) -> Answer:
    """Up to ``settings.attempts`` tries of one alert, each recorded; the last answer."""
    headers = {"Content-Type": CONTENT_TYPE, SIGNATURE_HEADER: signature(secret, body), "User-Agent": "gpumeter"}
    answer = Answer(None, "not sent")
    for attempt in range(1, settings.attempts + 1):
        with store.session(target) as con:
            attempt_id = store.run(
                con, "budget_delivery_start", {"event_id": event, "url": url, "started_at": clock()}
            ).scalar()
        answer = send(url, body, headers, settings.timeout_s)
        with store.session(target) as con, store.transaction(con):
            finished = clock()
            store.run(
                con,
                "budget_delivery_end",
                {
                    "id": attempt_id,
                    "finished_at": finished,
                    "outcome": answer.outcome,
                    "http_status": answer.status,
                    "error": answer.error,
                },
            )
            if answer.accepted:
                store.run(con, "budget_alert_delivered", {"event_id": event, "delivered_at": finished})
        if answer.accepted or not answer.endpoint_down:
            return answer
        if attempt < settings.attempts:
            sleep(settings.delay_s(attempt))
    return answer


# --- after a collect or a metered hour --------------------------------------------------------


def describe(alert: Reached) -> str:
    """One line about a decided alert."""
    return (
        f"budget alert: tenant {alert.tenant} reached {alert.threshold_percent}% of its {alert.month} budget "
        f"({fmt_amount(alert.net)} of {fmt_amount(alert.budget)} EUR excl. VAT)"
    )


def delivery_lines(report: DeliveryReport) -> list[str]:
    """What a delivery pass tells the user (nothing when there was nothing to send)."""
    lines = []
    if report.delivered:
        lines.append(f"budget alerts: {len(report.delivered)} delivered")
    if report.pending:
        lines.append(
            f"warning: {report.pending} budget alert(s) pending: {report.problem}; retried at the next "
            "collect or metered hour, or by `gpumeter budgets deliver`"
        )
    return lines


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
