"""FOCUS 1.3 cost and usage rows for GPU jobs (columns: docs/formats.md, "FOCUS rows").

One row per job × GPU model × MIG profile × site of the month (the billable usage), priced
with the same rate card as the invoices. Costs reconcile with the invoices to the cent:
each invoice line group's amount (tenant × the rate that priced it, all tier bands, after
the tenant's discount, rounded per line) is shared among its jobs in proportion to their
exact GPU-hours, by largest remainder, so ``BilledCost`` summed over a tenant's rows is the
invoice net. ``ListCost`` / ``ContractedCost`` are exact products of the unit price and
``PricingQuantity`` (no rounding), as FOCUS's ``ListCost = ListUnitPrice × PricingQuantity``
asks; tier savings therefore show as ``BilledCost`` below ``ContractedCost``.

Quantities: ``ConsumedQuantity`` is the job's GPU-seconds (MIG: instance-seconds),
``PricingQuantity`` the GPU-hours it is priced on (MIG on its GPU's line: N/S of its
instance-hours), half-up to 9 places. Times are UTC; period ends are exclusive.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from billing.errors import BillingError
from billing.invoice import aggregate_usage, price_lines
from billing.money import exact, round_exact
from billing.rates import PriceKey, contracted_price
from billing.run import UsageSource, read_rates, read_tenants
from gpumeter import store
from gpumeter.config import Config
from gpumeter.csvcells import text_columns
from gpumeter.months import Month
from metering import report
from metering.windows import month_span

QUANTITY_PLACES = 9
COST_PLACES = 15

_DECIMALS = {
    "BilledCost": 2,
    "EffectiveCost": 2,
    "ListCost": COST_PLACES,
    "ContractedCost": COST_PLACES,
    "ListUnitPrice": 6,
    "ContractedUnitPrice": 6,
    "PricingQuantity": QUANTITY_PLACES,
    "ConsumedQuantity": 9,
    "x_EnergyKWh": 9,
}
_TIMES = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")

COLUMNS = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "HostProviderName",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceProviderName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
    "x_JobId",
    "x_GpuModel",
    "x_MigProfile",
    "x_Site",
    "x_DataCenterCountry",
    "x_EnergyKWh",
    "x_InEU",
)


def allocate(total: Decimal, weights: list[Fraction]) -> list[Decimal]:
    """Split ``total`` (cents) in proportion to ``weights``, exactly, by largest remainder."""
    cents = int(total * 100)
    whole = sum(weights, Fraction(0))
    if whole == 0:
        if cents:
            raise BillingError("cannot share a non-zero amount among zero quantities", value=str(total))
        return [Decimal("0.00")] * len(weights)
    raw = [Fraction(cents) * w / whole for w in weights]
    base = [int(r) for r in raw]  # weights and totals are >= 0: int() is floor
    left = cents - sum(base)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - base[i]), i))
    for i in order[:left]:
        base[i] += 1
    return [Decimal(b).scaleb(-2) for b in base]


def _per_job_usage(con: duckdb.DuckDBPyConnection, month: str) -> pl.DataFrame:
    """FOCUS rows are per job (ResourceId), so the per-job billable usage."""
    return report.billable_usage(con, month)


def focus_frame(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    month: str,
    *,
    usage: UsageSource | None = None,
    in_eu: Mapping[str, bool] | None = None,
) -> pl.DataFrame:
    """FOCUS 1.3 rows for ``month`` (``gpumeter usage --format focus``).

    ``in_eu`` (job id -> sovereignty verdict) fills ``x_InEU`` when the caller has it.
    """
    calendar = Month.parse(month)
    card = read_rates(config.billing.rates)
    supplier = config.billing.supplier.legal_name
    frame = (usage or _per_job_usage)(con, str(calendar))
    tenants = read_tenants(con)
    groups = aggregate_usage(frame)
    start, end = calendar.start, calendar.end  # end exclusive
    params = {"start": start, "end_": end}
    extras = {
        (j, m, p, s): (prov, first, last, energy)
        for j, m, p, s, prov, first, last, energy in store.run(con, "billing_focus_extras", params).fetchall()
    }
    invoices = dict(store.run(con, "billing_original_invoices", {"period": str(calendar)}).fetchall())

    # Invoice amounts per (tenant, price key): the sums the rows must reconcile with.
    key_totals: dict[tuple[str, PriceKey], Decimal] = {}
    by_tenant: dict[str, list[Any]] = {}
    for g in groups:
        by_tenant.setdefault(g.tenant, []).append(g)
    for tenant, gs in by_tenant.items():
        for ln in price_lines(gs, card, tenant=tenant):
            k = (tenant, PriceKey(ln.gpu_model, ln.mig_profile, ln.site))
            key_totals[k] = key_totals.get(k, Decimal(0)) + ln.amount

    rows: list[dict[str, Any]] = []
    members: dict[tuple[str, PriceKey], list[int]] = {}
    weights: list[Fraction] = []
    for job, tenant, project, model, profile, site, country, seconds in frame.select(
        "job_id", "tenant", "project", "gpu_model", "mig_profile", "site", "country", "gpu_seconds"
    ).iter_rows():
        res = card.resolve(model, profile, site or None, job=job)
        qty = exact(seconds) / 3600 * res.factor
        discount = card.discount_percent(tenant)
        list_price = res.rate.eur_per_gpu_hour
        price = contracted_price(list_price, discount)
        pq = round_exact(qty, QUANTITY_PLACES)
        prov, first, last, energy = extras.get((job, model, profile, site or ""), (None, None, None, None))
        sku = model + (f"/{res.key.mig_profile}" if res.key.mig_profile else "")
        sku_price = sku + (f"@{res.key.site}" if res.key.site else "")
        what = f"{model} GPU time" + (f", MIG {profile}" if profile else "") + (f", site {site}" if site else "")
        details: dict[str, Any] = {"GpuModel": model, "MigSlices": res.rate.mig_slices}
        if profile:
            details["MigProfile"] = profile
            details["PricedApart"] = res.key.mig_profile is not None
        if res.rate.tiers:
            details["Tiers"] = [
                {"FromGpuHours": str(t.from_gpu_hours), "EurPerGpuHour": str(t.eur_per_gpu_hour)}
                for t in res.rate.tiers
            ]
        record = tenants.get(tenant)
        rows.append(
            {
                "BilledCost": None,
                "BillingAccountId": tenant,
                "BillingAccountName": record.legal_name if record else tenant,
                "BillingAccountType": "Tenant",
                "BillingCurrency": "EUR",
                "BillingPeriodEnd": end,
                "BillingPeriodStart": start,
                "ChargeCategory": "Usage",
                "ChargeClass": None,
                "ChargeDescription": what,
                "ChargeFrequency": "Usage-Based",
                "ChargePeriodEnd": min(last, end) if last is not None else end,
                "ChargePeriodStart": max(first, start) if first is not None else start,
                "ConsumedQuantity": round_exact(seconds, 9),
                "ConsumedUnit": "Seconds",
                "ContractedCost": round_exact(exact(pq) * exact(price), COST_PLACES),
                "ContractedUnitPrice": price,
                "EffectiveCost": None,
                "HostProviderName": prov or supplier,
                "InvoiceId": invoices.get(tenant),
                "InvoiceIssuerName": supplier,
                "ListCost": round_exact(exact(pq) * exact(list_price), COST_PLACES),
                "ListUnitPrice": list_price,
                "PricingCategory": "Standard",
                "PricingQuantity": pq,
                "PricingUnit": "MIG-Instance-Hours" if res.key.mig_profile else "GPU-Hours",
                "ProviderName": supplier,
                "PublisherName": supplier,
                "RegionId": site or None,
                "RegionName": site or None,
                "ResourceId": job,
                "ResourceName": job,
                "ResourceType": "GPU Job",
                "ServiceCategory": "AI and Machine Learning",
                "ServiceName": "GPU Compute",
                "ServiceProviderName": supplier,
                "ServiceSubcategory": "Other (AI and Machine Learning)",
                "SkuId": sku,
                "SkuMeter": "GPU Time",
                "SkuPriceDetails": json.dumps(details, sort_keys=True),
                "SkuPriceId": sku_price,
                "SubAccountId": project,
                "SubAccountName": project,
                "SubAccountType": "Project",
                "Tags": json.dumps({"Project": project}, sort_keys=True),
                "x_JobId": job,
                "x_GpuModel": model,
                "x_MigProfile": profile,
                "x_Site": site or None,
                "x_DataCenterCountry": country or None,
                "x_EnergyKWh": (Decimal(int(energy)) / Decimal(3_600_000_000_000)).quantize(Decimal("1e-9"))
                if energy is not None
                else None,
                "x_InEU": in_eu.get(job) if in_eu is not None else None,
            }
        )
        members.setdefault((tenant, res.key), []).append(len(rows) - 1)
        weights.append(qty)
    for k, idx in members.items():
        shares = allocate(key_totals.get(k, Decimal(0)), [weights[i] for i in idx])
        for i, share in zip(idx, shares, strict=True):
            rows[i]["BilledCost"] = share
            rows[i]["EffectiveCost"] = share
    return _frame(rows)


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema: dict[str, Any] = {}
    for col in COLUMNS:
        if col in _DECIMALS:
            schema[col] = pl.Decimal(38, _DECIMALS[col])
        elif col in _TIMES:
            schema[col] = pl.Datetime("us", "UTC")
        elif col == "x_InEU":
            schema[col] = pl.Boolean
        else:
            schema[col] = pl.String
    data = {col: [r[col] for r in rows] for col in COLUMNS}
    return pl.DataFrame(data, schema=schema)


def write_focus(frame: pl.DataFrame, path: Path, fmt: str = "csv") -> None:
    """Write FOCUS rows: ``csv`` (ISO 8601 UTC with ``Z``, exact decimals, text cells made
    inert for spreadsheets by :func:`gpumeter.csvcells.text_columns`) or ``parquet`` (as is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.write_parquet(path)
    elif fmt == "csv":
        text_columns(frame).write_csv(path, datetime_format="%Y-%m-%dT%H:%M:%SZ")
    else:
        raise BillingError("FOCUS export format is csv or parquet", value=fmt)


def usage_focus(
    con: duckdb.DuckDBPyConnection, config: Config, month: str, *, tenant: str | None = None
) -> pl.DataFrame:
    """``gpumeter usage --format focus``: the month's FOCUS rows with each job's verdict.

    With ``tenant``, only that tenant's usage is read and priced (a tenant's lines depend on
    its own usage alone), so the rows are exactly its rows of the whole month's FOCUS.
    """
    allowed = report.allowed_set(config.audit.allowed_countries)
    verdicts = report.verdicts(con, month_span(month), allowed, tenant=tenant)
    in_eu = {job: v.in_boundary for job, (v, _) in verdicts.items()}
    if tenant is None:
        return focus_frame(con, config, month, in_eu=in_eu)
    return focus_frame(con, config, month, in_eu=in_eu, usage=partial(report.billable_usage, tenant=tenant))
