"""The month planner, without a store: what documents a month needs from usage and what was issued."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from decimal import Decimal

import pytest

from billing.errors import BillingError, StoreStateError
from billing.invoice import IssuedPosition, Kind, LineKey, Period, UsageGroup
from billing.plan import IssuedDocument, MonthPlan, plan_month
from billing.rates import parse_rates
from gpumeter.party import Party
from metering.inventory import Tenant

H100 = "NVIDIA H100 80GB HBM3"
CARD = parse_rates(f'[[rate]]\nmodel = "{H100}"\neur_per_gpu_hour = "2.80"\n')
SUPPLIER = Party("Nuage GPU SAS", "FR", "FR40303265045", "12 rue des Serveurs", "Paris", "75011", "303265045")
ACME = Tenant("acme", "Acme Robotique SA", "FR", "FR44732829320")  # no address: a warning
OCTOBER = Period.parse("2026-10")
KEY = LineKey(H100, None, None, Decimal(0))


def usage(hours: int) -> list[UsageGroup]:
    return [UsageGroup("acme", H100, None, None, Decimal(hours * 3600), "job-1")]


def original(amount: str) -> tuple[list[IssuedDocument], dict[str, dict[LineKey, IssuedPosition]]]:
    doc = IssuedDocument(
        "GM-2026-000001", "invoice", "acme", date(2026, 11, 2), None, Decimal(amount), Decimal(0), Decimal(amount),
        "domestic", Decimal(20),
    )  # fmt: skip
    pos = IssuedPosition(Decimal(10), Decimal(amount), Decimal("2.80"), Decimal("2.80"), Decimal(0), "GPU time")
    return [doc], {"acme": {KEY: pos}}


def plan(hours: int, issued: list[IssuedDocument], positions: dict[str, dict[LineKey, IssuedPosition]]) -> MonthPlan:
    return plan_month(
        period=OCTOBER,
        groups=usage(hours),
        card=CARD,
        tenants={"acme": ACME},
        supplier=SUPPLIER,
        payment_terms_days=30,
        issued=issued,
        positions=positions,
    )


def test_a_first_month_needs_one_invoice() -> None:
    p = plan(10, [], {})
    (inv,) = p.pending
    assert (inv.kind, inv.net, inv.references, inv.customer.identifier) == (
        Kind.INVOICE,
        Decimal("28.00"),
        None,
        "acme",
    )
    assert inv.customer.siren == "732829320" and "no address" in p.warnings[0]


def test_late_usage_needs_a_supplementary_invoice_and_less_usage_a_credit_note() -> None:
    (more,) = plan(11, *original("28.00")).pending
    assert (more.kind, more.net, more.references and more.references.number) == (
        Kind.INVOICE,
        Decimal("2.80"),
        "GM-2026-000001",
    )
    (less,) = plan(9, *original("28.00")).pending
    assert (less.kind, less.net) == (Kind.CREDIT_NOTE, Decimal("2.80"))
    assert plan(10, *original("28.00")).pending == []


def test_inconsistent_inputs_stop_the_plan() -> None:
    _, positions = original("28.00")
    with pytest.raises(StoreStateError, match="no original invoice"):
        plan(10, [], positions)
    with pytest.raises(BillingError, match=r"not in tenants\.csv"):
        plan_month(
            period=OCTOBER, groups=usage(1), card=CARD, tenants={}, supplier=SUPPLIER,
            payment_terms_days=30, issued=[], positions={},
        )  # fmt: skip


def test_the_planner_needs_no_store() -> None:
    code = "import sys, billing.plan; print(sorted({'duckdb', 'billing.run', 'billing.numbering'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
