"""Contracts on the invoice, on hand-checked numbers: reservations (a term starting mid-month,
hourly drawdown, site before site-less, dearest usage first), spot, minimum spend, credits
(priority, carry-over, a credit expiring mid-month, prepaid after VAT, give-backs), through
the real store, with every issued document's Factur-X XML validated."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from facturx import get_facturx_xml_from_pdf
from lxml import etree
from pypdf import PdfReader

from billing.errors import ContractsError, PricingError
from billing.focus import focus_frame
from billing.run import invoice_month
from billing.validate import check_facturx
from gpumeter.months import Month
from tests.billing.conftest import H100, Site, at

NS = {"ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
SPOT_RATES = f"""
[[rate]]
model = "{H100}"
eur_per_gpu_hour = "2.80"

[[rate]]
model = "{H100}"
class = "spot"
eur_per_gpu_hour = "1.40"

[[rate]]
model = "{H100}"
site = "ams1"
eur_per_gpu_hour = "3.10"
"""
HOUR = 3600


def issue(site: Site, month: str, when: datetime) -> list[dict[str, Any]]:
    """Finalize ``month``; the JSON of each document issued by this run, every XML validated."""
    out = []
    site.meter_month(Month.parse(month))  # finalize needs the month collected, usage or not
    for r in invoice_month(site.con, site.config, month, True, now=when):
        if not r.created:
            continue
        assert r.validation.startswith("xsd+en16931"), r.validation
        _, xml = get_facturx_xml_from_pdf(r.pdf_path.read_bytes(), check_xsd=False)
        report = check_facturx(xml, fr_ctc=r.tenant == "acme")
        assert report.passed, [f.line() for f in report.findings]
        out.append(json.loads(r.json_path.read_text(encoding="utf-8")))
    return out


def amounts(doc: dict[str, Any]) -> dict[str, Any]:
    keys = ("lines_total", "allowances", "net", "vat", "total", "paid", "due", "credits_expired")
    return {k: doc[k] for k in keys}


def lines(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (ln["kind"], ln["contract"], ln["site"], ln["gpu_hours"], ln["used_gpu_hours"], ln["unit_price"], ln["amount"])
        for ln in doc["lines"]
    ]


def test_a_reservation_starting_mid_month_bills_its_days_and_draws_hour_by_hour(site: Site) -> None:
    site.write_rates(SPOT_RATES)
    site.write_contracts(
        f'[[reservation]]\nid = "RES-1"\ntenant = "acme"\nmodel = "{H100}"\ngpus = 2\n'
        'start = "2026-10-15"\nend = "2027-10-15"\neur_per_gpu_hour = "1.90"\n'
    )
    for job, job_class in (("a1", "on_demand"), ("a2", "on_demand"), ("a3", "spot"), ("a4", "on_demand")):
        site.add_job(job, "acme", job_class=job_class)
    site.add_job("a5", "acme", job_class="reserved")
    site.add_usage("a1", H100, HOUR, window="2026-10-05T10:00:00")  # before the term: not drawn
    for _ in range(3):  # 3 GPU-hours in one hour: 2 drawn, 1 beyond the reservation
        site.add_usage("a2", H100, HOUR, window="2026-10-20T10:00:00")
    site.add_usage("a3", H100, HOUR, window="2026-10-20T11:00:00")  # spot: never drawn, spot rate
    for _ in range(2):  # two 3g.40gb instances for an hour: 2 x 3/7 GPU-hours, drawn
        site.add_usage("a4", H100, HOUR, profile="3g.40gb", window="2026-10-21T00:00:00")
    site.add_usage("a5", H100, 1800, window="2026-10-22T05:00:00")  # class reserved: drawn
    (doc,) = issue(site, "2026-10", at(2))
    # 2 GPUs x 24 h x 17 days (15th to 31st) = 816 GPU-hours x 1.90 = 1550.40, used or not.
    # Drawn: 2 + 6/7 + 0.5 = 3.357142857... GPU-hours. Beyond it: a1 1 h + a2 1 h at 2.80.
    assert lines(doc) == [
        ("reservation", "RES-1", None, "816.000000", "3.357143", "1.90", "1550.40"),
        ("usage", None, None, "2.000000", None, "2.80", "5.60"),
        ("spot", None, None, "1.000000", None, "1.40", "1.40"),
    ]
    assert amounts(doc) == {
        "lines_total": "1557.40",
        "allowances": [],
        "net": "1557.40",
        "vat": "311.48",
        "total": "1868.88",
        "paid": [],
        "due": "1868.88",
        "credits_expired": [],
    }
    # November: the whole month of the term (2 x 24 x 30 = 1440 GPU-hours), no usage at all.
    (nov,) = issue(site, "2026-11", datetime(2026, 12, 1, 9, tzinfo=UTC))
    assert lines(nov) == [("reservation", "RES-1", None, "1440.000000", "0.000000", "1.90", "2736.00")]


def test_site_reservations_draw_first_and_the_dearest_usage_is_covered_first(site: Site) -> None:
    site.write_rates(SPOT_RATES)
    site.write_contracts(
        f'[[reservation]]\nid = "ANY"\ntenant = "berlin"\nmodel = "{H100}"\ngpus = 1\n'
        'start = "2026-10-01"\nend = "2026-11-01"\neur_per_gpu_hour = "1.50"\n\n'
        f'[[reservation]]\nid = "PAR"\ntenant = "berlin"\nmodel = "{H100}"\nsite = "par1"\ngpus = 1\n'
        'start = "2026-10-01"\nend = "2026-11-01"\neur_per_gpu_hour = "2.00"\n'
    )
    site.add_job("b1", "berlin")
    # 10:00 - par1 2 GPU-hours, ams1 1 GPU-hour: PAR takes 1 h of par1; ANY then takes the
    # dearer ams1 hour (3.10 > 2.80), leaving 1 h of par1 at 2.80.
    for _ in range(2):
        site.add_usage("b1", H100, HOUR, window="2026-10-05T10:00:00")
    site.add_usage("b1", H100, HOUR, host="ams1-gpu01", window="2026-10-05T10:00:00")
    # 11:00 - four GPUs for 15 minutes each on par1: the hour's total (1 h) counts, not its peak.
    for _ in range(4):
        site.add_usage("b1", H100, 900, window="2026-10-05T11:00:00")
    (doc,) = issue(site, "2026-10", at(2))
    assert lines(doc) == [
        ("reservation", "ANY", None, "744.000000", "1.000000", "1.50", "1116.00"),
        ("reservation", "PAR", "par1", "744.000000", "2.000000", "2.00", "1488.00"),
        ("usage", None, None, "1.000000", None, "2.80", "2.80"),
    ]
    assert (doc["lines_total"], doc["vat_treatment"], doc["total"], doc["due"]) == (
        "2606.80",
        "reverse_charge",
        "2606.80",
        "2606.80",
    )


def test_minimum_spend_tops_up_a_short_month_and_stands_alone_in_an_empty_one(site: Site) -> None:
    site.write_rates(SPOT_RATES + '\n[[discount]]\ntenant = "nyc"\npercent = "10"\n')
    site.write_contracts('[[minimum_spend]]\ntenant = "nyc"\neur_per_month = "100.00"\nstart = "2026-10"\n')
    site.add_job("n1", "nyc")
    site.add_usage("n1", H100, 10 * HOUR)  # 10 h x 2.52 (2.80 less 10 %) = 25.20
    (oct_doc,) = issue(site, "2026-10", at(2))
    assert [(k, h, p, a) for k, _, _, h, _, p, a in lines(oct_doc)] == [
        ("usage", "10.000000", "2.52", "25.20"),
        ("minimum_spend", None, "74.80", "74.80"),  # the shortfall, not discounted
    ]
    assert oct_doc["lines"][1]["gpu_model"] is None and (oct_doc["net"], oct_doc["total"]) == ("100.00", "100.00")
    (nov_doc,) = issue(site, "2026-11", datetime(2026, 12, 1, 9, tzinfo=UTC))
    assert [(k, a) for k, *_, a in lines(nov_doc)] == [("minimum_spend", "100.00")]
    xml = etree.fromstring(get_facturx_xml_from_pdf(_pdf(site, nov_doc), check_xsd=False)[1])
    qty = xml.find(".//ram:BilledQuantity", NS)
    assert qty is not None and (qty.text, qty.get("unitCode")) == ("1.0000", "C62")


CREDITS = """
[[credit]]
id = "PROMO-1"
tenant = "acme"
kind = "promotional"
eur = "100.00"
priority = 1
start = "2026-10-01"
expires = "2026-11-15"

[[credit]]
id = "PROMO-2"
tenant = "acme"
kind = "promotional"
eur = "20.00"
start = "2026-10-10"

[[credit]]
id = "PRE-1"
tenant = "acme"
kind = "prepaid"
eur = "50.00"
priority = 5
start = "2026-10-01"
"""


def _pdf(site: Site, doc: dict[str, Any]) -> bytes:
    return (site.out / doc["period"] / f"{doc['number']}.pdf").read_bytes()


def _pdf_text(site: Site, doc: dict[str, Any]) -> str:
    reader = PdfReader(io.BytesIO(_pdf(site, doc)))
    return " ".join(" ".join((p.extract_text() or "").split()) for p in reader.pages)


def test_credits_draw_in_order_carry_over_expire_and_pay_after_vat(site: Site) -> None:
    site.write_contracts(CREDITS)
    site.add_job("a1", "acme")
    site.add_usage("a1", H100, 25 * HOUR, window="2026-10-05T10:00:00")  # 70.00
    site.add_usage("a1", H100, 5 * HOUR, window="2026-11-05T10:00:00")  # 14.00
    site.add_usage("a1", H100, 30 * HOUR, window="2026-12-05T10:00:00")  # 84.00
    (oct_doc,) = issue(site, "2026-10", at(2))
    # PROMO-1 first (priority 1): 70.00 of its 100.00; the net cannot go below zero.
    assert amounts(oct_doc) == {
        "lines_total": "70.00",
        "allowances": [{"credit": "PROMO-1", "amount": "70.00"}],
        "net": "0.00",
        "vat": "0.00",
        "total": "0.00",
        "paid": [],
        "due": "0.00",
        "credits_expired": [],
    }
    (nov_doc,) = issue(site, "2026-11", datetime(2026, 12, 2, 9, tzinfo=UTC))
    # PROMO-1's last month (it expires on the 15th): 14.00 drawn, the 16.00 left is reported.
    assert amounts(nov_doc) == {
        "lines_total": "14.00",
        "allowances": [{"credit": "PROMO-1", "amount": "14.00"}],
        "net": "0.00",
        "vat": "0.00",
        "total": "0.00",
        "paid": [],
        "due": "0.00",
        "credits_expired": [{"credit": "PROMO-1", "amount": "16.00"}],
    }
    (dec_doc,) = issue(site, "2026-12", datetime(2027, 1, 4, 9, tzinfo=UTC))
    # PROMO-2 (priority 100) 20.00 before VAT; 20 % VAT on 64.00; PRE-1 pays 50.00 of the 76.80.
    assert amounts(dec_doc) == {
        "lines_total": "84.00",
        "allowances": [{"credit": "PROMO-2", "amount": "20.00"}],
        "net": "64.00",
        "vat": "12.80",
        "total": "76.80",
        "paid": [{"credit": "PRE-1", "amount": "50.00"}],
        "due": "26.80",
        "credits_expired": [],
    }
    text = _pdf_text(site, dec_doc)
    for words in ("less promotional credit PROMO-2 -20.00", "paid in advance, prepaid credit PRE-1 -50.00",
                  "Amount due EUR 26.80", "Art. 65 Directive 2006/112/EC"):  # fmt: skip
        assert words in text
    assert "credit PROMO-1 expired unused (16.00)" in _pdf_text(site, nov_doc)
    xml = etree.fromstring(get_facturx_xml_from_pdf(_pdf(site, dec_doc), check_xsd=False)[1])
    summ = xml.find(".//ram:SpecifiedTradeSettlementHeaderMonetarySummation", NS)
    assert summ is not None
    assert [summ.findtext(f"ram:{t}", namespaces=NS) for t in (
        "LineTotalAmount", "AllowanceTotalAmount", "TaxBasisTotalAmount", "GrandTotalAmount",
        "TotalPrepaidAmount", "DuePayableAmount",
    )] == ["84.00", "20.00", "64.00", "76.80", "50.00", "26.80"]  # fmt: skip
    allowance = xml.find(".//ram:SpecifiedTradeAllowanceCharge", NS)
    assert allowance is not None
    assert allowance.findtext("ram:Reason", namespaces=NS) == "Promotional credit PROMO-2"
    assert allowance.findtext("ram:CategoryTradeTax/ram:RateApplicablePercent", namespaces=NS) == "20.00"
    # November corrected down by 2 hours: the credit note gives back 5.60 of what the month
    # drew from PROMO-1, which has expired since: the give-back is reported expired at once.
    site.con.execute("UPDATE usage SET gpu_ns = 10800000000000 WHERE window_start = '2026-11-05T10:00:00Z'")
    (note,) = issue(site, "2026-11", datetime(2027, 1, 20, 9, tzinfo=UTC))
    assert (note["kind"], note["references"]) == ("credit_note", nov_doc["number"])
    assert amounts(note) == {
        "lines_total": "5.60",
        "allowances": [{"credit": "PROMO-1", "amount": "5.60"}],
        "net": "0.00",
        "vat": "0.00",
        "total": "0.00",
        "paid": [],
        "due": "0.00",
        "credits_expired": [{"credit": "PROMO-1", "amount": "5.60"}],
    }
    balances = dict(
        site.con.execute(
            "SELECT credit, sum(CASE WHEN role = 'expired' OR d.kind = 'invoice' THEN amount ELSE -amount END) "
            "FROM billing_document_credits JOIN billing_documents AS d USING (number) GROUP BY credit"
        ).fetchall()
    )
    # Everything of each credit is accounted for: drawn, given back, or reported expired.
    assert balances == {"PROMO-1": Decimal("100.00"), "PROMO-2": Decimal("20.00"), "PRE-1": Decimal("50.00")}


def test_a_credit_whose_last_month_had_no_invoice_is_reported_on_the_next_one(site: Site) -> None:
    site.write_contracts(CREDITS)
    site.add_job("a1", "acme")
    site.add_usage("a1", H100, HOUR, window="2026-12-05T10:00:00")  # nothing in October or November
    (dec_doc,) = issue(site, "2026-12", datetime(2027, 1, 4, 9, tzinfo=UTC))
    assert dec_doc["allowances"] == [{"credit": "PROMO-2", "amount": "2.80"}]
    assert dec_doc["credits_expired"] == [{"credit": "PROMO-1", "amount": "100.00"}]


def test_a_supplementary_invoice_draws_what_is_left_and_reruns_draw_nothing_twice(site: Site) -> None:
    site.write_contracts(CREDITS)
    site.add_job("a1", "acme")
    site.add_usage("a1", H100, 25 * HOUR, window="2026-10-05T10:00:00")
    (first,) = issue(site, "2026-10", at(2))
    assert first["allowances"] == [{"credit": "PROMO-1", "amount": "70.00"}]
    site.add_usage("a1", H100, 20 * HOUR, window="2026-10-30T10:00:00")  # 56.00 more
    (supplement,) = issue(site, "2026-10", at(9))
    # PROMO-1's last 30.00, then PROMO-2's 20.00 (available since the 10th); 20 % VAT on the
    # 6.00 left; PRE-1 pays those 7.20.
    assert amounts(supplement) == {
        "lines_total": "56.00",
        "allowances": [{"credit": "PROMO-1", "amount": "30.00"}, {"credit": "PROMO-2", "amount": "20.00"}],
        "net": "6.00",
        "vat": "1.20",
        "total": "7.20",
        "paid": [{"credit": "PRE-1", "amount": "7.20"}],
        "due": "0.00",
        "credits_expired": [],
    }
    assert supplement["references"] == first["number"]
    assert issue(site, "2026-10", at(10)) == []


def test_focus_reconciles_commitments_and_credits_with_the_invoices(site: Site) -> None:
    site.write_rates(SPOT_RATES)
    site.write_contracts(
        f'[[reservation]]\nid = "RES-1"\ntenant = "acme"\nmodel = "{H100}"\ngpus = 1\n'
        'start = "2026-10-30"\nend = "2027-01-01"\neur_per_gpu_hour = "2.00"\n\n'
        '[[credit]]\nid = "P"\ntenant = "acme"\nkind = "promotional"\neur = "10.00"\nstart = "2026-10-01"\n'
        '\n[[minimum_spend]]\ntenant = "nyc"\neur_per_month = "50.00"\nstart = "2026-10"\n'
    )
    site.add_job("a1", "acme")
    site.add_job("a2", "acme", job_class="spot")
    site.add_job("n1", "nyc")
    site.add_usage("a1", H100, 2 * HOUR, window="2026-10-31T10:00:00")  # 1 h drawn, 1 h at 2.80
    site.add_usage("a2", H100, HOUR, window="2026-10-31T10:00:00")  # spot 1.40
    site.add_usage("n1", H100, HOUR)
    docs = {d["tenant"]: d for d in issue(site, "2026-10", at(2))}
    # 1 GPU x 24 h x 2 days = 48 h x 2.00 = 96.00; + 2.80 + 1.40 = 100.20; less P 10.00 = 90.20
    assert (docs["acme"]["lines_total"], docs["acme"]["net"]) == ("100.20", "90.20")
    df = focus_frame(site.con, site.config, "2026-10")
    billed = dict(df.group_by("BillingAccountId").agg(pl.col("BilledCost").sum()).iter_rows())
    assert billed == {"acme": Decimal(docs["acme"]["net"]), "nyc": Decimal(docs["nyc"]["net"])}
    acme = df.filter(pl.col("BillingAccountId") == "acme")
    by = {
        (r["ChargeCategory"], r["PricingCategory"], r["CommitmentDiscountStatus"]): r
        for r in acme.iter_rows(named=True)
    }
    purchase = by[("Purchase", "Standard", None)]
    assert (purchase["BilledCost"], purchase["EffectiveCost"], purchase["CommitmentDiscountQuantity"]) == (
        Decimal("96.00"), Decimal("0.00"), Decimal("48"),
    )  # fmt: skip
    used, unused = by[("Usage", "Committed", "Used")], by[("Usage", "Committed", "Unused")]
    assert (used["ResourceId"], used["BilledCost"], used["CommitmentDiscountQuantity"]) == ("a1", Decimal(0), 1)
    assert unused["ResourceId"] is None and unused["CommitmentDiscountQuantity"] == 47
    assert used["EffectiveCost"] + unused["EffectiveCost"] == purchase["BilledCost"]  # amortised: 2.00 + 94.00
    assert by[("Usage", "Standard", None)]["BilledCost"] == Decimal("2.80")
    assert by[("Usage", "Dynamic", None)]["BilledCost"] == Decimal("1.40")
    assert by[("Credit", None, None)]["BilledCost"] == Decimal("-10.00")
    (true_up,) = df.filter(pl.col("ChargeCategory") == "Adjustment").iter_rows(named=True)
    assert (true_up["BillingAccountId"], true_up["BilledCost"]) == ("nyc", Decimal("47.20"))
    for r in df.iter_rows(named=True):
        if r["ListUnitPrice"] is not None and r["PricingQuantity"] is not None:
            assert r["ListCost"] == r["ListUnitPrice"] * r["PricingQuantity"]


def test_spot_usage_without_a_spot_rate_is_bad_input_and_stores_nothing(site: Site) -> None:
    site.add_job("s1", "acme", job_class="spot")
    site.add_usage("s1", H100, HOUR)
    with pytest.raises(PricingError) as caught:
        invoice_month(site.con, site.config, "2026-10", True, now=at(2))
    assert 'class = "spot"' in caught.value.message and caught.value.job == "s1"
    assert site.con.execute("SELECT count(*) FROM billing_documents").fetchall() == [(0,)]


@pytest.mark.parametrize(
    ("contracts", "line", "value"),
    [
        ('[[credit]]\nid = "X"\ntenant = "ghost"\nkind = "prepaid"\neur = "1.00"\nstart = "2026-10-01"\n', 3, "ghost"),
        (
            '[[reservation]]\nid = "R"\ntenant = "acme"\nmodel = "NVIDIA B200"\ngpus = 1\nstart = "2026-10-01"\n'
            'end = "2026-11-01"\neur_per_gpu_hour = "1.00"\n',
            4,
            "NVIDIA B200",
        ),
        (
            f'[[reservation]]\nid = "R"\ntenant = "acme"\nmodel = "{H100}"\nsite = "fra9"\ngpus = 1\n'
            'start = "2026-10-01"\nend = "2026-11-01"\neur_per_gpu_hour = "1.00"\n',
            5,
            "fra9",
        ),
        ('[[credit]]\nid = "X"\ntenant = "acme"\nkind = "prepaid"\neur = 1.5\nstart = "2026-10-01"\n', 5, 1.5),
    ],
)
def test_bad_contracts_stop_invoicing_and_change_nothing(site: Site, contracts: str, line: int, value: object) -> None:
    site.add_job("a1", "acme")
    site.add_usage("a1", H100, HOUR)
    issue(site, "2026-10", at(2))
    before = site.con.execute("SELECT number, json_sha256 FROM billing_documents ORDER BY number").fetchall()
    site.write_contracts(contracts)
    site.add_usage("a1", H100, HOUR, window="2026-10-09T10:00:00")
    with pytest.raises(ContractsError) as caught:
        invoice_month(site.con, site.config, "2026-10", True, now=at(5))
    assert (caught.value.file, caught.value.line, caught.value.value) == (
        str(site.root / "contracts.toml"),
        line,
        value,
    )
    assert site.con.execute("SELECT number, json_sha256 FROM billing_documents ORDER BY number").fetchall() == before


@pytest.mark.parametrize("tenant", ["berlin", "nyc"])
def test_allowances_and_prepaid_pass_en16931_for_reverse_charge_and_outside_scope(site: Site, tenant: str) -> None:
    site.write_contracts(
        f'[[credit]]\nid = "P"\ntenant = "{tenant}"\nkind = "promotional"\neur = "1.00"\nstart = "2026-10-01"\n\n'
        f'[[credit]]\nid = "Q"\ntenant = "{tenant}"\nkind = "prepaid"\neur = "2.00"\nstart = "2026-10-01"\n'
    )
    site.add_job("j", tenant)
    site.add_usage("j", H100, 2 * HOUR)  # 5.60, less 1.00 = 4.60, no VAT, 2.00 paid: 2.60 due
    (doc,) = issue(site, "2026-10", at(2))  # every issued XML is validated (XSD, EN 16931)
    assert (doc["vat_category"], doc["net"], doc["vat"], doc["due"]) == (
        "AE" if tenant == "berlin" else "O", "4.60", "0.00", "2.60",
    )  # fmt: skip
    site.con.execute("DELETE FROM usage")
    (note,) = issue(site, "2026-10", at(9))  # the credit note gives both back, and validates too
    assert (note["allowances"], note["paid"], note["due"]) == (
        [{"credit": "P", "amount": "1.00"}], [{"credit": "Q", "amount": "2.00"}], "2.60",
    )  # fmt: skip
