"""Monthly budgets and their threshold alerts (pure: no store, no network, no clock).

A tenant's budget is an amount in EUR excl. VAT per calendar month (UTC) and a list of
thresholds, in percent of it. A threshold is *reached* when the month-to-date net, priced
exactly as a draft invoice of the month would price it, is at least that share of the
budget: ``net * 100 >= budget * threshold`` in exact Decimal arithmetic.

:func:`newly_reached` is the decision the I/O edge (:mod:`billing.alerts`) takes after a
collect or a metered hour: the thresholds reached now and not decided before for that
tenant and month. What was decided stays decided: a threshold never fires twice for the same
tenant and month, whatever happens to the budget (raised, lowered, thresholds changed) or to
the net (a re-collect that lowers it) afterwards.

An alert travels as a CloudEvents 1.0 event in structured JSON mode (:func:`event_body`),
signed with HMAC-SHA256 over the exact body bytes (:func:`signature`). Its ``id`` is
derived from the source, tenant, month and threshold (:func:`event_id`): every delivery
attempt of an alert carries the same ``id`` and the same bytes, so a receiver that sees a
retry after a lost answer can recognise it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from billing.money import CURRENCY, decimal_places, fmt_amount, parse_decimal

EVENT_TYPE = "eu.gpumeter.budget.threshold"
"""The CloudEvents ``type`` of a budget alert."""
DEFAULT_SOURCE = "/gpumeter/budgets"
"""The CloudEvents ``source`` unless ``[alerts] source`` names another."""
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
"""The Content-Type of a structured-mode CloudEvent (the body is the whole event)."""
SIGNATURE_HEADER = "X-Gpumeter-Signature"
"""The header that carries ``sha256=<hex HMAC-SHA256 of the body>``."""
DEFAULT_THRESHOLDS = (50, 80, 100)
MIN_THRESHOLD, MAX_THRESHOLD = 1, 1000
MAX_MONTHLY = Decimal("1e16")  # DECIMAL(18, 2) in the store holds less than this

_EVENT_NAMESPACE = uuid.UUID("5b0f6f0e-3c1d-4b8e-9a57-0c6e2d1f8a40")
"""Fixed namespace of the name-based (version 5) UUIDs that identify alerts."""
_THRESHOLD_TEXT = re.compile(r"^\s*\d{1,4}\s*$")


class BudgetValueError(ValueError):
    """A budget amount or threshold list that cannot be a budget (the message says why)."""


@dataclass(frozen=True)
class Budget:
    """One tenant's monthly budget: EUR excl. VAT, thresholds in percent (ascending, distinct)."""

    tenant: str
    monthly: Decimal
    thresholds: tuple[int, ...]


@dataclass(frozen=True)
class Reached:
    """A threshold a tenant's month reached: the decision an alert is made of."""

    tenant: str
    month: str  # YYYY-MM
    threshold_percent: int
    budget: Decimal
    net: Decimal


def parse_monthly(text: str) -> Decimal:
    """``--monthly``: a decimal string in EUR with at most two decimals, greater than zero."""
    value = parse_decimal(text) if len(text) <= 32 else None
    if value is None:
        raise BudgetValueError(f"{text!r} is not a decimal amount in EUR such as 1500 or 1500.00")
    if decimal_places(value) > 2:
        raise BudgetValueError(f"{text!r} has more than two decimals (EUR cents)")
    if value <= 0:
        raise BudgetValueError(f"{text!r}: a budget must be greater than zero")
    if value >= MAX_MONTHLY:
        raise BudgetValueError(f"{text!r} is too large for a monthly budget")
    return value.quantize(Decimal("0.01"))


def parse_thresholds(text: str) -> tuple[int, ...]:
    """``--thresholds``: comma-separated whole percentages 1-1000; deduplicated and sorted."""
    parts = text.split(",")
    if len(text) > 5000 or not text.strip():
        raise BudgetValueError("thresholds are comma-separated whole percentages, e.g. 50,80,100")
    out: set[int] = set()
    for part in parts:
        if not _THRESHOLD_TEXT.match(part):
            raise BudgetValueError(f"{part.strip()!r} is not a whole percentage (thresholds look like 50,80,100)")
        value = int(part)
        if not MIN_THRESHOLD <= value <= MAX_THRESHOLD:
            raise BudgetValueError(f"threshold {value} is outside {MIN_THRESHOLD}-{MAX_THRESHOLD} percent")
        out.add(value)
    return tuple(sorted(out))


def reached(budget: Budget, net: Decimal) -> tuple[int, ...]:
    """The thresholds of ``budget`` that a month-to-date ``net`` reaches (exact comparison)."""
    return tuple(t for t in budget.thresholds if net * 100 >= budget.monthly * t)


def newly_reached(budget: Budget, month: str, net: Decimal, decided: Collection[int]) -> list[Reached]:
    """The thresholds ``net`` reaches that were not ``decided`` before for this tenant and month."""
    return [Reached(budget.tenant, month, t, budget.monthly, net) for t in reached(budget, net) if t not in decided]


def event_id(source: str, tenant: str, month: str, threshold_percent: int) -> str:
    """The alert's CloudEvents ``id``: the same for the same source, tenant, month and threshold."""
    name = json.dumps([source, tenant, month, threshold_percent], ensure_ascii=False, separators=(",", ":"))
    return str(uuid.uuid5(_EVENT_NAMESPACE, name))


def rfc3339(moment: datetime) -> str:
    """A UTC instant as RFC 3339 with a ``Z`` (microseconds only when there are some)."""
    if moment.tzinfo is None:
        raise ValueError("an event time must be timezone-aware (UTC)")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_body(alert: Reached, *, source: str, at: datetime) -> bytes:
    """The CloudEvents 1.0 structured-mode JSON of one alert, as the bytes that are sent and signed."""
    event = {
        "specversion": "1.0",
        "id": event_id(source, alert.tenant, alert.month, alert.threshold_percent),
        "source": source,
        "type": EVENT_TYPE,
        "subject": alert.tenant,
        "time": rfc3339(at),
        "datacontenttype": "application/json",
        "data": {
            "tenant": alert.tenant,
            "month": alert.month,
            "threshold_percent": alert.threshold_percent,
            "budget": fmt_amount(alert.budget),
            "net": fmt_amount(alert.net),
            "currency": CURRENCY,
        },
    }
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER`: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def signature_matches(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time; what a receiver checks)."""
    return hmac.compare_digest(signature(secret, body), header)
