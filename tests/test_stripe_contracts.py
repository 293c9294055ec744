"""Documents with contracts in Stripe (real SDK, Stripe test double): reservations and minimum
spend as items, promotional credits as negative items before VAT, prepaid credits as negative
items after it; Stripe totals what the legal document leaves to pay (its due)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stripe

from billing.run import invoice_month
from billing.stripe.sync import sync_month
from tests.billing.conftest import H100, Site, make_site
from tests.stripe_double import StripeDouble
from tests.stripe_double.documents import cents

pytest_plugins = ["tests.stripe_double.fixtures"]

CONTRACTS = f"""
[[reservation]]
id = "RES-1"
tenant = "acme"
model = "{H100}"
gpus = 1
start = "2026-10-31"
end = "2027-01-01"
eur_per_gpu_hour = "2.00"

[[minimum_spend]]
tenant = "nyc"
eur_per_month = "50.00"
start = "2026-10"

[[credit]]
id = "PROMO"
tenant = "acme"
kind = "promotional"
eur = "10.00"
start = "2026-10-01"

[[credit]]
id = "PRE"
tenant = "acme"
kind = "prepaid"
eur = "30.00"
start = "2026-10-01"
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = make_site(tmp_path / "site")
    s.write_contracts(CONTRACTS)
    s.add_job("a1", "acme")
    s.add_job("n1", "nyc")
    s.add_usage("a1", H100, 7200, window="2026-10-31T10:00:00")  # 1 h drawn, 1 h at 2.80
    s.add_usage("n1", H100, 3600)  # 2.80, topped up to 50.00
    try:
        yield s
    finally:
        s.con.close()


def issue(site: Site, day: int) -> dict[str, dict[str, Any]]:
    results = invoice_month(site.con, site.config, "2026-10", True, now=datetime(2026, 11, day, 9, tzinfo=UTC))
    return {r.number or "": json.loads(r.json_path.read_text(encoding="utf-8")) for r in results if r.created}


def test_contract_documents_reach_stripe_with_its_total_equal_to_what_is_due(
    site: Site, stripe_client: stripe.StripeClient, stripe_double: StripeDouble
) -> None:
    docs = issue(site, 2)
    acme = docs["GM-2026-000001"]
    # 24 h x 2.00 = 48.00 + 2.80 = 50.80; less PROMO 10.00 = 40.80; VAT 8.16 = 48.96; PRE pays 30.00
    assert (acme["lines_total"], acme["net"], acme["vat"], acme["total"], acme["due"]) == (
        "50.80", "40.80", "8.16", "48.96", "18.96",
    )  # fmt: skip
    report = sync_month(site.con, stripe_client, "2026-10")
    assert {d.number: (d.action, d.stripe_total_cents) for d in report.documents} == {
        "GM-2026-000001": ("created", cents("18.96")),
        "GM-2026-000002": ("created", cents("50.00")),
    }
    invoices = {i["number"]: i for i in stripe_double.objects("invoices")}
    assert invoices["GM-2026-000001"]["total"] == cents(acme["due"])
    assert invoices["GM-2026-000001"]["metadata"]["gpumeter_total_eur"] == "48.96"
    assert invoices["GM-2026-000001"]["metadata"]["gpumeter_due_eur"] == "18.96"
    items = {
        i["metadata"]["gpumeter_line"]: i
        for i in stripe_double.objects("invoiceitems")
        if i["invoice"] == invoices["GM-2026-000001"]["id"]
    }
    assert {k: i["amount"] for k, i in items.items()} == {
        "1": 4800,  # the reservation
        "2": 280,  # usage beyond it
        "allowance:1": -1000,  # PROMO, before VAT
        "vat": 816,  # VAT on the net 40.80
        "paid:1": -3000,  # PRE, after VAT
    }
    assert items["1"]["metadata"]["line_kind"] == "reservation" and items["1"]["metadata"]["contract"] == "RES-1"
    assert "Prepaid credit PRE" in items["paid:1"]["description"]
    nyc_items = [i for i in stripe_double.objects("invoiceitems") if i["invoice"] == invoices["GM-2026-000002"]["id"]]
    assert sorted(i["metadata"]["line_kind"] for i in nyc_items) == ["minimum_spend", "usage"]
    assert sum(i["amount"] for i in nyc_items) == 5000
    # A re-run sends nothing more.
    again = sync_month(site.con, stripe_client, "2026-10")
    assert {d.action for d in again.documents} == {"unchanged"} and again.posts == 0


def test_a_credit_note_credits_its_due_and_one_that_only_gives_credits_back_sends_nothing(
    site: Site, stripe_client: stripe.StripeClient, stripe_double: StripeDouble
) -> None:
    issue(site, 2)
    sync_month(site.con, stripe_client, "2026-10")
    # acme loses its usage beyond the reservation (2.80): the credit note gives back 2.80 of
    # PROMO before VAT: its net, VAT, total and due are 0 — nothing goes to Stripe.
    site.con.execute("UPDATE usage SET gpu_ns = 3600000000000 WHERE job_id = 'a1'")
    (note,) = issue(site, 10).values()
    assert (note["kind"], note["allowances"], note["total"], note["due"]) == (
        "credit_note", [{"credit": "PROMO", "amount": "2.80"}], "0.00", "0.00",
    )  # fmt: skip
    report = sync_month(site.con, stripe_client, "2026-10")
    by = {d.number: d for d in report.documents}
    assert by[note["number"]].action == "nothing_due" and stripe_double.objects("credit_notes") == []
    # nyc's minimum spend now starts in November: its October true-up (47.20) is credited,
    # with no credit given back, so Stripe gets a credit note of 47.20.
    site.write_contracts(CONTRACTS.replace('start = "2026-10"\n', 'start = "2026-11"\n'))
    (nyc_note,) = issue(site, 12).values()
    assert (nyc_note["tenant"], nyc_note["due"], nyc_note["allowances"]) == ("nyc", "47.20", [])
    report = sync_month(site.con, stripe_client, "2026-10")
    assert {d.number: d.action for d in report.documents}[nyc_note["number"]] == "created"
    (credit_note,) = stripe_double.objects("credit_notes")
    assert credit_note["total"] == cents("47.20")


def test_a_document_whose_credits_do_not_add_up_is_refused_before_anything_is_sent(site: Site) -> None:
    from billing.errors import StripeSyncError
    from billing.stripe.documents import parse_document

    doc = issue(site, 2)["GM-2026-000001"]
    assert parse_document(doc, doc["number"]).collect_cents == cents("18.96")
    for field, value, words in (
        ("allowances", [{"credit": "PROMO", "amount": "9.00"}], "less the allowances"),
        ("paid", [{"credit": "PRE", "amount": "31.00"}], "total less paid"),
        ("lines_total", "50.81", "lines_total"),
        ("due", "18.95", "total less paid"),
        ("paid", [{"credit": "PRE", "amount": "-30.00"}], "must not be negative"),
    ):
        with pytest.raises(StripeSyncError, match=words):
            parse_document({**doc, field: value}, doc["number"])
    # A document issued before contracts existed: no lines_total, allowances, paid or due.
    old = {k: v for k, v in doc.items() if k not in ("lines_total", "allowances", "paid", "due")}
    old = {**old, "lines": doc["lines"][1:], "net": "2.80", "vat": "0.56", "total": "3.36"}
    assert parse_document(old, doc["number"]).collect_cents == 336
