"""Budgets and their alerts, the pure part: amounts, thresholds, the decision, the event."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from billing.budgets import (
    Budget,
    BudgetValueError,
    Reached,
    event_body,
    event_id,
    newly_reached,
    parse_monthly,
    parse_thresholds,
    reached,
    signature,
    signature_matches,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1500", "1500.00"), ("1500.5", "1500.50"), ("0.01", "0.01"), (" 99.99 ", "99.99"), ("1500.50", "1500.50")],
)
def test_monthly_accepts_euros_with_at_most_cents(text: str, value: str) -> None:
    assert parse_monthly(text) == Decimal(value)
    assert str(parse_monthly(text)) == value


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0", "greater than zero"),
        ("-10", "greater than zero"),
        ("10.005", "more than two decimals"),
        ("1e3", "not a decimal amount"),
        ("NaN", "not a decimal amount"),
        ("Infinity", "not a decimal amount"),
        ("1,500", "not a decimal amount"),
        ("", "not a decimal amount"),
        ("EUR 10", "not a decimal amount"),
        ("1" * 40, "not a decimal amount"),
        ("1" * 20, "too large"),
    ],
)
def test_monthly_refuses_what_is_not_a_budget(text: str, why: str) -> None:
    with pytest.raises(BudgetValueError, match=why):
        parse_monthly(text)


def test_thresholds_are_deduplicated_and_sorted() -> None:
    assert parse_thresholds("100,50,80,50") == (50, 80, 100)
    assert parse_thresholds(" 1 , 1000 ") == (1, 1000)
    assert parse_thresholds("120") == (120,)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0", "outside 1-1000"),
        ("1001", "outside 1-1000"),
        ("50,,80", "not a whole percentage"),
        ("50.5", "not a whole percentage"),
        ("-5", "not a whole percentage"),
        ("fifty", "not a whole percentage"),
        ("", "comma-separated"),
        ("99999", "not a whole percentage"),
    ],
)
def test_thresholds_refuse_bad_values(text: str, why: str) -> None:
    with pytest.raises(BudgetValueError, match=why):
        parse_thresholds(text)


BUDGET = Budget("acme", Decimal("1000.00"), (50, 80, 100))


def test_a_threshold_is_reached_at_exactly_its_share_and_not_a_cent_before() -> None:
    assert reached(BUDGET, Decimal("499.99")) == ()
    assert reached(BUDGET, Decimal("500.00")) == (50,)
    assert reached(BUDGET, Decimal("999.99")) == (50, 80)
    assert reached(BUDGET, Decimal("1000.00")) == (50, 80, 100)
    odd = Budget("acme", Decimal("0.03"), (50,))  # 50% of 3 cents is 1.5 cents: 2 cents reach it
    assert reached(odd, Decimal("0.01")) == ()
    assert reached(odd, Decimal("0.02")) == (50,)


def test_what_was_decided_is_never_decided_again() -> None:
    first = newly_reached(BUDGET, "2026-10", Decimal("850.00"), set())
    assert [a.threshold_percent for a in first] == [50, 80]
    assert first[0] == Reached("acme", "2026-10", 50, Decimal("1000.00"), Decimal("850.00"))
    assert newly_reached(BUDGET, "2026-10", Decimal("850.00"), {50, 80}) == []
    assert [a.threshold_percent for a in newly_reached(BUDGET, "2026-10", Decimal("1200"), {50, 80})] == [100]


def test_event_ids_are_stable_and_distinct_per_source_tenant_month_and_threshold() -> None:
    ids = {
        event_id(s, t, m, p)
        for s in ("/gpumeter/budgets", "/other")
        for t in ("acme", "acme:2026-10", "beta")
        for m in ("2026-10", "2026-11")
        for p in (50, 80)
    }
    assert len(ids) == 2 * 3 * 2 * 2
    assert event_id("/gpumeter/budgets", "acme", "2026-10", 50) == event_id("/gpumeter/budgets", "acme", "2026-10", 50)
    # a tenant name holding the separator does not collide with another tenant's month
    assert event_id("s", "a:2026-10", "2026-11", 50) != event_id("s", "a", "2026-10:2026-11", 50)


def test_the_event_is_cloudevents_1_0_json_with_the_documented_data() -> None:
    at = datetime(2026, 10, 5, 13, 0, tzinfo=timezone(timedelta(hours=2)))
    alert = Reached("acme", "2026-10", 80, Decimal("1000"), Decimal("812.3"))
    body = event_body(alert, source="/gpumeter/budgets", at=at)
    assert body == event_body(alert, source="/gpumeter/budgets", at=at)  # every retry sends the same bytes
    event = json.loads(body)
    assert event == {
        "specversion": "1.0",
        "id": event_id("/gpumeter/budgets", "acme", "2026-10", 80),
        "source": "/gpumeter/budgets",
        "type": "eu.gpumeter.budget.threshold",
        "subject": "acme",
        "time": "2026-10-05T11:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "tenant": "acme",
            "month": "2026-10",
            "threshold_percent": 80,
            "budget": "1000.00",
            "net": "812.30",
            "currency": "EUR",
        },
    }
    with pytest.raises(ValueError, match="timezone-aware"):
        event_body(alert, source="s", at=datetime(2026, 10, 5))  # noqa: DTZ001 - the naive time is the point


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = event_body(Reached("é", "2026-10", 50, Decimal(1), Decimal(1)), source="s", at=datetime.now(UTC))
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature("s3cret", body) == f"sha256={expected}"
    assert signature_matches("s3cret", body, f"sha256={expected}")
    assert not signature_matches("s3cret", body + b" ", f"sha256={expected}")
    assert not signature_matches("other", body, f"sha256={expected}")
