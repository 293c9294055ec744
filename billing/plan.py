"""What documents a month needs (pure: no store, no files, no clock).

:func:`plan_month` takes the month's billable usage, the rate card, the tenants and what
was already issued for the month, and returns every pending document: a full invoice for a
tenant with nothing issued yet, else a supplementary invoice and/or a credit note for what
moved since (billing-eu.md §3). Any pricing, VAT or consistency error is raised here, before
:mod:`billing.run` writes anything; the dashboards use the same plan for "unbilled" usage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from billing.errors import BillingError, RatesError, StoreStateError
from billing.invoice import (
    Invoice,
    IssuedPosition,
    Kind,
    LineKey,
    Period,
    Reference,
    UsageGroup,
    adjustments,
    customer_party,
    price_lines,
)
from billing.rates import RateCard
from billing.vat import decide_vat, decision_for
from gpumeter.party import Party
from metering.inventory import Tenant


@dataclass(frozen=True)
class IssuedDocument:
    """A document the store holds for the month (its frozen totals)."""

    number: str
    kind: str
    tenant: str
    issue_date: date
    references_number: str | None
    net: Decimal
    vat: Decimal
    total: Decimal
    vat_treatment: str
    vat_rate: Decimal


@dataclass
class MonthPlan:
    """The month's pending documents, what it already holds, and warnings for the user."""

    period: Period
    pending: list[Invoice] = field(default_factory=list)
    issued: list[IssuedDocument] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan_month(
    *,
    period: Period,
    groups: Iterable[UsageGroup],
    card: RateCard,
    tenants: Mapping[str, Tenant],
    supplier: Party,
    payment_terms_days: int,
    issued: Sequence[IssuedDocument],
    positions: Mapping[str, Mapping[LineKey, IssuedPosition]],
) -> MonthPlan:
    """Every document the month still needs, computed before anything is written.

    ``issued`` and ``positions`` are what the store holds for the month
    (:func:`billing.numbering.read_issued`); ``groups`` its billable usage.
    """
    plan = MonthPlan(period, issued=list(issued))
    for d in card.discounts.values():
        if d.tenant not in tenants:
            raise RatesError(
                f"[[discount]] #{d.index} names tenant {d.tenant!r}, absent from tenants.csv",
                file=card.file,
                line=d.line,
                value=d.tenant,
            )
    by_tenant: dict[str, list[UsageGroup]] = {}
    for g in groups:
        by_tenant.setdefault(g.tenant, []).append(g)
    originals = {d.tenant: d for d in issued if d.kind == Kind.INVOICE.value and d.references_number is None}
    for tenant in sorted(set(by_tenant) | set(positions)):
        record = tenants.get(tenant)
        lines = price_lines(by_tenant.get(tenant, []), card, tenant=tenant)
        original = originals.get(tenant)
        if original is None:
            if tenant in positions:
                raise StoreStateError(
                    f"tenant {tenant!r} has issued documents for {period.month} but no original invoice",
                    tenant=tenant,
                    period=period.month,
                )
            if record is None:
                raise BillingError(
                    f"tenant {tenant!r} has billable usage but is not in tenants.csv "
                    f"(job {by_tenant[tenant][0].first_job!r})",
                    value=tenant,
                    tenant=tenant,
                )
            vat = decide_vat(
                supplier_country=supplier.country,
                tenant=tenant,
                tenant_country=record.country,
                tenant_vat_id=record.vat_id,
            )
            if not record.address:
                plan.warnings.append(f"tenant {tenant!r} has no address in tenants.csv (Art. 226(5) asks for one)")
            if lines:
                plan.pending.append(
                    Invoice(
                        Kind.INVOICE, tenant, period, supplier, customer_party(record), lines, vat, payment_terms_days
                    )
                )
            continue
        ups, downs = adjustments(lines, positions.get(tenant, {}))
        if not ups and not downs:
            continue
        if record is None:
            raise StoreStateError(
                f"tenant {tenant!r} is no longer in tenants.csv but has invoice {original.number} for "
                f"{period.month}; restore the tenant (and its jobs) before correcting that month",
                tenant=tenant,
                period=period.month,
                value=original.number,
            )
        ref = Reference(original.number, original.issue_date)
        vat = decision_for(original.vat_treatment, original.vat_rate)
        customer = customer_party(record)
        for kind, adj in ((Kind.INVOICE, ups), (Kind.CREDIT_NOTE, downs)):
            if adj:
                plan.pending.append(
                    Invoice(
                        kind, tenant, period, supplier, customer, tuple(adj), vat, payment_terms_days, references=ref
                    )
                )
    return plan
