"""Credits: balances derived from the issued documents, and what a new document does with them (pure).

A credit's balance is never stored: it is its ``eur`` of contracts.toml less what issued
invoices drew, plus what credit notes gave back, less what documents reported expired —
the rows of ``billing_document_credits``, written with each document in the transaction
that issues it (docs/adr/0009-contracts.md). So a balance cannot drift from the documents,
and re-running a month finds exactly what its issued documents left.

A :class:`Book` settles one tenant's new documents of a month, in order:

- an **invoice** (original or supplementary) of month *m* draws from every credit available
  in *m* (its [start, expires) overlaps *m*) whose last month has not passed (no original
  invoice of that month or later was issued), in :attr:`Credit.order`: promotional credits
  as allowances up to the lines total (so the net never goes below zero), then prepaid
  credits as amounts paid up to the total after VAT;
- a **credit note** gives back what the month's documents drew from each credit (allowances
  first, up to its lines total; then prepaid, up to its total), last drawn first back;
- then, on either, every credit whose last month is *m* or already passed and that still has
  a balance reports that balance in ``credits_expired`` — so a credit whose last month had
  no invoice is reported on the tenant's next one, and a give-back to a credit that has
  expired since is reported at once. Nothing is ever dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from billing.contracts import Credit, CreditKind
from billing.invoice import CreditUse, Invoice, Kind
from billing.money import ZERO
from gpumeter.months import Month

ALLOWANCE, PAID, EXPIRED = "allowance", "paid", "expired"


@dataclass(frozen=True)
class CreditEvent:
    """One row of ``billing_document_credits`` with the document it belongs to."""

    number: str
    tenant: str
    kind: str  # invoice | credit_note
    period: Month
    credit: str
    role: str  # allowance | paid | expired
    amount: Decimal


@dataclass(frozen=True)
class CreditHistory:
    """What the store holds about credits: every event, and each tenant's latest invoiced month."""

    events: tuple[CreditEvent, ...] = ()
    invoiced: Mapping[str, Month] = field(default_factory=dict)  # latest month with an original invoice


NO_HISTORY = CreditHistory()


def uses_of(inv: Invoice) -> list[tuple[str, str, Decimal]]:
    """(credit, role, amount) of each credit row a document stores."""
    rows = [(a.credit, ALLOWANCE, a.amount) for a in inv.allowances]
    rows += [(p.credit, PAID, p.amount) for p in inv.paid]
    rows += [(e.credit, EXPIRED, e.amount) for e in inv.credits_expired]
    return rows


class Book:
    """One tenant's credits: balances from the history, then the month's new documents."""

    def __init__(self, credits: Sequence[Credit], history: CreditHistory, tenant: str) -> None:
        self.credits = sorted(credits, key=lambda c: c.order)
        self.balance = {c.id: c.eur for c in self.credits}
        self.month_drawn: dict[tuple[Month, str, str], Decimal] = {}
        self.latest = history.invoiced.get(tenant)
        for e in history.events:
            if e.tenant == tenant and e.credit in self.balance:
                self._apply(e.kind, e.period, e.credit, e.role, e.amount)

    def _apply(self, kind: str, period: Month, credit: str, role: str, amount: Decimal) -> None:
        if role == EXPIRED:
            self.balance[credit] -= amount
            return
        sign = 1 if kind == Kind.INVOICE.value else -1
        self.balance[credit] -= sign * amount
        key = (period, credit, role)
        self.month_drawn[key] = self.month_drawn.get(key, ZERO) + sign * amount

    def _passed(self, c: Credit) -> bool:
        last = c.last_month
        return last is not None and self.latest is not None and last <= self.latest

    def settle(self, inv: Invoice) -> Invoice:
        """``inv`` with its allowances, amounts paid and expired credits; the book moves on."""
        month = Month.parse(inv.period.month)
        done = self._draw(inv, month) if inv.kind is Kind.INVOICE else self._give_back(inv, month)
        if inv.kind is Kind.INVOICE and inv.references is None:
            self.latest = month if self.latest is None else max(self.latest, month)
        for credit, role, amount in uses_of(done):
            self._apply(inv.kind.value, month, credit, role, amount)
        horizon = month if self.latest is None else max(month, self.latest)
        expired = []
        for c in self.credits:
            left = self.balance[c.id]
            last = c.last_month
            if last is not None and last <= horizon and left > 0:
                expired.append(CreditUse(c.id, left))
                self._apply(inv.kind.value, month, c.id, EXPIRED, left)
        return replace(done, credits_expired=tuple(expired))

    def _take(self, kind: CreditKind, month: Month, room: Decimal) -> tuple[CreditUse, ...]:
        out = []
        for c in self.credits:
            if room <= 0:
                break
            if c.kind is not kind or not c.available_in(month) or self._passed(c):
                continue
            take = min(self.balance[c.id], room)
            if take > 0:
                out.append(CreditUse(c.id, take))
                room -= take
        return tuple(out)

    def _draw(self, inv: Invoice, month: Month) -> Invoice:
        with_allowances = replace(inv, allowances=self._take(CreditKind.PROMOTIONAL, month, inv.lines_total))
        return replace(with_allowances, paid=self._take(CreditKind.PREPAID, month, with_allowances.total))

    def _back(self, role: str, month: Month, room: Decimal) -> tuple[CreditUse, ...]:
        out = []
        for c in reversed(self.credits):
            if room <= 0:
                break
            drawn = self.month_drawn.get((month, c.id, role), ZERO)
            back = min(drawn, room)
            if back > 0:
                out.append(CreditUse(c.id, back))
                room -= back
        return tuple(out)

    def _give_back(self, inv: Invoice, month: Month) -> Invoice:
        with_allowances = replace(inv, allowances=self._back(ALLOWANCE, month, inv.lines_total))
        return replace(with_allowances, paid=self._back(PAID, month, with_allowances.total))


def month_allowances(
    history: CreditHistory, pending: Iterable[Invoice], tenant: str, month: Month
) -> dict[str, Decimal]:
    """Per promotional credit, what the month's documents of ``tenant`` allow once ``pending``
    is issued too: invoices count positive, credit notes (giving back) negative."""
    out: dict[str, Decimal] = {}
    for e in history.events:
        if e.tenant == tenant and e.period == month and e.role == ALLOWANCE:
            out[e.credit] = out.get(e.credit, ZERO) + (e.amount if e.kind == Kind.INVOICE.value else -e.amount)
    for inv in pending:
        if inv.tenant == tenant:
            for a in inv.allowances:
                out[a.credit] = out.get(a.credit, ZERO) + (a.amount if inv.kind is Kind.INVOICE else -a.amount)
    return {c: v for c, v in out.items() if v}
