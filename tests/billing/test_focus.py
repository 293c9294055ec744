"""FOCUS 1.3 rows: the columns docs/formats.md lists, reconciled with the invoices to the cent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import polars as pl

from billing.focus import COLUMNS, allocate, focus_frame, write_focus
from billing.run import invoice_month
from tests.billing.conftest import A30, H100, Site, at

M = "2026-10"
TIERED = """
[[rate]]
model = "NVIDIA H100 80GB HBM3"
eur_per_gpu_hour = "2.80"
  [[rate.tier]]
  from_gpu_hours = "2"
  eur_per_gpu_hour = "2.50"
[[rate]]
model = "NVIDIA A30"
eur_per_gpu_hour = "1.20"
[[discount]]
tenant = "acme"
percent = "10"
"""


def populate(site: Site) -> None:
    site.write_rates(TIERED)
    for j, t in (("a1", "acme"), ("a2", "acme"), ("a3", "acme"), ("b1", "berlin")):
        site.add_job(j, t, project=f"proj-{t}")
    site.add_usage("a1", H100, "3000.5", energy_uj=3_600_000_000_000)
    site.add_usage("a2", H100, "5000.25", window="2026-10-07T03:00:00")
    site.add_usage("a3", H100, "1234", profile="3g.40gb", host="ams1-gpu01")
    site.add_usage("b1", A30, "777", profile="1g.6gb")


def test_required_columns_and_types(site: Site) -> None:
    populate(site)
    df = focus_frame(site.con, site.config, M, in_eu={"a1": True})
    assert tuple(df.columns) == COLUMNS
    for col in (
        "BilledCost",
        "BillingAccountId",
        "BillingCurrency",
        "BillingPeriodStart",
        "BillingPeriodEnd",
        "ChargeCategory",
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "ConsumedQuantity",
        "ConsumedUnit",
        "ContractedCost",
        "EffectiveCost",
        "ListCost",
        "ListUnitPrice",
        "PricingQuantity",
        "PricingUnit",
        "ProviderName",
        "PublisherName",
        "ServiceProviderName",
        "HostProviderName",
        "InvoiceIssuerName",
        "RegionId",
        "ResourceId",
        "ServiceCategory",
        "ServiceName",
        "SkuId",
        "SkuPriceId",
        "SubAccountId",
        "x_JobId",
        "x_MigProfile",
        "x_EnergyKWh",
        "x_DataCenterCountry",
        "x_InEU",
    ):
        assert col in df.columns
    assert isinstance(df.schema["BilledCost"], pl.Decimal) and isinstance(df.schema["ListCost"], pl.Decimal)
    assert df.schema["BillingPeriodStart"] == pl.Datetime("us", "UTC")
    row = df.filter(pl.col("x_JobId") == "a1").row(0, named=True)
    assert row["BillingPeriodStart"] == datetime(2026, 10, 1, tzinfo=UTC)
    assert row["BillingPeriodEnd"] == datetime(2026, 11, 1, tzinfo=UTC)
    assert row["ChargePeriodStart"] == datetime(2026, 10, 5, 10, tzinfo=UTC)
    assert row["ChargePeriodEnd"] == datetime(2026, 10, 5, 11, tzinfo=UTC)
    assert row["ConsumedUnit"] == "Seconds" and row["PricingUnit"] == "GPU-Hours"
    assert (
        row["BillingCurrency"] == "EUR" and row["ChargeCategory"] == "Usage" and row["ChargeFrequency"] == "Usage-Based"
    )
    assert row["SubAccountId"] == "proj-acme" and row["RegionId"] == "par1" and row["x_DataCenterCountry"] == "FR"
    assert row["x_EnergyKWh"] == Decimal("1.000000000") and row["x_InEU"] is True
    assert row["ListUnitPrice"] == Decimal("2.80") and row["ContractedUnitPrice"] == Decimal("2.52")
    mig = df.filter(pl.col("x_JobId") == "a3").row(0, named=True)
    assert mig["x_MigProfile"] == "3g.40gb" and mig["RegionId"] == "ams1" and mig["x_InEU"] is None
    assert mig["PricingQuantity"] == Decimal("0.146904762")  # 1234 s / 3600 x 3/7, half-up to 9 places


def test_list_cost_is_list_price_times_pricing_quantity_exactly(site: Site) -> None:
    populate(site)
    df = focus_frame(site.con, site.config, M)
    for r in df.iter_rows(named=True):
        assert r["ListCost"] == r["ListUnitPrice"] * r["PricingQuantity"]
        assert r["ContractedCost"] == r["ContractedUnitPrice"] * r["PricingQuantity"]


def test_billed_cost_reconciles_with_the_invoices_to_the_cent(site: Site) -> None:
    populate(site)
    results = invoice_month(site.con, site.config, M, True, now=at(2))
    df = focus_frame(site.con, site.config, M)
    billed = {t: s for t, s in df.group_by("BillingAccountId").agg(pl.col("BilledCost").sum()).iter_rows()}
    for r in results:
        assert billed[r.tenant] == r.net
    assert set(df.filter(pl.col("BillingAccountId") == "acme")["InvoiceId"]) == {"GM-2026-000001"}


def test_allocate_is_exact_and_proportional() -> None:
    shares = allocate(Decimal("10.00"), [Fraction(1), Fraction(1), Fraction(1)])
    assert shares == [Decimal("3.34"), Decimal("3.33"), Decimal("3.33")] and sum(shares) == Decimal("10.00")
    assert allocate(Decimal("0.00"), [Fraction(0)]) == [Decimal("0.00")]
    assert sum(allocate(Decimal("123.45"), [Fraction(1, 7), Fraction(3, 7), Fraction(2, 9)])) == Decimal("123.45")


def test_writers_keep_decimals_and_utc(site: Site, tmp_path: Path) -> None:
    populate(site)
    df = focus_frame(site.con, site.config, M)
    write_focus(df, tmp_path / "f.csv", "csv")
    text = (tmp_path / "f.csv").read_text(encoding="utf-8")
    assert "2026-10-01T00:00:00Z" in text and "GPU-Hours" in text
    write_focus(df, tmp_path / "f.parquet", "parquet")
    back = pl.read_parquet(tmp_path / "f.parquet")
    assert back["BilledCost"].sum() == df["BilledCost"].sum()


def test_the_focus_csv_neutralises_formulas_in_text_cells(site: Site, tmp_path: Path) -> None:
    """A job id, tenant or project that a spreadsheet would run is written with a leading '."""
    site.add_tenant("=HYPERLINK(1)", "Evil SARL", "FR", "FR40303265045", "1 rue X, Paris")
    site.add_job("-2+3", "=HYPERLINK(1)", project="@SUM(A1)")
    site.add_usage("-2+3", H100, "3600")
    df = focus_frame(site.con, site.config, M)
    write_focus(df, tmp_path / "f.csv", "csv")
    (row,) = pl.read_csv(tmp_path / "f.csv", infer_schema=False).to_dicts()
    assert (row["x_JobId"], row["BillingAccountId"], row["SubAccountId"]) == ("'-2+3", "'=HYPERLINK(1)", "'@SUM(A1)")
    assert Decimal(row["ConsumedQuantity"]) == 3600 and Decimal(row["BilledCost"]) == df["BilledCost"][0]
    write_focus(df, tmp_path / "f.parquet", "parquet")  # typed data, read by programs: unchanged
    assert pl.read_parquet(tmp_path / "f.parquet")["x_JobId"].to_list() == ["-2+3"]
