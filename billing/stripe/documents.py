"""The documents a Stripe sync pushes: a month's finalized invoices and credit notes.

A :class:`Document` keeps the fields of the SPEC's "Invoice JSON" that Stripe needs — and
nothing else (no customer name, address or e-mail). Amounts become integer cents without
passing through float, and must add up (lines to net, net + VAT to total) before anything
is planned; a credit note must name the invoice it corrects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from billing.errors import StripeSyncError
from gpumeter.months import Month, MonthError

_CENT = Decimal("0.01")


@dataclass(frozen=True)
class DocLine:
    gpu_model: str
    mig_profile: str | None
    gpu_hours: str  # as printed (decimal string)
    unit_price: str  # EUR per GPU-hour, as printed
    amount_cents: int


@dataclass(frozen=True)
class Document:
    """The fields of the SPEC's "Invoice JSON" that the sync uses — and nothing else."""

    file: Path
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


def _cents(value: object, what: str, file: Path) -> int:
    """A two-decimal amount ("12.34") as integer cents; never through float."""
    try:
        amount = Decimal(value) if isinstance(value, str | int | Decimal) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount != amount.quantize(_CENT):
        raise StripeSyncError(f"{what} must be a decimal amount with at most two decimals", file=file, value=value)
    if amount < 0:
        raise StripeSyncError(
            f"{what} must not be negative (credit notes carry positive amounts)", file=file, value=value
        )
    return int(amount * 100)


def _text(doc: Mapping[str, Any], key: str, file: Path) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise StripeSyncError(f"field {key!r} must be a non-empty string", file=file, value=value)
    return value


def parse_document(raw: Mapping[str, Any], file: Path) -> Document:
    """Check one finalized document and keep what Stripe needs; amounts must add up."""
    number = _text(raw, "number", file)
    kind = raw.get("kind")
    if kind not in ("invoice", "credit_note"):
        raise StripeSyncError("kind must be invoice or credit_note", number=number, file=file, value=kind)
    if raw.get("currency") != "EUR":
        raise StripeSyncError("only EUR documents can be pushed", number=number, file=file, value=raw.get("currency"))
    treatment = _text(raw, "vat_treatment", file)
    if treatment not in ("domestic", "reverse_charge", "outside_scope"):
        raise StripeSyncError("unknown vat_treatment", number=number, file=file, value=treatment)
    try:
        period = Month.parse(_text(raw, "period", file))
    except MonthError as exc:
        raise StripeSyncError(exc.message, number=number, file=file, value=raw.get("period")) from exc
    lines_raw = raw.get("lines")
    if not isinstance(lines_raw, list):
        raise StripeSyncError("lines must be a list", number=number, file=file)
    lines = []
    for i, ln in enumerate(lines_raw, start=1):
        if not isinstance(ln, dict):
            raise StripeSyncError(f"line {i} is not an object", number=number, file=file)
        profile = ln.get("mig_profile")
        lines.append(
            DocLine(
                gpu_model=_text(ln, "gpu_model", file),
                mig_profile=profile if isinstance(profile, str) and profile else None,
                gpu_hours=str(ln.get("gpu_hours", "")),
                unit_price=str(ln.get("unit_price", "")),
                amount_cents=_cents(ln.get("amount"), f"line {i} amount", file),
            )
        )
    net = _cents(raw.get("net"), "net", file)
    vat = _cents(raw.get("vat"), "vat", file)
    total = _cents(raw.get("total"), "total", file)
    if sum(ln.amount_cents for ln in lines) != net:
        raise StripeSyncError("the lines do not add up to net", number=number, file=file, value=raw.get("net"))
    if net + vat != total:
        raise StripeSyncError("net + vat is not total", number=number, file=file, value=raw.get("total"))
    if treatment != "domestic" and vat != 0:
        raise StripeSyncError(
            f"a {treatment} document cannot carry VAT", number=number, file=file, value=raw.get("vat")
        )
    references = raw.get("references")
    if kind == "credit_note" and not (isinstance(references, str) and references):
        raise StripeSyncError("a credit note must reference the invoice it corrects", number=number, file=file)
    mention = raw.get("vat_exemption")
    return Document(
        file=file,
        number=number,
        kind=kind,
        tenant=_text(raw, "tenant", file),
        period=period,
        lines=tuple(lines),
        net_cents=net,
        vat_treatment=treatment,
        vat_rate=str(raw.get("vat_rate", "")),
        vat_cents=vat,
        total_cents=total,
        references=references if isinstance(references, str) and references else None,
        vat_mention=mention if isinstance(mention, str) and mention else None,
    )


def load_month(invoices_dir: Path, month: Month) -> list[Document]:
    """The finalized documents of ``<invoices_dir>/<month>/*.json`` (drafts skipped)."""
    folder = Path(invoices_dir) / str(month)
    if not folder.is_dir():
        raise StripeSyncError(f"no invoices for {month}: {folder} does not exist", file=folder)
    docs = []
    for file in sorted(folder.glob("*.json")):
        if file.name.startswith("draft-"):
            continue
        try:
            raw = json.loads(file.read_text(encoding="utf-8"), parse_float=Decimal)
        except (OSError, ValueError) as exc:
            raise StripeSyncError(f"cannot read invoice JSON: {exc}", file=file) from exc
        if not isinstance(raw, dict) or raw.get("status") != "finalized":
            continue
        doc = parse_document(raw, file)
        if doc.period != month:
            raise StripeSyncError(f"document of period {doc.period} filed under {month}", number=doc.number, file=file)
        if file.stem != doc.number:
            raise StripeSyncError("file name and number differ", number=doc.number, file=file)
        docs.append(doc)
    return docs
