"""Contracts on Peppol documents: a reservation, a minimum-spend true-up, promotional credits
(document-level allowances) and prepaid credits (BT-113) in the UBL XML of a Belgian
reverse-charge tenant and a Swiss outside-scope one, and in the credit note that corrects the
Belgian invoice, on hand-checked numbers. Each document passes the UBL XSD, CEN EN 16931 and
Peppol BIS 3.0 rules and carries the same numbers as its Factur-X twin, to the cent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from billing.run import invoice_month
from billing.validate import check_ubl
from tests.billing.conftest import A30, H100, Site, at, make_site
from tests.billing.test_peppol import UBL, belgian_and_swiss_tenants, cii_facts, facturx_xml, ubl_facts

M = "2026-10"
HOUR = 3600
CONTRACTS = f"""
[[reservation]]
id = "RES-BX"
tenant = "bruxelles"
model = "{H100}"
gpus = 1
start = "2026-10-30"
end = "2026-11-01"
eur_per_gpu_hour = "1.90"

[[credit]]
id = "PROMO-BX"
tenant = "bruxelles"
kind = "promotional"
eur = "2.00"
start = "2026-10-01"

[[credit]]
id = "PRE-BX"
tenant = "bruxelles"
kind = "prepaid"
eur = "5.00"
start = "2026-10-01"

[[minimum_spend]]
id = "MIN-ZH"
tenant = "zurich"
eur_per_month = "50.00"
start = "2026-10"

[[credit]]
id = "PROMO-ZH"
tenant = "zurich"
kind = "promotional"
eur = "5.00"
start = "2026-10-01"

[[credit]]
id = "PRE-ZH"
tenant = "zurich"
kind = "prepaid"
eur = "7.50"
start = "2026-10-01"
"""
# bruxelles GM-1, zurich GM-2; then the credit note of bruxelles GMC-1
BX, ZH, BX_NOTE = "GM-2026-000001", "GM-2026-000002", "GMC-2026-000001"


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = make_site(tmp_path_factory.mktemp("peppol-contracts") / "site")
    belgian_and_swiss_tenants(site)
    site.write_contracts(CONTRACTS)
    site.add_job("bx", "bruxelles")
    site.add_job("zh", "zurich")
    site.add_usage("bx", H100, HOUR, window="2026-10-05T10:00:00")  # before the term
    for _ in range(3):  # 3 GPU-hours in one hour of the term: 1 drawn, 2 beyond
        site.add_usage("bx", H100, HOUR, window="2026-10-30T10:00:00")
    site.add_usage("zh", A30, HOUR)
    invoice_month(site.con, site.config, M, True, now=at(2))
    site.con.execute("DELETE FROM usage WHERE job_id = 'bx'")  # bruxelles used nothing: a credit note
    invoice_month(site.con, site.config, M, True, now=at(20))
    yield site
    site.con.close()


def doc(site: Site, number: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((site.out / M / f"{number}.json").read_text(encoding="utf-8"))
    return data


def lines(d: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(ln["kind"], ln["contract"], ln["gpu_hours"], ln["used_gpu_hours"], ln["amount"]) for ln in d["lines"]]


def money(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["lines_total"], d["allowances"], d["net"], d["vat"], d["total"], d["paid"], d["due"])


def test_the_documents_on_hand_checked_numbers(issued: Site) -> None:
    bx, zh, note = doc(issued, BX), doc(issued, ZH), doc(issued, BX_NOTE)
    # 1 GPU x 24 h x 2 days = 48 GPU-hours x 1.90 = 91.20; 1 h drawn; 1 h + 2 h beyond at 2.80 = 8.40.
    assert lines(bx) == [
        ("reservation", "RES-BX", "48.000000", "1.000000", "91.20"),
        ("usage", None, "3.000000", None, "8.40"),
    ]
    # 99.60 less 2.00 promotional = 97.60, reverse charge (no VAT), 5.00 prepaid: 92.60 due.
    assert money(bx) == (
        "99.60", [{"credit": "PROMO-BX", "amount": "2.00"}], "97.60", "0.00", "97.60",
        [{"credit": "PRE-BX", "amount": "5.00"}], "92.60",
    )  # fmt: skip
    # 1 h of A30 = 1.20, below the 50.00 minimum: a 48.80 true-up; less 5.00, outside scope, 7.50 paid.
    assert lines(zh) == [("usage", None, "1.000000", None, "1.20"), ("minimum_spend", "MIN-ZH", None, None, "48.80")]
    assert money(zh) == (
        "50.00", [{"credit": "PROMO-ZH", "amount": "5.00"}], "45.00", "0.00", "45.00",
        [{"credit": "PRE-ZH", "amount": "7.50"}], "37.50",
    )  # fmt: skip
    # The reservation is billed whether used or not; the 8.40 of usage is credited, and the note
    # gives back what the invoice drew: the 2.00 allowance, then 5.00 of the 6.40 left.
    assert note["kind"] == "credit_note" and note["references"] == BX
    assert lines(note) == [("usage", None, "3.000000", None, "8.40")]
    assert money(note) == (
        "8.40", [{"credit": "PROMO-BX", "amount": "2.00"}], "6.40", "0.00", "6.40",
        [{"credit": "PRE-BX", "amount": "5.00"}], "1.40",
    )  # fmt: skip


@pytest.mark.parametrize("number", [BX, ZH, BX_NOTE])
def test_each_document_passes_xsd_cen_and_peppol_rules(issued: Site, number: str) -> None:
    report = check_ubl((issued.out / M / f"{number}.xml").read_bytes())
    assert report.checks == ("xsd", "cen-ubl", "peppol")
    assert report.fatal == ()
    assert report.findings == (), [f.line() for f in report.findings]  # not even a warning


@pytest.mark.parametrize("number", [BX, ZH, BX_NOTE])
def test_the_ubl_carries_the_factur_x_numbers_allowances_and_prepaid_amounts(issued: Site, number: str) -> None:
    ubl = ubl_facts((issued.out / M / f"{number}.xml").read_bytes())
    assert ubl == cii_facts(facturx_xml(issued, number))
    twin = doc(issued, number)
    assert [(str(a[0]), a[2]) for a in ubl["allowances"]] == [
        (a["amount"], f"Promotional credit {a['credit']}") for a in twin["allowances"]
    ]
    assert {a[1] for a in ubl["allowances"]} == {"95"}  # UNTDID 5189: discount
    assert [str(x) for x in ubl["totals"]] == [
        twin["lines_total"],
        twin["net"],
        twin["vat"],
        twin["total"],
        twin["due"],
    ]
    assert ubl["allowance_total"] == sum((Decimal(a["amount"]) for a in twin["allowances"]), Decimal("0.00"))
    assert ubl["prepaid"] == sum((Decimal(p["amount"]) for p in twin["paid"]), Decimal("0.00"))


def test_reservation_and_true_up_lines_name_their_contract_and_unit(issued: Site) -> None:
    bx, zh = (
        ubl_facts((issued.out / M / f"{BX}.xml").read_bytes()),
        ubl_facts((issued.out / M / f"{ZH}.xml").read_bytes()),
    )
    reserved, usage = bx["lines"]
    assert reserved[:4] == (Decimal("48.0000"), "HUR", Decimal("91.20"), Decimal("1.90"))
    assert reserved[7:] == (f"{H100} reserved capacity RES-BX", "RES/RES-BX")
    assert usage[:4] == (Decimal("3.0000"), "HUR", Decimal("8.40"), Decimal("2.80"))
    true_up = zh["lines"][1]
    assert true_up[:4] == (Decimal("1.0000"), "C62", Decimal("48.80"), Decimal("48.80"))
    assert true_up[7:] == ("Minimum monthly spend true-up", "MIN/MIN-ZH")
    # the allowances carry the document's VAT category: AE at 0 %, O without a rate
    assert bx["allowances"] == [(Decimal("2.00"), "95", "Promotional credit PROMO-BX", "AE", Decimal("0.00"))]
    assert zh["allowances"] == [(Decimal("5.00"), "95", "Promotional credit PROMO-ZH", "O", None)]
    root = etree.fromstring((issued.out / M / f"{BX_NOTE}.xml").read_bytes())
    assert etree.QName(root).localname == "CreditNote"
    assert root.findtext("cac:LegalMonetaryTotal/cbc:PrepaidAmount", None, UBL) == "5.00"
    assert root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", None, UBL) == "1.40"
