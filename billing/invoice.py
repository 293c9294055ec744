"""Invoices and credit notes as values (pure: no store, no files, no clock).

One invoice per tenant per calendar month (UTC). Its lines (:class:`LineKind`): usage, one
per GPU model (MIG usage folded onto its GPU's line at N/S), one per MIG profile or site
priced apart, and one per volume-tier band; the same for spot usage at spot rates; one per
reservation of contracts.toml; a minimum-spend true-up. Each line's amount is the exact
quantity times its unit price, rounded once to the cent. ``lines_total`` is their sum;
promotional credits are document-level allowances (``net = lines_total - allowances``);
VAT is on the net; prepaid credits are amounts already paid (``due = total - paid``).

Corrections never edit an issued document (EU and French rules: an issued invoice is
corrected only by a credit note or a further invoice that cites it): :func:`adjustments`
compares a fresh computation with the signed sum of what was issued for the month, line
key by line key, and yields the lines of a supplementary invoice (increases) and of a
credit note (decreases), both referring to the original invoice.

The module is the document model the Factur-X, PDF, UBL and Stripe writers all read, with
its JSON twin beside it: one place for every amount, a little over 500 lines on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal, Inexact, localcontext
from enum import StrEnum
from fractions import Fraction
from typing import Any

import polars as pl

from billing.errors import BillingError
from billing.money import (
    CURRENCY,
    HOURS_DISPLAY_PLACES,
    ROUNDING_RULE,
    ZERO,
    exact,
    fmt_amount,
    fmt_decimal,
    fmt_places,
    round_exact,
    to_cents,
)
from billing.rates import PriceKey, Rate, RateCard, Resolution, contracted_price, split_quantity
from billing.vat import VatDecision
from gpumeter.months import Month
from gpumeter.party import Party

SECONDS_PER_HOUR = 3600
UNIT_HOUR = "HUR"  # UN/ECE Recommendation 20: hour (BT-130 of a line in GPU-hours)
UNIT_ONE = "C62"  # UN/ECE Recommendation 20: one (BT-130 of a minimum-spend true-up)
SEPA_CREDIT_TRANSFER = "58"  # UNTDID 4461 (BT-81)
ALLOWANCE_DISCOUNT = "95"  # UNTDID 5189: discount (BT-98 of a promotional credit's allowance)


class LineKind(StrEnum):
    """What a line bills (invoice JSON ``lines[].kind``)."""

    USAGE = "usage"  # on-demand (and reserved-class) usage not drawn from a reservation
    SPOT = "spot"  # usage of spot jobs, at spot rates
    RESERVATION = "reservation"  # a reservation's GPU-hours of the month, used or not
    MINIMUM_SPEND = "minimum_spend"  # the shortfall below a minimum monthly spend


#: The order lines are printed in, by kind.
LINE_KIND_ORDER = {LineKind.RESERVATION: 0, LineKind.USAGE: 1, LineKind.SPOT: 2, LineKind.MINIMUM_SPEND: 3}


class Kind(StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"

    @property
    def type_code(self) -> str:
        """UNTDID 1001 / EN 16931 BT-3."""
        return "381" if self is Kind.CREDIT_NOTE else "380"


@dataclass(frozen=True)
class Period:
    """The invoicing period of a document: one :class:`~gpumeter.months.Month`, as EN 16931 dates."""

    month: str  # YYYY-MM
    start: date  # first day (BT-73)
    end: date  # last day, inclusive (BT-74)

    @classmethod
    def of(cls, month: Month) -> Period:
        return cls(str(month), month.first_day, month.last_day)

    @classmethod
    def parse(cls, month: object) -> Period:
        """``'2026-10'`` -> the period of that month; a bad month raises :class:`~gpumeter.months.MonthError`."""
        return cls.of(Month.parse(month))


@dataclass(frozen=True)
class Reference:
    number: str
    issue_date: date


@dataclass(frozen=True)
class LineKey:
    gpu_model: str  # "" on a minimum-spend line
    mig_profile: str | None
    site: str | None
    tier_from_gpu_hours: Decimal
    kind: LineKind = LineKind.USAGE
    contract: str | None = None


@dataclass(frozen=True)
class CreditUse:
    """An amount (EUR, cents, > 0) a document drew from, gave back to, or wrote off a credit."""

    credit: str
    amount: Decimal

    @property
    def allowance_reason(self) -> str:
        """Reason (BT-97) of a promotional credit's document-level allowance."""
        return f"Promotional credit {self.credit}"


@dataclass(frozen=True)
class Line:
    gpu_model: str
    mig_profile: str | None  # set only when the profile is priced apart
    site: str | None  # set only when the site is priced apart
    tier_from_gpu_hours: Decimal  # 0 for the base band
    description: str
    gpu_hours: Fraction  # exact (for adjustments: the difference of displayed hours)
    unit_price: Decimal  # after the tenant's discount
    list_unit_price: Decimal
    discount_percent: Decimal
    amount: Decimal  # rounded to the cent, once
    kind: LineKind = LineKind.USAGE
    contract: str | None = None  # the reservation's (or minimum spend's) id
    used_gpu_hours: Fraction | None = None  # a reservation's GPU-hours drawn from it

    @property
    def key(self) -> LineKey:
        return LineKey(self.gpu_model, self.mig_profile, self.site, self.tier_from_gpu_hours, self.kind, self.contract)

    @property
    def in_gpu_hours(self) -> bool:
        """False for a minimum-spend line, whose quantity is one true-up, not GPU-hours."""
        return self.kind is not LineKind.MINIMUM_SPEND

    @property
    def gpu_hours_display(self) -> Decimal:
        return round_exact(self.gpu_hours, HOURS_DISPLAY_PLACES)

    @property
    def unit_code(self) -> str:
        """Unit of measure (BT-130): hours, or one true-up."""
        return UNIT_HOUR if self.in_gpu_hours else UNIT_ONE

    @property
    def item_name(self) -> str:
        """Item name (BT-153)."""
        if self.kind is LineKind.RESERVATION:
            return f"{self.gpu_model} reserved capacity {self.contract}"
        if self.kind is LineKind.MINIMUM_SPEND:
            return "Minimum monthly spend true-up"
        name = f"{self.gpu_model} {'spot ' if self.kind is LineKind.SPOT else ''}GPU time"
        return name + (f" MIG {self.mig_profile}" if self.mig_profile else "")

    @property
    def item_id(self) -> str:
        """Item seller's identifier (BT-155): model, priced-apart profile, site and class, or the contract."""
        if self.kind is LineKind.RESERVATION:
            return f"RES/{self.contract}"
        if self.kind is LineKind.MINIMUM_SPEND:
            return f"MIN/{self.contract or 'minimum-spend'}"
        item = (
            self.gpu_model
            + (f"/{self.mig_profile}" if self.mig_profile else "")
            + (f"@{self.site}" if self.site else "")
        )
        return item + ("/spot" if self.kind is LineKind.SPOT else "")

    @property
    def unit_discount(self) -> Decimal:
        """Item price discount (BT-147): list price minus the tenant's price, per unit."""
        return self.list_unit_price - self.unit_price


@dataclass(frozen=True)
class Invoice:
    kind: Kind
    tenant: str
    period: Period
    supplier: Party
    customer: Party
    lines: tuple[Line, ...]
    vat: VatDecision
    payment_terms_days: int = 30
    number: str | None = None
    issue_date: date | None = None
    due_date: date | None = None
    references: Reference | None = None
    notes: tuple[str, ...] = field(default=())
    allowances: tuple[CreditUse, ...] = ()  # promotional credits (drawn; given back on a credit note)
    paid: tuple[CreditUse, ...] = ()  # prepaid credits (drawn; given back on a credit note)
    credits_expired: tuple[CreditUse, ...] = ()  # what was left of credits that can no longer be used

    @property
    def status(self) -> str:
        return "draft" if self.number is None else "finalized"

    @property
    def lines_total(self) -> Decimal:
        return sum((ln.amount for ln in self.lines), ZERO)

    @property
    def allowance_total(self) -> Decimal:
        return sum((a.amount for a in self.allowances), ZERO)

    @property
    def net(self) -> Decimal:
        return self.lines_total - self.allowance_total

    @property
    def vat_amount(self) -> Decimal:
        return self.vat.vat_on(self.net)

    @property
    def total(self) -> Decimal:
        return self.net + self.vat_amount

    @property
    def paid_total(self) -> Decimal:
        return sum((p.amount for p in self.paid), ZERO)

    @property
    def due(self) -> Decimal:
        """What is left to pay (a credit note: to refund or set off) once prepaid credits count."""
        return self.total - self.paid_total

    @property
    def einvoice(self) -> str:
        """The e-invoice format this document is issued in: the customer's at issue time."""
        return self.customer.einvoice

    @property
    def payment_terms(self) -> str:
        """Payment terms (BT-20)."""
        if self.kind is Kind.INVOICE and self.due_date is not None:
            return f"Payment due within {self.payment_terms_days} days, by {self.due_date.isoformat()}."
        return "Credit to be refunded or set off against the next payment."

    @property
    def payee_iban(self) -> str | None:
        """The IBAN to pay by SEPA credit transfer (BT-84): invoices only, never credit notes."""
        if self.kind is Kind.INVOICE and self.supplier.iban:
            return self.supplier.iban.replace(" ", "")
        return None

    def finalize(self, number: str, issue_date: date) -> Invoice:
        return replace(
            self, number=number, issue_date=issue_date, due_date=issue_date + timedelta(days=self.payment_terms_days)
        )


@dataclass(frozen=True)
class UsageGroup:
    """Billable usage of one tenant summed per (model, profile, site, spot or not), with one job to name.

    ``gpu_seconds`` is exact: a Decimal from the store, or a Fraction once part of it was
    drawn from a reservation (:mod:`billing.reservations`).
    """

    tenant: str
    gpu_model: str
    mig_profile: str | None
    site: str | None
    gpu_seconds: Decimal | Fraction
    first_job: str
    spot: bool = False


USAGE_COLUMNS = ("job_id", "tenant", "project", "gpu_model", "mig_profile", "site", "country", "gpu_seconds")


def aggregate_usage(frame: pl.DataFrame) -> list[UsageGroup]:
    """metering.report.billable_usage's frame -> per-tenant sums (exact Decimal sums)."""
    missing = [c for c in USAGE_COLUMNS if c not in frame.columns]
    if missing:
        raise BillingError(f"billable usage frame lacks columns {missing}")
    if frame.height == 0:
        return []
    dtype = frame.schema["gpu_seconds"]
    if not isinstance(dtype, pl.Decimal):
        raise BillingError(f"gpu_seconds must be a Decimal column, not {dtype}", value=str(dtype))
    if frame.filter(pl.col("tenant").is_null()).height:
        job = frame.filter(pl.col("tenant").is_null())["job_id"][0]
        raise BillingError(f"billable usage holds job {job!r} without a tenant", value=job)
    spot = (pl.col("job_class") == "spot") if "job_class" in frame.columns else pl.lit(False)
    grouped = (
        frame.with_columns(pl.col("site").fill_null(""), spot.fill_null(False).alias("spot"))
        .group_by(["tenant", "gpu_model", "mig_profile", "site", "spot"])
        .agg(pl.col("gpu_seconds").sum(), pl.col("job_id").min().alias("first_job"))
        .sort(["tenant", "gpu_model", "mig_profile", "site", "spot"], nulls_last=False)
    )
    return [
        UsageGroup(t, m, p, s or None, secs, j, bool(sp))
        for t, m, p, s, secs, j, sp in grouped.select(
            "tenant", "gpu_model", "mig_profile", "site", "gpu_seconds", "first_job", "spot"
        ).iter_rows()
    ]


def _describe(key: PriceKey, mig_shares: Mapping[str, Fraction], tier_from: Decimal, rate: Rate) -> str:
    text = f"{key.gpu_model} {'spot ' if key.spot else ''}GPU time"
    if key.mig_profile:
        text += f", MIG instance {key.mig_profile} (per instance-hour)"
    if key.site:
        text += f", site {key.site}"
    if mig_shares:
        parts = ", ".join(f"{p} {fmt_places(h, 2)} h" for p, h in sorted(mig_shares.items()))
        text += f"; includes MIG instances at N/{rate.mig_slices} of the GPU rate ({parts} instance-hours)"
    if tier_from > 0:
        text += f"; volume tier beyond {fmt_decimal(tier_from)} GPU-hours this month"
    return text


def _plus(a: Decimal | Fraction, b: Decimal | Fraction) -> Decimal | Fraction:
    """An exact sum: Decimal while both are, else rational."""
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        return a + b
    return exact(a) + exact(b)


def price_lines(groups: Iterable[UsageGroup], card: RateCard, *, tenant: str) -> tuple[Line, ...]:
    """The invoice lines of one tenant's month (exact quantities, amounts rounded once)."""
    # Sum exact Decimal seconds per (price key, MIG share) first; rationals only at the end
    # (or where a reservation left a rational share of a group).
    seconds: dict[tuple[PriceKey, Fraction], Decimal | Fraction] = {}
    rates: dict[PriceKey, Rate] = {}
    mig_seconds: dict[PriceKey, dict[str, Decimal | Fraction]] = {}
    resolved: dict[tuple[str, str | None, str | None, bool], Resolution] = {}
    with localcontext() as ctx:
        ctx.prec = 60
        ctx.traps[Inexact] = True  # sums of seconds stay exact or fail loudly
        for g in groups:
            what = (g.gpu_model, g.mig_profile, g.site, g.spot)
            res = resolved.get(what)
            if res is None:
                res = resolved[what] = card.resolve(g.gpu_model, g.mig_profile, g.site, job=g.first_job, spot=g.spot)
            slot = (res.key, res.factor)
            seconds[slot] = _plus(seconds.get(slot, Decimal(0)), g.gpu_seconds)
            rates[res.key] = res.rate
            if g.mig_profile is not None and res.key.mig_profile is None and g.gpu_seconds:
                per = mig_seconds.setdefault(res.key, {})
                per[g.mig_profile] = _plus(per.get(g.mig_profile, Decimal(0)), g.gpu_seconds)
    hours: dict[PriceKey, Fraction] = {}
    for (key, factor), secs in seconds.items():
        hours[key] = hours.get(key, Fraction(0)) + exact(secs) * factor / SECONDS_PER_HOUR
    mig = {key: {p: exact(s) / SECONDS_PER_HOUR for p, s in per.items()} for key, per in mig_seconds.items()}
    discount = card.discount_percent(tenant)
    lines: list[Line] = []
    for key in sorted(hours, key=lambda k: (k.spot, k.gpu_model, k.mig_profile or "", k.site or "")):
        if hours[key] == 0:
            continue  # all of it drawn from a reservation
        rate = rates[key]
        for band, q in split_quantity(hours[key], rate):
            price = contracted_price(band.list_price, discount)
            lines.append(
                Line(
                    gpu_model=key.gpu_model,
                    mig_profile=key.mig_profile,
                    site=key.site,
                    tier_from_gpu_hours=band.from_hours,
                    description=_describe(key, mig.get(key, {}), band.from_hours, rate),
                    gpu_hours=q,
                    unit_price=price,
                    list_unit_price=band.list_price,
                    discount_percent=discount,
                    amount=to_cents(q * exact(price)),
                    kind=LineKind.SPOT if key.spot else LineKind.USAGE,
                )
            )
    return tuple(lines)


@dataclass(frozen=True)
class IssuedPosition:
    """The signed sum of one line key over every document issued for a tenant's month."""

    gpu_hours: Decimal
    amount: Decimal
    unit_price: Decimal
    list_unit_price: Decimal
    discount_percent: Decimal
    description: str


def adjustments(fresh: Sequence[Line], issued: Mapping[LineKey, IssuedPosition]) -> tuple[list[Line], list[Line]]:
    """(lines of a supplementary invoice, lines of a credit note); both empty if nothing changed.

    Quantities compare as displayed (6 places), amounts as issued (cents); a key whose
    amount did not move in cents yields nothing, so re-running is idempotent.
    """
    by_key = {ln.key: ln for ln in fresh}
    ups: list[Line] = []
    downs: list[Line] = []
    for key in sorted(set(by_key) | set(issued), key=_key_order):
        new = by_key.get(key)
        old = issued.get(key)
        new_amount = new.amount if new else ZERO
        new_hours = exact(new.gpu_hours_display) if new else Fraction(0)
        old_amount = old.amount if old else ZERO
        old_hours = exact(old.gpu_hours) if old else Fraction(0)
        delta = new_amount - old_amount
        if delta == 0:
            continue
        ref_price = new.unit_price if new else old.unit_price if old else ZERO
        ref_list = new.list_unit_price if new else old.list_unit_price if old else ZERO
        ref_disc = new.discount_percent if new else old.discount_percent if old else ZERO
        desc = new.description if new else old.description if old else key.gpu_model
        sign = 1 if delta > 0 else -1
        quantity = (new_hours - old_hours) * sign
        if key.kind is LineKind.MINIMUM_SPEND:  # one true-up of the difference
            quantity, ref_price = Fraction(1), delta * sign
            ref_list = ref_price
        line = Line(
            gpu_model=key.gpu_model,
            mig_profile=key.mig_profile,
            site=key.site,
            tier_from_gpu_hours=key.tier_from_gpu_hours,
            description=("Additional usage: " if sign > 0 else "Correction (credit): ") + desc,
            gpu_hours=quantity,
            unit_price=ref_price,
            list_unit_price=ref_list,
            discount_percent=ref_disc,
            amount=delta * sign,
            kind=key.kind,
            contract=key.contract,
        )
        (ups if sign > 0 else downs).append(line)
    return ups, downs


def _key_order(k: LineKey) -> tuple[int, str, str, str, Decimal, str]:
    return (
        LINE_KIND_ORDER[k.kind],
        k.gpu_model,
        k.mig_profile or "",
        k.site or "",
        k.tier_from_gpu_hours,
        k.contract or "",
    )


# --- mentions and the JSON twin -----------------------------------------------------------

PENALTY_TEXT = (
    "Late payment: penalties at the European Central Bank's most recent refinancing rate plus "
    "10 percentage points, from the day after the due date (Code de commerce art. L441-10)."
)
RECOVERY_TEXT = (
    "Fixed indemnity for recovery costs in case of late payment: EUR 40 "
    "(€40, Code de commerce art. L441-10 and D441-5)."
)
NO_DISCOUNT_TEXT = "No discount for early payment."


def mentions(inv: Invoice) -> list[tuple[str, str]]:
    """The notes every document carries, as (UNTDID 4451 subject code, text)."""
    out = [("PMD", PENALTY_TEXT), ("PMT", RECOVERY_TEXT), ("AAB", NO_DISCOUNT_TEXT)]
    if inv.vat.exemption_text:
        out.append(("AAI", inv.vat.exemption_text))
    if inv.references is not None:
        what = "Credit note for" if inv.kind is Kind.CREDIT_NOTE else "Supplementary invoice to"
        out.append(("AAI", f"{what} invoice {inv.references.number} of {inv.references.issue_date.isoformat()}."))
    out.append(("AAI", ROUNDING_RULE))
    out.extend(("AAI", n) for n in inv.notes)
    out.extend(("AAI", text) for text in credit_mentions(inv))
    return out


def credit_mentions(inv: Invoice) -> list[str]:
    """What the document did with credits, in words (printed and in the XML notes)."""
    back = inv.kind is Kind.CREDIT_NOTE
    out = []
    for a in inv.allowances:
        out.append(
            f"Promotional credit {a.credit}: EUR {fmt_amount(a.amount)} "
            + ("given back to the credit (this credit note reduces less)." if back else "deducted before VAT.")
        )
    for p in inv.paid:
        if back:
            out.append(f"Prepaid credit {p.credit}: EUR {fmt_amount(p.amount)} given back to the prepaid balance.")
        else:
            out.append(
                f"Prepaid credit {p.credit}: EUR {fmt_amount(p.amount)} already paid in advance and deducted from the "
                "amount due; the VAT above is the VAT of the whole supply (VAT on an advance payment becomes "
                "chargeable on its receipt, Art. 65 Directive 2006/112/EC)."
            )
    for e in inv.credits_expired:
        out.append(f"Credit {e.credit} expired: EUR {fmt_amount(e.amount)} unused and no longer available.")
    return out


def _party_json(p: Party) -> dict[str, Any]:
    out: dict[str, Any] = {
        "legal_name": p.legal_name,
        "address": p.address or None,
        "postcode": p.postcode or None,
        "city": p.city or None,
        "country": p.country,
        "vat_id": p.vat_id or None,
        "siren": p.siren or None,
    }
    if p.identifier:
        out = {"tenant": p.identifier, **out, "email": p.email or None}
    else:
        out.update(legal_form=p.legal_form or None, share_capital=p.share_capital or None, rcs=p.rcs or None)
    return out


def _uses(uses: Iterable[CreditUse]) -> list[dict[str, str]]:
    return [{"credit": u.credit, "amount": fmt_amount(u.amount)} for u in uses]


def to_json(inv: Invoice) -> dict[str, Any]:
    """The JSON twin of a document (fields: docs/formats.md, "Invoice JSON")."""
    return {
        "number": inv.number,
        "status": inv.status,
        "kind": inv.kind.value,
        "tenant": inv.tenant,
        "period": inv.period.month,
        "currency": CURRENCY,
        "lines": [
            {
                "gpu_model": ln.gpu_model or None,
                "mig_profile": ln.mig_profile,
                "gpu_hours": fmt_places(ln.gpu_hours, HOURS_DISPLAY_PLACES) if ln.in_gpu_hours else None,
                "unit_price": fmt_decimal(ln.unit_price, min_places=2),
                "amount": fmt_amount(ln.amount),
                "site": ln.site,
                "description": ln.description,
                "list_unit_price": fmt_decimal(ln.list_unit_price, min_places=2),
                "discount_percent": fmt_decimal(ln.discount_percent) if ln.discount_percent else None,
                "tier_from_gpu_hours": fmt_decimal(ln.tier_from_gpu_hours) if ln.tier_from_gpu_hours else None,
                "kind": ln.kind.value,
                "contract": ln.contract,
                "used_gpu_hours": fmt_places(ln.used_gpu_hours, HOURS_DISPLAY_PLACES)
                if ln.used_gpu_hours is not None
                else None,
            }
            for ln in inv.lines
        ],
        "net": fmt_amount(inv.net),
        "vat_treatment": inv.vat.treatment.value,
        "vat_rate": fmt_places(inv.vat.rate_percent, 2),
        "vat": fmt_amount(inv.vat_amount),
        "total": fmt_amount(inv.total),
        "references": inv.references.number if inv.references else None,
        "lines_total": fmt_amount(inv.lines_total),
        "allowances": _uses(inv.allowances),
        "paid": _uses(inv.paid),
        "due": fmt_amount(inv.due),
        "credits_expired": _uses(inv.credits_expired),
        "references_issue_date": inv.references.issue_date.isoformat() if inv.references else None,
        "type_code": inv.kind.type_code,
        "issue_date": inv.issue_date.isoformat() if inv.issue_date else None,
        "due_date": inv.due_date.isoformat() if inv.due_date else None,
        "period_start": inv.period.start.isoformat(),
        "period_end": inv.period.end.isoformat(),
        "supplier": _party_json(inv.supplier),
        "customer": _party_json(inv.customer),
        "vat_category": inv.vat.category,
        "vat_exemption": inv.vat.exemption_text,
        "vat_exemption_code": inv.vat.exemption_code,
        "rounding": ROUNDING_RULE,
        "notes": [text for _, text in mentions(inv)],
        "einvoice": inv.einvoice,
    }
