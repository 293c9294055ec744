"""What documents a month needs (pure: no store, no files, no clock).

:func:`plan_month` takes the month's billable usage, the rate card, the tenants and what
was already issued for the month, and returns every pending document: a full invoice for a
tenant with nothing issued yet, else a supplementary invoice and/or a credit note for what
moved since (billing-eu.md §3). Any pricing, VAT or consistency error is raised here, before
:mod:`billing.run` writes anything; the dashboards and the FOCUS export use the same plan.

With contracts (docs/adr/0009-contracts.md) a tenant's month is priced by :func:`price_month`:
its reservations' lines, its usage less what they drew (:mod:`billing.reservations`), spot
usage at spot rates, and a minimum-spend true-up when the lines total less than it. Every
new document is then settled against the tenant's credits (:class:`billing.credits.Book`):
credit notes first (what they give back is there for the supplementary invoice to draw).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction

from billing.contracts import NO_CONTRACTS, Contracts
from billing.credits import NO_HISTORY, Book, CreditHistory
from billing.errors import BillingError, RatesError, StoreStateError
from billing.invoice import (
    Invoice,
    IssuedPosition,
    Kind,
    Line,
    LineKey,
    LineKind,
    Period,
    Reference,
    UsageGroup,
    adjustments,
    price_lines,
)
from billing.money import fmt_amount
from billing.parties import customer_party
from billing.rates import RateCard
from billing.reservations import NO_DRAWS, Draws, apply_draws, reservation_lines
from billing.vat import decide_vat, decision_for
from gpumeter.months import Month
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
    paid: Decimal = Decimal(0)  # prepaid credits drawn (a credit note: given back)

    @property
    def due(self) -> Decimal:
        return self.total - self.paid


@dataclass
class MonthPlan:
    """The month's pending documents, what it already holds, and warnings for the user.

    ``priced`` holds each tenant's month as priced now (all its lines, before corrections
    and credits), ``draws`` what reservations drew, ``contracts`` and ``credits`` what it was
    planned with: what the FOCUS export reconciles with.
    """

    period: Period
    pending: list[Invoice] = field(default_factory=list)
    issued: list[IssuedDocument] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    priced: dict[str, tuple[Line, ...]] = field(default_factory=dict)
    draws: Draws = NO_DRAWS
    contracts: Contracts = NO_CONTRACTS
    credits: CreditHistory = NO_HISTORY


def minimum_spend_line(tenant: str, month: Month, contracts: Contracts, lines: Sequence[Line]) -> Line | None:
    """The true-up of a minimum spend in force, when the lines total less than it."""
    rule = contracts.minimum_spend(tenant, month)
    if rule is None:
        return None
    total = sum((ln.amount for ln in lines), Decimal(0))
    shortfall = rule.eur_per_month - total
    if shortfall <= 0:
        return None
    return Line(
        gpu_model="",
        mig_profile=None,
        site=None,
        tier_from_gpu_hours=Decimal(0),
        description=f"Minimum monthly spend of EUR {fmt_amount(rule.eur_per_month)} ({rule.label}): "
        f"lines total EUR {fmt_amount(total)}, shortfall billed",
        gpu_hours=Fraction(1),
        unit_price=shortfall,
        list_unit_price=shortfall,
        discount_percent=Decimal(0),
        amount=shortfall,
        kind=LineKind.MINIMUM_SPEND,
        contract=rule.id,
    )


def price_month(
    tenant: str,
    month: Month,
    groups: Sequence[UsageGroup],
    card: RateCard,
    contracts: Contracts = NO_CONTRACTS,
    draws: Draws = NO_DRAWS,
) -> tuple[Line, ...]:
    """Every line of a tenant's month: reservations, usage and spot left to price, minimum spend.

    ``groups`` are the tenant's usage with what reservations drew already taken out.
    """
    lines = reservation_lines(tenant, month, contracts, draws) + list(price_lines(groups, card, tenant=tenant))
    true_up = minimum_spend_line(tenant, month, contracts, lines)
    return tuple([*lines, true_up] if true_up else lines)


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
    contracts: Contracts = NO_CONTRACTS,
    draws: Draws = NO_DRAWS,
    credits: CreditHistory = NO_HISTORY,
    only: Collection[str] | None = None,
) -> MonthPlan:
    """Every document the month still needs, computed before anything is written.

    ``issued`` and ``positions`` are what the store holds for the month
    (:func:`billing.numbering.read_issued`); ``groups`` its billable usage; ``draws`` what
    its reservations drew (:func:`billing.reservations.read_draws`); ``credits`` what the
    issued documents did with credits (:func:`billing.numbering.read_credit_history`);
    ``only``, when given, limits the plan to those tenants.
    """
    plan = MonthPlan(period, issued=list(issued), draws=draws, contracts=contracts, credits=credits)
    month = Month.parse(period.month)
    for d in card.discounts.values():
        if d.tenant not in tenants:
            raise RatesError(
                f"[[discount]] #{d.index} names tenant {d.tenant!r}, absent from tenants.csv",
                file=card.file,
                line=d.line,
                value=d.tenant,
            )
    by_tenant: dict[str, list[UsageGroup]] = {}
    for g in apply_draws(groups, draws):
        by_tenant.setdefault(g.tenant, []).append(g)
    originals = {d.tenant: d for d in issued if d.kind == Kind.INVOICE.value and d.references_number is None}
    planned = set(by_tenant) | set(positions) | contracts.tenants_in(month)
    for tenant in sorted(planned if only is None else planned & set(only)):
        record = tenants.get(tenant)
        lines = price_month(tenant, month, by_tenant.get(tenant, []), card, contracts, draws)
        plan.priced[tenant] = lines
        book = Book(contracts.credits_of(tenant), credits, tenant)
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
                    book.settle(
                        Invoice(
                            Kind.INVOICE,
                            tenant,
                            period,
                            supplier,
                            customer_party(record),
                            lines,
                            vat,
                            payment_terms_days,
                        )
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
        settled = []
        for kind, adj in ((Kind.CREDIT_NOTE, downs), (Kind.INVOICE, ups)):
            if adj:
                doc = Invoice(
                    kind, tenant, period, supplier, customer, tuple(adj), vat, payment_terms_days, references=ref
                )
                settled.append(book.settle(doc))
        plan.pending.extend(sorted(settled, key=lambda d: d.kind is Kind.CREDIT_NOTE))
    return plan
