"""FOCUS 1.3 cost and usage rows for GPU jobs (columns: docs/formats.md, "FOCUS rows").

One row per job × GPU model × MIG profile × site of the month (the billable usage), priced
by the same month plan as the invoices (:func:`billing.run.month_plan`). Costs reconcile
with the invoices to the cent: each invoice line group's amount (tenant × the rate that
priced it, all tier bands, after the tenant's discount, rounded per line) is shared among
its jobs in proportion to their exact GPU-hours, by largest remainder, so ``BilledCost``
summed over a tenant's rows is the invoice net. ``ListCost`` / ``ContractedCost`` are exact
products of the unit price and ``PricingQuantity`` (no rounding), as FOCUS's ``ListCost =
ListUnitPrice × PricingQuantity`` asks; tier savings therefore show as ``BilledCost`` below
``ContractedCost``.

Contracts (docs/adr/0009-contracts.md), as FOCUS's commitment discounts model them:

- a reservation is a recurring **Purchase** row (``BilledCost`` its line, ``EffectiveCost``
  0, ``CommitmentDiscountQuantity`` its included GPU-hours); the part of a job's usage it
  covered is a ``Committed`` usage row with ``CommitmentDiscountStatus`` ``Used``,
  ``BilledCost`` 0 and ``EffectiveCost`` its share of the purchase; what it left unused is
  one ``Unused`` row without a resource. A reservation's Used and Unused ``EffectiveCost``
  add up to its purchase, by largest remainder over GPU-hours;
- spot usage is priced ``Dynamic``; a minimum-spend true-up is an **Adjustment** row;
- promotional credits are **Credit** rows with a negative ``BilledCost`` (what the month's
  documents allow). Prepaid credits are payments, not costs: they have no row.

Quantities: ``ConsumedQuantity`` is the job's GPU-seconds (MIG: instance-seconds),
``PricingQuantity`` the GPU-hours it is priced on (MIG on its GPU's line: N/S of its
instance-hours), half-up to 9 places. Times are UTC; period ends are exclusive.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from billing.credits import month_allowances
from billing.errors import BillingError
from billing.invoice import Invoice, Line, LineKind, Period
from billing.money import exact, round_exact
from billing.plan import MonthPlan
from billing.rates import PriceKey, Resolution, contracted_price
from billing.reservations import NS_PER_HOUR
from billing.run import UsageSource, month_plan, read_tenants
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
    "CommitmentDiscountQuantity": QUANTITY_PLACES,
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
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
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


def _sku(model: str, res: Resolution) -> tuple[str, str]:
    sku = model + (f"/{res.key.mig_profile}" if res.key.mig_profile else "")
    return sku, sku + (f"@{res.key.site}" if res.key.site else "") + ("/spot" if res.key.spot else "")


@dataclass
class _Rows:
    """The rows of one month, and the shares still to allocate into them."""

    common: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    billed: dict[tuple[str, PriceKey], list[tuple[int, Fraction]]] = field(default_factory=dict)
    effective: dict[str, list[tuple[int, Fraction]]] = field(default_factory=dict)
    purchases: dict[str, Decimal] = field(default_factory=dict)  # reservation id -> its line amount

    def add(self, **values: Any) -> int:
        row = dict.fromkeys(COLUMNS) | self.common | values
        self.rows.append(row)
        return len(self.rows) - 1


def _job_rows(out: _Rows, plan: MonthPlan, frame: pl.DataFrame, context: Mapping[str, Any]) -> None:
    card, tenants, extras, invoices, in_eu = (
        context["card"],
        context["tenants"],
        context["extras"],
        context["invoices"],
        context["in_eu"],
    )
    start, end, supplier = out.common["BillingPeriodStart"], out.common["BillingPeriodEnd"], context["supplier"]
    draws = plan.draws
    for job, tenant, project, model, profile, site, country, seconds, job_class in frame.select(
        "job_id", "tenant", "project", "gpu_model", "mig_profile", "site", "country", "gpu_seconds", "job_class"
    ).iter_rows():
        spot = job_class == "spot"
        res = card.resolve(model, profile, site or None, job=job, spot=spot)
        qty = exact(seconds) / 3600 * res.factor
        price = contracted_price(res.rate.eur_per_gpu_hour, card.discount_percent(tenant))
        prov, first, last, energy = extras.get((job, model, profile, site or ""), (None, None, None, None))
        sku, sku_price = _sku(model, res)
        what = f"{model} {'spot ' if spot else ''}GPU time" + (f", MIG {profile}" if profile else "")
        what += f", site {site}" if site else ""
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
        job_row = {
            "BillingAccountId": tenant,
            "BillingAccountName": record.legal_name if record else tenant,
            "ChargeCategory": "Usage",
            "ChargeFrequency": "Usage-Based",
            "ChargePeriodEnd": min(last, end) if last is not None else end,
            "ChargePeriodStart": max(first, start) if first is not None else start,
            "ConsumedUnit": "Seconds",
            "ContractedUnitPrice": price,
            "HostProviderName": prov or supplier,
            "InvoiceId": invoices.get(tenant),
            "ListUnitPrice": res.rate.eur_per_gpu_hour,
            "PricingCategory": "Dynamic" if spot else "Standard",
            "PricingUnit": "MIG-Instance-Hours" if res.key.mig_profile else "GPU-Hours",
            "RegionId": site or None,
            "RegionName": site or None,
            "ResourceId": job,
            "ResourceName": job,
            "ResourceType": "GPU Job",
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
            "x_InEU": in_eu.get(job) if in_eu is not None else None,
        }
        key = (tenant, model, profile, site or "")
        covered = {} if spot else dict(draws.job_drawn.get((key, job), {}))
        total = draws.job_usage.get((key, job), 0)
        shares = {rid: Fraction(sns, total) for rid, sns in covered.items() if sns}
        left = 1 - sum(shares.values(), Fraction(0))
        # The job's energy goes on its first row only, so it is never counted twice.
        energy_kwh = (
            (Decimal(int(energy)) / Decimal(3_600_000_000_000)).quantize(Decimal("1e-9"))
            if energy is not None
            else None
        )
        parts: list[tuple[str | None, Fraction]] = [(rid, share) for rid, share in sorted(shares.items())]
        if left:
            parts.append((None, left))
        for n, (rid, share) in enumerate(parts):
            pq = round_exact(qty * share, QUANTITY_PLACES)
            row = out.add(
                **job_row,
                ConsumedQuantity=round_exact(exact(seconds) * share, 9),
                PricingQuantity=pq,
                ListCost=round_exact(exact(pq) * exact(res.rate.eur_per_gpu_hour), COST_PLACES),
                ContractedCost=round_exact(exact(pq) * exact(price), COST_PLACES),
                x_EnergyKWh=energy_kwh if n == 0 else None,
            )
            if rid is None:
                out.billed.setdefault((tenant, res.key), []).append((row, qty * share))
                continue
            gpu_hours = Fraction(covered[rid], draws.slices[model] * NS_PER_HOUR)
            out.rows[row] |= {
                "PricingCategory": "Committed",
                "BilledCost": Decimal("0.00"),
                "CommitmentDiscountCategory": "Usage",
                "CommitmentDiscountId": rid,
                "CommitmentDiscountName": rid,
                "CommitmentDiscountQuantity": round_exact(gpu_hours, QUANTITY_PLACES),
                "CommitmentDiscountStatus": "Used",
                "CommitmentDiscountType": "Reservation",
                "CommitmentDiscountUnit": "GPU-Hours",
            }
            out.effective.setdefault(rid, []).append((row, gpu_hours))


def _contract_rows(out: _Rows, tenant: str, lines: Sequence[Line], context: Mapping[str, Any]) -> None:
    """The purchase, unused, minimum-spend and credit rows of one tenant."""
    record = context["tenants"].get(tenant)
    who = {
        "BillingAccountId": tenant,
        "BillingAccountName": record.legal_name if record else tenant,
        "InvoiceId": context["invoices"].get(tenant),
    }
    for ln in lines:
        if ln.kind is LineKind.RESERVATION:
            commit = {
                "CommitmentDiscountCategory": "Usage",
                "CommitmentDiscountId": ln.contract,
                "CommitmentDiscountName": ln.contract,
                "CommitmentDiscountType": "Reservation",
                "CommitmentDiscountUnit": "GPU-Hours",
                "RegionId": ln.site,
                "RegionName": ln.site,
                "SkuId": f"{ln.gpu_model}/reservation",
                "SkuMeter": "GPU Reservation",
                "x_GpuModel": ln.gpu_model,
                "x_Site": ln.site,
            }
            out.add(
                **who,
                **commit,
                BilledCost=ln.amount,
                EffectiveCost=Decimal("0.00"),
                ChargeCategory="Purchase",
                ChargeFrequency="Recurring",
                ChargeDescription=ln.description,
                CommitmentDiscountQuantity=round_exact(ln.gpu_hours, QUANTITY_PLACES),
                ContractedCost=round_exact(ln.gpu_hours * exact(ln.unit_price), COST_PLACES),
                ContractedUnitPrice=ln.unit_price,
                ListCost=round_exact(ln.gpu_hours * exact(ln.unit_price), COST_PLACES),
                ListUnitPrice=ln.unit_price,
                PricingCategory="Standard",
                PricingQuantity=round_exact(ln.gpu_hours, QUANTITY_PLACES),
                PricingUnit="GPU-Hours",
                ResourceId=ln.contract,
                ResourceName=ln.contract,
                ResourceType="GPU Reservation",
                SkuPriceId=f"{ln.gpu_model}/reservation/{ln.contract}",
            )
            unused = ln.gpu_hours - (ln.used_gpu_hours or Fraction(0))
            row = out.add(
                **who,
                **commit,
                BilledCost=Decimal("0.00"),
                ChargeCategory="Usage",
                ChargeFrequency="Usage-Based",
                ChargeDescription=f"Unused reserved capacity {ln.contract}",
                CommitmentDiscountQuantity=round_exact(unused, QUANTITY_PLACES),
                CommitmentDiscountStatus="Unused",
                PricingCategory="Committed",
            )
            out.effective.setdefault(ln.contract or "", []).append((row, unused))
            out.purchases[ln.contract or ""] = ln.amount
        elif ln.kind is LineKind.MINIMUM_SPEND:
            out.add(
                **who,
                BilledCost=ln.amount,
                EffectiveCost=ln.amount,
                ChargeCategory="Adjustment",
                ChargeFrequency="Recurring",
                ChargeDescription=ln.description,
                ContractedCost=ln.amount,
                ContractedUnitPrice=ln.amount,
                ListCost=ln.amount,
                ListUnitPrice=ln.amount,
                PricingCategory="Standard",
                PricingQuantity=Decimal(1),
                PricingUnit="Minimum-Spend-True-Ups",
                SkuId="minimum-spend",
                SkuPriceId=f"minimum-spend/{ln.contract or tenant}",
            )
    for credit, amount in sorted(context["allowances"](tenant).items()):
        out.add(
            **who,
            BilledCost=-amount,
            EffectiveCost=-amount,
            ChargeCategory="Credit",
            ChargeFrequency="One-Time",
            ChargeDescription=f"Promotional credit {credit}",
            ContractedCost=-amount,
            ListCost=-amount,
            SkuId="promotional-credit",
            SkuPriceId=f"promotional-credit/{credit}",
        )


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
    plan, card = month_plan(con, config, Period.of(calendar), per_job_draws=True)
    supplier = config.billing.supplier.legal_name
    frame = (usage or _per_job_usage)(con, str(calendar))
    if "job_class" not in frame.columns:
        frame = frame.with_columns(pl.lit("on_demand").alias("job_class"))
    start, end = calendar.start, calendar.end  # end exclusive
    extras = {
        (j, m, p, s): (prov, first, last, energy)
        for j, m, p, s, prov, first, last, energy in store.run(
            con, "billing_focus_extras", {"start": start, "end_": end}
        ).fetchall()
    }
    pending: list[Invoice] = plan.pending
    context: dict[str, Any] = {
        "card": card,
        "tenants": read_tenants(con),
        "extras": extras,
        "invoices": dict(store.run(con, "billing_original_invoices", {"period": str(calendar)}).fetchall()),
        "in_eu": in_eu,
        "supplier": supplier,
        "allowances": lambda tenant: month_allowances(plan.credits, pending, tenant, calendar),
    }
    out = _Rows(
        {
            "BillingAccountType": "Tenant",
            "BillingCurrency": "EUR",
            "BillingPeriodEnd": end,
            "BillingPeriodStart": start,
            "ChargePeriodEnd": end,
            "ChargePeriodStart": start,
            "HostProviderName": supplier,
            "InvoiceIssuerName": supplier,
            "ProviderName": supplier,
            "PublisherName": supplier,
            "ServiceCategory": "AI and Machine Learning",
            "ServiceName": "GPU Compute",
            "ServiceProviderName": supplier,
            "ServiceSubcategory": "Other (AI and Machine Learning)",
        }
    )
    _job_rows(out, plan, frame, context)
    for tenant, lines in sorted(plan.priced.items()):
        _contract_rows(out, tenant, lines, context)
    # Usage and spot lines shared among their jobs' uncovered parts.
    totals: dict[tuple[str, PriceKey], Decimal] = {}
    for tenant, lines in plan.priced.items():
        for ln in lines:
            if ln.kind in (LineKind.USAGE, LineKind.SPOT):
                k = (tenant, PriceKey(ln.gpu_model, ln.mig_profile, ln.site, ln.kind is LineKind.SPOT))
                totals[k] = totals.get(k, Decimal(0)) + ln.amount
    for k, members in out.billed.items():
        for (i, _), share in zip(members, allocate(totals.get(k, Decimal(0)), [w for _, w in members]), strict=True):
            out.rows[i]["BilledCost"] = out.rows[i]["EffectiveCost"] = share
    # A reservation's purchase amortised over its Used and Unused rows.
    for rid, members in out.effective.items():
        amount = out.purchases.get(rid, Decimal(0))
        for (i, _), share in zip(members, allocate(amount, [w for _, w in members]), strict=True):
            out.rows[i]["EffectiveCost"] = share
    return _frame(out.rows)


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
    its own usage and contracts alone), and only its rows are kept (other tenants'
    reservations and credits are priced without usage), so the rows are exactly its rows of
    the whole month's FOCUS.
    """
    allowed = report.allowed_set(config.audit.allowed_countries)
    verdicts = report.verdicts(con, month_span(month), allowed, tenant=tenant)
    in_eu = {job: v.in_boundary for job, (v, _) in verdicts.items()}
    if tenant is None:
        return focus_frame(con, config, month, in_eu=in_eu)
    frame = focus_frame(con, config, month, in_eu=in_eu, usage=partial(report.billable_usage, tenant=tenant))
    return frame.filter(pl.col("BillingAccountId") == tenant)
