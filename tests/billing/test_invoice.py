"""Pure invoice computation: lines, tiers, discounts, rounding, VAT, the JSON twin."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from fractions import Fraction

import polars as pl
import pytest

from billing.errors import PricingError, VatError
from billing.invoice import (
    Invoice,
    IssuedPosition,
    Kind,
    Line,
    Period,
    Reference,
    adjustments,
    aggregate_usage,
    price_lines,
    to_json,
)
from billing.rates import parse_rates
from billing.vat import Treatment, VatDecision, check_tenant_vat, decide_vat
from gpumeter.party import Party

H100 = "NVIDIA H100 80GB HBM3"
A30 = "NVIDIA A30"
SUPPLIER = Party("Nuage GPU SAS", "FR", "FR40303265045", "12 rue des Serveurs", "Paris", "75011", "303265045")
RATES = f"""
[[rate]]
model = "{H100}"
eur_per_gpu_hour = "2.80"
[[rate]]
model = "{A30}"
eur_per_gpu_hour = "1.20"
[[rate]]
model = "{H100}"
mig_profile = "1g.10gb"
eur_per_gpu_hour = "0.45"
"""


def frame(rows: list[tuple[str, str, str | None, str, str]]) -> pl.DataFrame:
    """(job, model, profile, site, gpu_seconds) rows of tenant 'acme'."""
    return pl.DataFrame(
        {
            "job_id": [r[0] for r in rows],
            "tenant": ["acme"] * len(rows),
            "project": ["p"] * len(rows),
            "gpu_model": [r[1] for r in rows],
            "mig_profile": [r[2] for r in rows],
            "site": [r[3] for r in rows],
            "country": ["FR"] * len(rows),
            "gpu_seconds": [Decimal(r[4]) for r in rows],
        },
        schema_overrides={"gpu_seconds": pl.Decimal(38, 9), "mig_profile": pl.String},
    )


def lines(rows: list[tuple[str, str, str | None, str, str]], rates: str = RATES) -> tuple[Line, ...]:
    return price_lines(aggregate_usage(frame(rows)), parse_rates(rates), tenant="acme")


def test_mig_folds_onto_its_gpu_line_at_n_over_7_and_a30_at_n_over_4() -> None:
    ls = lines(
        [
            ("j1", H100, None, "par1", "3600"),
            ("j2", H100, "3g.40gb", "par1", "7200"),  # 2 instance-hours at 3/7
            ("j3", A30, "1g.6gb", "par1", "3600"),  # 1 instance-hour at 1/4
        ]
    )
    by = {ln.gpu_model: ln for ln in ls}
    assert by[H100].gpu_hours == 1 + Fraction(6, 7) and by[H100].mig_profile is None
    assert by[H100].amount == Decimal("5.20")  # 13/7 h x 2.80 = 5.20 exactly
    assert by[A30].gpu_hours == Fraction(1, 4) and by[A30].amount == Decimal("0.30")


def test_a_profile_priced_apart_gets_its_own_line() -> None:
    ls = lines([("j1", H100, None, "par1", "3600"), ("j2", H100, "1g.10gb", "par1", "36000")])
    assert [(ln.mig_profile, ln.gpu_hours, ln.amount) for ln in ls] == [
        (None, 1, Decimal("2.80")),
        ("1g.10gb", 10, Decimal("4.50")),
    ]


def test_site_priced_apart_gets_its_own_line() -> None:
    rates = RATES + f'[[rate]]\nmodel = "{H100}"\nsite = "par1"\neur_per_gpu_hour = "3.10"\n'
    ls = lines([("j1", H100, None, "par1", "3600"), ("j2", H100, None, "ams1", "3600")], rates)
    assert [(ln.site, ln.unit_price, ln.amount) for ln in ls] == [
        (None, Decimal("2.80"), Decimal("2.80")),
        ("par1", Decimal("3.10"), Decimal("3.10")),
    ]


def test_tiers_apply_on_the_exact_quantity_one_line_per_band() -> None:
    rates = f"""
[[rate]]
model = "{H100}"
eur_per_gpu_hour = "2.80"
  [[rate.tier]]
  from_gpu_hours = "10"
  eur_per_gpu_hour = "2.50"
"""
    # 10.5 h of whole GPU + 3.5 instance-hours of 2g at 2/7 = 1 h -> 11.5 h
    ls = lines([("j1", H100, None, "", "37800"), ("j2", H100, "2g.20gb", "", "12600")], rates)
    assert [(ln.tier_from_gpu_hours, ln.gpu_hours, ln.unit_price, ln.amount) for ln in ls] == [
        (0, 10, Decimal("2.80"), Decimal("28.00")),
        (10, Fraction(3, 2), Decimal("2.50"), Decimal("3.75")),
    ]


def test_discount_multiplies_every_price_and_is_shown() -> None:
    rates = RATES + '[[discount]]\ntenant = "acme"\npercent = "12.5"\n'
    (ln,) = lines([("j1", H100, None, "", "3600")], rates)
    assert ln.list_unit_price == Decimal("2.80") and ln.unit_price == Decimal("2.45")
    assert ln.amount == Decimal("2.45") and ln.discount_percent == Decimal("12.5")


def test_line_amount_is_exact_quantity_times_price_rounded_once_half_up() -> None:
    rates = f'[[rate]]\nmodel = "{H100}"\neur_per_gpu_hour = "2.50"\n'
    # 1447.2 s = 0.402 h; x 2.50 = 1.005 exactly -> 1.01 (a float product gives 1.00)
    (up,) = lines([("j1", H100, None, "", "1447.2")], rates)
    assert up.amount == Decimal("1.01")
    # one nanosecond less: 1.00499999999... -> 1.00
    (down,) = lines([("j1", H100, None, "", "1447.199999999")], rates)
    assert down.amount == Decimal("1.00")
    # summed over jobs before rounding: two halves of 1447.2 s still make 1.01, not 2 x 0.50
    (summed,) = lines([("j1", H100, None, "", "723.6"), ("j2", H100, None, "", "723.6")], rates)
    assert summed.amount == Decimal("1.01")


def test_gpu_hours_display_is_half_up_to_six_places_for_display_only() -> None:
    (ln,) = lines([("j1", H100, "1g.5gb", "", "3600")])  # 1/7 h
    inv = Invoice(Kind.INVOICE, "acme", Period.parse("2026-10"), SUPPLIER, SUPPLIER, (ln,), _vat("FR", "FR44732829320"))
    assert to_json(inv)["lines"][0]["gpu_hours"] == "0.142857"
    assert ln.amount == Decimal("0.40")  # 2.80 / 7 exactly, not 0.142857 x 2.80 = 0.3999996


def test_unknown_model_stops_naming_model_and_one_job() -> None:
    with pytest.raises(PricingError) as info:
        lines([("j1", H100, None, "", "10"), ("train-7", "NVIDIA B200", None, "", "10")])
    assert info.value.model == "NVIDIA B200" and info.value.job == "train-7"


def _vat(country: str, vat_id: str) -> VatDecision:
    return decide_vat(supplier_country="FR", tenant="acme", tenant_country=country, tenant_vat_id=vat_id)


def test_vat_treatments() -> None:
    dom = _vat("FR", "FR44732829320")
    assert dom.treatment is Treatment.DOMESTIC and dom.rate_percent == 20 and dom.category == "S"
    rc = _vat("DE", "DE136695976")
    assert rc.treatment is Treatment.REVERSE_CHARGE and rc.rate_percent == 0 and rc.category == "AE"
    assert rc.exemption_code == "VATEX-EU-AE"
    assert "Autoliquidation" in (rc.exemption_text or "") and "Art. 196 Directive 2006/112/EC" in (
        rc.exemption_text or ""
    )
    out = _vat("US", "")
    assert (
        out.treatment is Treatment.OUTSIDE_SCOPE
        and out.category == "O"
        and "outside the scope" in (out.exemption_text or "")
    )
    assert _vat("CH", "CHE-123.456.788").treatment is Treatment.OUTSIDE_SCOPE
    de_supplier = decide_vat(supplier_country="DE", tenant="t", tenant_country="DE", tenant_vat_id="DE136695976")
    assert de_supplier.rate_percent == 19
    nl = decide_vat(supplier_country="NL", tenant="t", tenant_country="NL", tenant_vat_id="NL004495445B01")
    assert nl.rate_percent == 21


@pytest.mark.parametrize(
    ("country", "vat_id"), [("ES", ""), ("DE", "DE136695977"), ("FR", "FR00123456789"), ("IT", "DE136695976")]
)
def test_eu_tenant_without_a_valid_vat_id_stops_naming_the_tenant(country: str, vat_id: str) -> None:
    with pytest.raises(VatError) as info:
        decide_vat(supplier_country="FR", tenant="madrid-lab", tenant_country=country, tenant_vat_id=vat_id)
    assert info.value.tenant == "madrid-lab" and "madrid-lab" in info.value.explain()
    assert not check_tenant_vat(
        supplier_country="FR", tenant="madrid-lab", tenant_country=country, tenant_vat_id=vat_id
    ).passed


def test_totals_and_spec_json_shape() -> None:
    ls = lines([("j1", H100, None, "", "3600"), ("j2", A30, None, "", "5400")])
    cust = Party("Acme Robotique SA", "FR", "FR44732829320", identifier="acme", siren="732829320")
    inv = Invoice(Kind.INVOICE, "acme", Period.parse("2026-10"), SUPPLIER, cust, ls, _vat("FR", "FR44732829320"))
    doc = to_json(inv)
    spec_keys = [
        "number",
        "status",
        "kind",
        "tenant",
        "period",
        "currency",
        "lines",
        "net",
        "vat_treatment",
        "vat_rate",
        "vat",
        "total",
        "references",
    ]
    assert list(doc)[: len(spec_keys)] == spec_keys
    assert doc["number"] is None and doc["status"] == "draft" and doc["kind"] == "invoice"
    assert doc["period"] == "2026-10" and doc["currency"] == "EUR" and doc["references"] is None
    assert (doc["net"], doc["vat_rate"], doc["vat"], doc["total"]) == ("4.60", "20.00", "0.92", "5.52")
    for ln in doc["lines"]:
        assert {"gpu_model", "mig_profile", "gpu_hours", "unit_price", "amount"} <= set(ln)
        assert re.fullmatch(r"\d+\.\d{2}", ln["amount"]) and re.fullmatch(r"\d+\.\d{6}", ln["gpu_hours"])
    assert sum(Decimal(ln["amount"]) for ln in doc["lines"]) == Decimal(doc["net"])
    assert "half-up" in doc["rounding"]
    final = inv.finalize("GM-2026-000001", date(2026, 11, 2))
    fj = to_json(final)
    assert fj["number"] == "GM-2026-000001" and fj["status"] == "finalized" and fj["due_date"] == "2026-12-02"


def test_adjustments_split_increases_and_decreases() -> None:
    ls = lines([("j1", H100, None, "", "7200"), ("j2", A30, None, "", "3600")])
    h100, a30 = (next(ln for ln in ls if ln.gpu_model == m) for m in (H100, A30))
    issued = {
        h100.key: IssuedPosition(
            Decimal("1.000000"), Decimal("2.80"), Decimal("2.80"), Decimal("2.80"), Decimal(0), "x"
        ),
        a30.key: IssuedPosition(
            Decimal("2.000000"), Decimal("2.40"), Decimal("1.20"), Decimal("1.20"), Decimal(0), "y"
        ),
    }
    ups, downs = adjustments(ls, issued)
    assert [(u.gpu_model, u.gpu_hours, u.amount) for u in ups] == [(H100, 1, Decimal("2.80"))]
    assert [(d.gpu_model, d.gpu_hours, d.amount) for d in downs] == [(A30, 1, Decimal("1.20"))]
    same = {
        ln.key: IssuedPosition(ln.gpu_hours_display, ln.amount, ln.unit_price, ln.list_unit_price, Decimal(0), "")
        for ln in ls
    }
    assert adjustments(ls, same) == ([], [])
    ref = Reference("GM-2026-000001", date(2026, 11, 2))
    cn = Invoice(
        Kind.CREDIT_NOTE,
        "acme",
        Period.parse("2026-10"),
        SUPPLIER,
        SUPPLIER,
        tuple(downs),
        _vat("FR", "FR44732829320"),
        references=ref,
    )
    assert to_json(cn)["references"] == "GM-2026-000001" and to_json(cn)["kind"] == "credit_note"
    assert to_json(cn)["type_code"] == "381" and to_json(cn)["references_issue_date"] == "2026-11-02"


def test_exact_ties_from_mig_shares_round_up_where_28_digit_decimals_round_down() -> None:
    # 3g on an H100 for 30 s and 135 s: 165/3600 x 3/7 x 2.80 = 0.055 exactly -> 0.06.
    # Dividing with Decimal's 28 digits gives 0.05499999...9 and bills 0.05.
    (ln,) = lines([("j1", H100, "3g.40gb", "", "30"), ("j2", H100, "3g.40gb", "", "135")])
    assert ln.amount == Decimal("0.06")
