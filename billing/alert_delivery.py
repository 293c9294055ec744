"""Budget alerts on the wire: ``[alerts]``, the signed POST, retries, every attempt recorded.

:func:`deliver` sends every alert of the outbox (``budget_alerts``) that no 2xx has
accepted yet, oldest decision first, to ``[alerts] webhook_url``, signed with
HMAC-SHA256 (:func:`billing.budgets.signature`). Each attempt is written to
``budget_deliveries`` *before* its request goes out and completed when it ends (an attempt
left ``sending`` was cut short); a 2xx marks the alert delivered in the same transaction.
Within a run an alert is tried up to ``attempts`` times with exponential backoff
(``backoff_s`` doubling, capped at :data:`MAX_BACKOFF_S`); what stays pending is retried by
the next collect, the next metered hour, or ``gpumeter budgets deliver``. When the endpoint
does not answer (or answers 5xx, 408 or 429) the run stops there instead of trying every
other alert against it; another refusal (4xx, 3xx) concerns that alert only, and the run
goes on with the next.

Without ``GPUMETER_WEBHOOK_SECRET`` nothing is sent unsigned: alerts stay pending and the
run says so once. Each request is bounded by ``timeout_s`` in total and reads at most
:data:`MAX_ANSWER_BYTES` of the answer. The webhook is reached directly: proxy variables of
the environment are not used.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import httpx

from billing.budgets import CONTENT_TYPE, DEFAULT_SOURCE, SIGNATURE_HEADER, signature
from gpumeter import store
from gpumeter.config import Config

SECRET_ENV = "GPUMETER_WEBHOOK_SECRET"  # noqa: S105 - the name of the variable, not a secret
"""The environment variable the CLI reads the signing secret from (never this module)."""
MAX_BACKOFF_S = 60.0
MAX_ANSWER_BYTES = 1024
MAX_ERROR_CHARS = 500
RETRY_STATUSES = frozenset({408, 429})
"""4xx answers that mean "later", treated like a 5xx: the endpoint is not taking alerts now."""

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
    """``[alerts]`` as settings. Its keys and their types are declared and checked with the
    rest of gpumeter.toml (``gpumeter.config.TABLES``); a value that means nothing here (a URL
    that is not a webhook, a time out of range) names the file, the line and the value."""
    raw: dict[str, Any] = config.raw.get("alerts", {})
    values: dict[str, Any] = {}
    url = raw.get("webhook_url")
    if url is not None:
        why = check_webhook_url(url)
        if why:
            raise config.bad("alerts", "webhook_url", why, url)
        values["webhook_url"] = url
    source = raw.get("source")
    if source is not None:
        if not source.strip() or len(source) > 500:
            raise config.bad(
                "alerts", "source", "must be a non-empty string (a URI-reference) of at most 500 characters", source
            )
        values["source"] = source
    for key, positive, high in (("timeout_s", True, 300.0), ("backoff_s", False, MAX_BACKOFF_S)):
        if key in raw:
            v = raw[key]
            if not ((v > 0 if positive else v >= 0) and v <= high):  # NaN fails both
                floor = "more than 0" if positive else "0"
                raise config.bad("alerts", key, f"must be a number of seconds, from {floor} to {high:g}", v)
            values[key] = float(v)
    if "attempts" in raw:
        v = raw["attempts"]
        if not 1 <= v <= 10:
            raise config.bad("alerts", "attempts", "must be a whole number from 1 to 10", v)
        values["attempts"] = v
    return AlertSettings(**values)


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
        answer = _send(target, url, settings, secret, event, bytes(body), clock, sleep)
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
) -> Answer:
    """Up to ``settings.attempts`` tries of one alert, each recorded; the last answer."""
    headers = {"Content-Type": CONTENT_TYPE, SIGNATURE_HEADER: signature(secret, body), "User-Agent": "gpumeter"}
    answer = Answer(None, "not sent")
    for attempt in range(1, settings.attempts + 1):
        with store.session(target) as con:
            attempt_id = store.run(
                con, "budget_delivery_start", {"event_id": event, "url": url, "started_at": clock()}
            ).scalar()
        answer = post(url, body, headers, settings.timeout_s)
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
