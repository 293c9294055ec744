"""What an issued document becomes in Stripe — pure: no I/O, no clock.

Stripe must show the legal document's amounts, never recompute them:

- one Stripe invoice item per gpumeter line, carrying the line's already rounded amount
  in integer cents (``amount``); GPU-hours and unit price go in the description and
  metadata only, so Stripe never multiplies or rounds;
- **VAT decision**: VAT is pushed as one more invoice item ("VAT 20.00 % on EUR …") with
  gpumeter's VAT amount in cents, not as a Stripe tax rate. A Stripe tax rate is applied
  per line and rounded per line, whereas gpumeter (like EN 16931) rounds VAT once on the
  net — the two can differ by cents. A plain item makes Stripe's ``total`` equal the legal
  invoice's total by construction. Reverse-charge and outside-scope invoices have no VAT
  item; their legal mention goes in the Stripe invoice footer;
- contracts (docs/adr/0009-contracts.md): reservation and minimum-spend lines are items like
  any line; each promotional credit (an allowance before VAT) is a negative item, so the VAT
  item stays VAT on the net; each prepaid credit (already paid) is a negative item after
  VAT. Stripe's total is therefore the document's ``due`` — what Stripe is to collect —
  and that is what the sync compares it with (without credits, due is the total);
- every item's ``period`` is the document's month, ``[first second, first second of the
  next month)`` in UTC (:class:`gpumeter.months.Month`);
- a credit note becomes a Stripe credit note of its ``due`` (what goes back to the customer
  once the credits it gives back are counted): one custom line per planned item, or, when
  it gives credits back, one line for the whole (Stripe credit-note lines are positive); a
  credit note that only gives credits back (due 0) has nothing to send;
- at most 250 items per Stripe invoice (Stripe's limit): a document with more is refused
  here, before *anything* is sent for the month — one legal invoice must map to one Stripe
  invoice, and with one line per GPU model × profile 250 is never legitimately hit.

Idempotency keys are derived from the document, the same on every run, so Stripe replays
a request instead of executing it twice: ``gpumeter:<number>:invoice``, ``…:item:<line>``,
``…:item:vat``, ``…:item:allowance:<n>``, ``…:item:paid:<n>``, ``…:finalize``,
``…:credit_note``; ``gpumeter:customer:<tenant>``.

Given what Stripe already holds, the plan also says what is left to send: the items not
yet recorded (:func:`items_to_create`), the items found on a Stripe draft that may be
adopted (:func:`adopt_items`, which refuses a draft holding anything gpumeter did not
send), and the parameters of every request (``*_params``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from stripe.params import (
    CreditNoteCreateParams,
    CreditNoteCreateParamsLine,
    CustomerCreateParams,
    InvoiceCreateParams,
    InvoiceItemCreateParams,
    InvoiceItemCreateParamsPeriod,
)

from billing.errors import StripeSyncError, StripeTotalMismatch
from billing.money import CENT_PLACES, fmt_amount
from billing.stripe.documents import DocLine, Document

MAX_ITEMS_PER_INVOICE = 250
DESCRIPTION_MAX = 500
METADATA_VALUE_MAX = 500
KEY_PREFIX = "gpumeter"


@dataclass(frozen=True)
class PlannedItem:
    step: str  # item:<n> | item:vat
    key: str  # Idempotency-Key
    amount_cents: int
    description: str
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class Plan:
    doc: Document
    items: tuple[PlannedItem, ...]
    metadata: Mapping[str, str]
    description: str
    footer: str | None

    def key(self, step: str) -> str:
        return idempotency_key(self.doc.number, step)

    @property
    def period(self) -> InvoiceItemCreateParamsPeriod:
        """The document's month as Stripe's item ``period`` (Unix seconds, end exclusive)."""
        month = self.doc.period
        return {"start": int(month.start.timestamp()), "end": int(month.end.timestamp())}


def idempotency_key(number: str, step: str) -> str:
    """``gpumeter:<number>:<step>`` — the same on every run, so Stripe replays instead of duplicating."""
    return f"{KEY_PREFIX}:{number}:{step}"


def customer_key(tenant: str) -> str:
    return f"{KEY_PREFIX}:customer:{tenant}"


def eur(cents: int) -> str:
    """Integer cents as a EUR amount with two decimals (``3360`` -> ``"33.60"``)."""
    return fmt_amount(Decimal(cents).scaleb(-CENT_PLACES))


def _clip(text: str, limit: int = DESCRIPTION_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line_text(doc: Document, ln: DocLine, n: int) -> str:
    if ln.kind == "minimum_spend":
        return f"Minimum monthly spend true-up, {doc.period} (line {n})"
    what = ln.gpu_model + (f" (MIG {ln.mig_profile})" if ln.mig_profile else "")
    if ln.kind == "reservation":
        what = f"Reserved capacity {ln.contract}, {what}"
    elif ln.kind == "spot":
        what += " spot"
    return f"{what}: {ln.gpu_hours} GPU-hours × EUR {ln.unit_price}/GPU-hour, {doc.period} (line {n})"


def _item(doc: Document, step: str, line: str, cents: int, desc: str, extra: Mapping[str, str]) -> PlannedItem:
    meta = {"gpumeter_invoice": doc.number, "gpumeter_line": line, **extra}
    return PlannedItem(step, idempotency_key(doc.number, step), cents, _clip(desc), meta)


def _credit_note_items(doc: Document) -> list[PlannedItem]:
    """One positive line for a credit note that gives credits back: its due."""
    if not doc.collect_cents:
        return []
    back = ", ".join(
        [f"promotional credit {a.credit} EUR {eur(a.amount_cents)}" for a in doc.allowances]
        + [f"prepaid credit {p.credit} EUR {eur(p.amount_cents)}" for p in doc.paid]
    )
    desc = (
        f"Credit note {doc.number}: EUR {eur(doc.total_cents)} incl. VAT, less what goes back to {back}, {doc.period}"
    )
    return [_item(doc, "item:due", "due", doc.collect_cents, desc, {"amount_eur": eur(doc.collect_cents)})]


def plan_document(doc: Document) -> Plan:
    """Items, metadata and texts for one document; raises before anything is sent."""
    items = []
    for n, ln in enumerate(doc.lines, start=1):
        meta = {
            "gpu_model": ln.gpu_model,
            "gpu_hours": ln.gpu_hours,
            "unit_price_eur": ln.unit_price,
            "amount_eur": eur(ln.amount_cents),
            "line_kind": ln.kind,
        }
        if ln.mig_profile:
            meta["mig_profile"] = ln.mig_profile
        if ln.contract:
            meta["contract"] = ln.contract
        items.append(_item(doc, f"item:{n}", str(n), ln.amount_cents, _line_text(doc, ln, n), meta))
    for n, a in enumerate(doc.allowances, start=1):
        desc = f"Promotional credit {a.credit}, before VAT, {doc.period}"
        items.append(_item(doc, f"item:allowance:{n}", f"allowance:{n}", -a.amount_cents, desc, {"credit": a.credit}))
    if doc.vat_cents:
        desc = f"VAT {doc.vat_rate} % on EUR {eur(doc.net_cents)}"
        items.append(_item(doc, "item:vat", "vat", doc.vat_cents, desc, {"vat_rate_percent": doc.vat_rate}))
    for n, p in enumerate(doc.paid, start=1):
        desc = f"Prepaid credit {p.credit}, already paid, {doc.period}"
        items.append(_item(doc, f"item:paid:{n}", f"paid:{n}", -p.amount_cents, desc, {"credit": p.credit}))
    if doc.kind == "credit_note" and (doc.allowances or doc.paid):
        items = _credit_note_items(doc)
    if len(items) > MAX_ITEMS_PER_INVOICE:
        raise StripeSyncError(
            f"{len(items)} Stripe items ({len(doc.lines)} lines"
            f"{' + VAT' if doc.vat_cents else ''}) exceed Stripe's {MAX_ITEMS_PER_INVOICE} per invoice; "
            "nothing was sent",
            number=doc.number,
        )
    for item in items:
        for k, v in item.metadata.items():
            if len(v) > METADATA_VALUE_MAX:
                raise StripeSyncError(
                    f"metadata {k} longer than {METADATA_VALUE_MAX} characters", number=doc.number, value=v
                )
    metadata = {
        "gpumeter_tenant": doc.tenant,
        "gpumeter_period": str(doc.period),
        "gpumeter_kind": doc.kind,
        "gpumeter_vat_treatment": doc.vat_treatment,
        "gpumeter_total_eur": eur(doc.total_cents),
        "gpumeter_due_eur": eur(doc.collect_cents),
    }
    if doc.kind == "invoice":
        metadata["gpumeter_invoice"] = doc.number
        if doc.references:
            metadata["gpumeter_references"] = doc.references
        description = f"GPU usage {doc.period}. The legal invoice is gpumeter {doc.number} (Factur-X PDF)."
    else:
        metadata["gpumeter_credit_note"] = doc.number
        metadata["gpumeter_invoice"] = doc.references or ""
        description = f"gpumeter credit note {doc.number} correcting invoice {doc.references} ({doc.period})."
    footer = {
        "reverse_charge": doc.vat_mention or "Autoliquidation — Reverse charge — Art. 196 Directive 2006/112/EC",
        "outside_scope": doc.vat_mention
        or "VAT not applicable: outside the scope of EU VAT (Art. 44 Directive 2006/112/EC)",
    }.get(doc.vat_treatment)
    return Plan(doc, tuple(items), metadata, _clip(description), _clip(footer) if footer else None)


# --- the requests ------------------------------------------------------------------------------


def customer_params(tenant: str) -> CustomerCreateParams:
    """A customer that carries the tenant id and nothing personal."""
    return {"metadata": {"gpumeter_tenant": tenant}, "description": f"gpumeter tenant {tenant}"}


def invoice_params(plan: Plan, customer: str, days_until_due: int) -> InvoiceCreateParams:
    """A draft carrying gpumeter's number, that pulls in no pending item and never advances alone."""
    params: InvoiceCreateParams = {
        "customer": customer,
        "currency": "eur",
        "auto_advance": False,
        "collection_method": "send_invoice",
        "days_until_due": days_until_due,
        "number": plan.doc.number,
        "pending_invoice_items_behavior": "exclude",
        "metadata": dict(plan.metadata),
        "description": plan.description,
    }
    if plan.footer:
        params["footer"] = plan.footer
    return params


def item_params(plan: Plan, item: PlannedItem, customer: str, invoice_id: str) -> InvoiceItemCreateParams:
    return {
        "customer": customer,
        "invoice": invoice_id,
        "amount": item.amount_cents,
        "currency": "eur",
        "description": item.description,
        "metadata": dict(item.metadata),
        "period": plan.period,
    }


def credit_note_params(plan: Plan, invoice_id: str, status: str, amount_remaining: int) -> CreditNoteCreateParams:
    """A credit note on the Stripe invoice ``invoice_id`` (``status``, ``amount_remaining`` cents due).

    On an open invoice it first reduces what is due; the part already paid is credited to
    the customer's balance, for the next invoice.
    """
    doc = plan.doc
    if status not in ("open", "paid"):
        raise StripeSyncError(
            f"Stripe invoice {invoice_id} is {status}; credit notes need open or paid", number=doc.number
        )
    lines: list[CreditNoteCreateParamsLine] = [
        {
            "type": "custom_line_item",
            "description": item.description,
            "quantity": 1,
            "unit_amount": item.amount_cents,
            "metadata": dict(item.metadata),
        }
        for item in plan.items
        if item.amount_cents > 0
    ]
    params: CreditNoteCreateParams = {
        "invoice": invoice_id,
        "lines": lines,
        "memo": plan.description,
        "metadata": dict(plan.metadata),
    }
    remaining = amount_remaining if status == "open" else 0
    post_payment = doc.collect_cents - min(doc.collect_cents, remaining)
    if post_payment:
        params["credit_amount"] = post_payment
    return params


# --- what Stripe already holds ---------------------------------------------------------------------


@dataclass(frozen=True)
class FoundItem:
    """An invoice item read back from a Stripe draft."""

    id: str
    metadata: Mapping[str, str]
    amount_cents: int


def items_to_create(plan: Plan, done: Collection[str]) -> list[PlannedItem]:
    """The planned items whose step is not in ``done`` (the steps recorded in the store)."""
    return [it for it in plan.items if it.step not in done]


def adopt_items(plan: Plan, invoice_id: str, found: Iterable[FoundItem]) -> dict[str, FoundItem]:
    """The items of Stripe draft ``invoice_id`` by step, after checking each is one gpumeter planned.

    An item gpumeter did not send, a step present twice, or an amount other than the
    planned one stops the sync before the draft is finalized.
    """
    doc = plan.doc
    planned = {it.step: it for it in plan.items}
    seen: dict[str, FoundItem] = {}
    for item in found:
        step = f"item:{item.metadata.get('gpumeter_line')}"
        if item.metadata.get("gpumeter_invoice") != doc.number or step not in planned:
            raise StripeSyncError(
                f"Stripe draft {invoice_id} holds an item gpumeter did not send: {item.id}", number=doc.number
            )
        if step in seen:
            raise StripeSyncError(
                f"Stripe draft {invoice_id} holds {step} twice ({seen[step].id}, {item.id})", number=doc.number
            )
        if item.amount_cents != planned[step].amount_cents:
            raise StripeTotalMismatch(
                f"Stripe item {item.id} ({step}) is {eur(item.amount_cents)} EUR, "
                f"gpumeter's line {eur(planned[step].amount_cents)} EUR",
                number=doc.number,
            )
        seen[step] = item
    return seen
