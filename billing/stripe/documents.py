"""The documents a Stripe sync pushes: the invoices and credit notes issued for a month.

They are read from the **store**, never from the invoices folder: ``gpumeter invoice
--finalize`` freezes each issued document in ``billing_documents`` (the exact JSON bytes
and their SHA-256) before it writes ``<number>.json``, so a crash in between leaves a
document the folder lacks but the customer is owed. :func:`issued_documents` refuses the
month (:class:`~billing.errors.StoreStateError`, naming the document) if a document's
frozen JSON is missing or does not match its stored SHA-256, or if the audit log vouches
for a finalized document the register lacks or for other bytes than the register holds.

A :class:`Document` keeps the fields of the SPEC's "Invoice JSON" that Stripe needs — and
nothing else (no customer name, address or e-mail). Amounts become integer cents without
passing through float, and must add up (lines to lines_total, less allowances to net, net +
VAT to total, total less paid to due) before anything is planned; a credit note must name
the invoice it corrects. A document issued before contracts existed has no lines_total,
allowances, paid or due: its lines total is its net, and its due its total.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import duckdb

from audit.log import AuditLog
from billing.errors import StoreStateError, StripeSyncError
from billing.numbering import check_frozen
from gpumeter import store
from gpumeter.months import Month, MonthError

_CENT = Decimal("0.01")


@dataclass(frozen=True)
class DocLine:
    gpu_model: str  # "" on a minimum-spend line
    mig_profile: str | None
    gpu_hours: str  # as printed (decimal string; "" on a minimum-spend line)
    unit_price: str  # EUR per GPU-hour, as printed
    amount_cents: int
    kind: str = "usage"  # usage | spot | reservation | minimum_spend
    contract: str | None = None


@dataclass(frozen=True)
class CreditAmount:
    credit: str
    amount_cents: int  # > 0


@dataclass(frozen=True)
class Document:
    """The fields of the SPEC's "Invoice JSON" that the sync uses — and nothing else."""

    number: str
    kind: Literal["invoice", "credit_note"]
    tenant: str
    period: Month
    lines: tuple[DocLine, ...]
    net_cents: int
    vat_treatment: str
    vat_rate: str
    vat_cents: int
    total_cents: int
    references: str | None
    vat_mention: str | None
    allowances: tuple[CreditAmount, ...] = ()  # promotional credits (before VAT)
    paid: tuple[CreditAmount, ...] = ()  # prepaid credits (after VAT)
    due_cents: int | None = None  # total less paid; None: the total

    @property
    def collect_cents(self) -> int:
        """What Stripe collects (an invoice) or credits (a credit note): the document's due."""
        return self.total_cents if self.due_cents is None else self.due_cents


def _cents(value: object, what: str, number: str) -> int:
    """A two-decimal amount ("12.34") as integer cents; never through float."""
    try:
        amount = Decimal(value) if isinstance(value, str | int | Decimal) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount != amount.quantize(_CENT):
        raise StripeSyncError(f"{what} must be a decimal amount with at most two decimals", number=number, value=value)
    if amount < 0:
        raise StripeSyncError(
            f"{what} must not be negative (credit notes carry positive amounts)", number=number, value=value
        )
    return int(amount * 100)


def _text(doc: Mapping[str, Any], key: str, number: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise StripeSyncError(f"field {key!r} must be a non-empty string", number=number, value=value)
    return value


def parse_document(raw: Mapping[str, Any], number: str) -> Document:
    """Check issued document ``number`` (its JSON) and keep what Stripe needs; amounts must add up."""
    if raw.get("number") != number:
        raise StripeSyncError("the JSON carries another number", number=number, value=raw.get("number"))
    if raw.get("status") != "finalized":
        raise StripeSyncError("the JSON is not finalized", number=number, value=raw.get("status"))
    kind = raw.get("kind")
    if kind not in ("invoice", "credit_note"):
        raise StripeSyncError("kind must be invoice or credit_note", number=number, value=kind)
    if raw.get("currency") != "EUR":
        raise StripeSyncError("only EUR documents can be pushed", number=number, value=raw.get("currency"))
    treatment = _text(raw, "vat_treatment", number)
    if treatment not in ("domestic", "reverse_charge", "outside_scope"):
        raise StripeSyncError("unknown vat_treatment", number=number, value=treatment)
    try:
        period = Month.parse(_text(raw, "period", number))
    except MonthError as exc:
        raise StripeSyncError(exc.message, number=number, value=raw.get("period")) from exc
    lines_raw = raw.get("lines")
    if not isinstance(lines_raw, list):
        raise StripeSyncError("lines must be a list", number=number)
    lines = []
    for i, ln in enumerate(lines_raw, start=1):
        if not isinstance(ln, dict):
            raise StripeSyncError(f"line {i} is not an object", number=number)
        profile = ln.get("mig_profile")
        line_kind = ln.get("kind", "usage")
        if line_kind not in ("usage", "spot", "reservation", "minimum_spend"):
            raise StripeSyncError(f"line {i} has an unknown kind", number=number, value=line_kind)
        contract = ln.get("contract")
        hours = ln.get("gpu_hours")
        lines.append(
            DocLine(
                gpu_model="" if line_kind == "minimum_spend" else _text(ln, "gpu_model", number),
                mig_profile=profile if isinstance(profile, str) and profile else None,
                gpu_hours="" if hours is None else str(hours),
                unit_price=str(ln.get("unit_price", "")),
                amount_cents=_cents(ln.get("amount"), f"line {i} amount", number),
                kind=line_kind,
                contract=contract if isinstance(contract, str) and contract else None,
            )
        )
    net = _cents(raw.get("net"), "net", number)
    vat = _cents(raw.get("vat"), "vat", number)
    total = _cents(raw.get("total"), "total", number)
    lines_total = _cents(raw.get("lines_total", raw.get("net")), "lines_total", number)
    allowances = _credits(raw.get("allowances", []), "allowances", number)
    paid = _credits(raw.get("paid", []), "paid", number)
    due = _cents(raw.get("due", raw.get("total")), "due", number)
    if sum(ln.amount_cents for ln in lines) != lines_total:
        raise StripeSyncError("the lines do not add up to lines_total", number=number, value=raw.get("lines_total"))
    if lines_total - sum(a.amount_cents for a in allowances) != net:
        raise StripeSyncError("the lines less the allowances do not add up to net", number=number, value=raw.get("net"))
    if net + vat != total:
        raise StripeSyncError("net + vat is not total", number=number, value=raw.get("total"))
    if total - sum(p.amount_cents for p in paid) != due:
        raise StripeSyncError("total less paid is not due", number=number, value=raw.get("due"))
    if treatment != "domestic" and vat != 0:
        raise StripeSyncError(f"a {treatment} document cannot carry VAT", number=number, value=raw.get("vat"))
    references = raw.get("references")
    if kind == "credit_note" and not (isinstance(references, str) and references):
        raise StripeSyncError("a credit note must reference the invoice it corrects", number=number)
    mention = raw.get("vat_exemption")
    return Document(
        number=number,
        kind=kind,
        tenant=_text(raw, "tenant", number),
        period=period,
        lines=tuple(lines),
        net_cents=net,
        vat_treatment=treatment,
        vat_rate=str(raw.get("vat_rate", "")),
        vat_cents=vat,
        total_cents=total,
        references=references if isinstance(references, str) and references else None,
        vat_mention=mention if isinstance(mention, str) and mention else None,
        allowances=allowances,
        paid=paid,
        due_cents=due,
    )


def _credits(raw: object, what: str, number: str) -> tuple[CreditAmount, ...]:
    if not isinstance(raw, list):
        raise StripeSyncError(f"{what} must be a list", number=number, value=raw)
    out = []
    for i, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise StripeSyncError(f"{what} item {i} is not an object", number=number)
        amount = _cents(item.get("amount"), f"{what} item {i} amount", number)
        if amount == 0:
            raise StripeSyncError(f"{what} item {i} amount must be positive", number=number)
        out.append(CreditAmount(_text(item, "credit", number), amount))
    return tuple(out)


def issued_documents(con: duckdb.DuckDBPyConnection, month: Month) -> list[Document]:
    """The documents issued for ``month``, in number order, from their frozen JSON in the store.

    Every document is checked before any is returned, so a bad one stops the sync before
    its first request: the JSON must be there and match its SHA-256 (as the store and the
    audit log recorded it), and agree with the register on number, kind, tenant, period
    and total.
    """
    audited = _audited_json(con, month)
    docs = []
    for number, kind, tenant, total, data, sha256 in store.run(
        con, "stripe_issued_documents", {"period": str(month)}
    ).fetchall():
        frozen = check_frozen(number, f"{number}.json", data, sha256)
        if audited.pop(number, sha256) != sha256:
            raise StoreStateError(
                f"{number}: the audit log vouches for other JSON bytes than the store holds", value=number
            )
        try:
            raw = json.loads(frozen, parse_float=Decimal)
        except ValueError as exc:
            raise StripeSyncError(f"the stored JSON is not JSON: {exc}", number=number) from exc
        if not isinstance(raw, dict):
            raise StripeSyncError("the stored JSON is not an object", number=number)
        doc = parse_document(raw, number)
        register = (kind, tenant, month, int(total * 100))
        if (doc.kind, doc.tenant, doc.period, doc.total_cents) != register:
            raise StoreStateError(
                f"{number}: the stored JSON says {doc.kind} of {doc.tenant} for {doc.period}, total "
                f"{doc.total_cents} cents; the register {kind} of {tenant} for {month}, total {total}",
                value=number,
            )
        docs.append(doc)
    if audited:
        missing = ", ".join(sorted(audited))
        raise StoreStateError(
            f"{missing}: finalized for {month} in the audit log, but missing from the store", value=missing
        )
    if not docs:
        raise StripeSyncError(f"nothing was issued for {month} (gpumeter invoice --month {month} --finalize)")
    return docs


def _audited_json(con: duckdb.DuckDBPyConnection, month: Month) -> dict[str, str]:
    """Number -> SHA-256 of the JSON of each document the audit log records as finalized in ``month``."""
    log = AuditLog(con)
    out = {}
    for number in log.subjects("invoice_finalized", str(month)):
        found = log.latest("invoice_finalized", number, str(month))
        if found is not None:
            out[number] = str(json.loads(found[1])["json"]["sha256"])
    return out
