"""The register of issued documents: gapless numbers, frozen documents, what was issued.

Numbers: one gapless series per supplier, document series and year of issue.

``GM-2026-000001`` for invoices (supplementary invoices included), ``GMC-2026-000001``
for credit notes — separate justified series, as French practice allows.
A number is claimed with :func:`claim` *inside* the transaction that stores the frozen
document: if anything fails before the commit, the claim rolls back with it, so the series
never has a hole. Numbers only use letters, digits and ``-`` (French CTC BR-FR-02) and
stay under 35 characters (BR-FR-01).

Issued documents are only ever inserted (:func:`store_document`): lines and totals as
DECIMAL, the exact JSON and PDF bytes and their SHA-256, and for a Peppol tenant the UBL XML
(:func:`store_ubl`). :func:`read_issued` gives what a
month already holds, which is what corrections are computed against. Whoever reads the
frozen bytes back (to restore a file, to push to Stripe, to hand a tenant its documents)
takes them through :func:`check_frozen` (the embedded Factur-X XML through
:func:`embedded_xml`): bytes that are missing or do not match their SHA-256 are refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import duckdb

from billing.credits import CreditEvent, CreditHistory, uses_of
from billing.errors import BillingError, StoreStateError
from billing.invoice import Invoice, IssuedPosition, Kind, LineKey, LineKind, Period
from billing.money import HOURS_DISPLAY_PLACES, round_exact
from billing.plan import IssuedDocument
from gpumeter import store
from gpumeter.months import Month

DEFAULT_PREFIXES = {Kind.INVOICE: "GM", Kind.CREDIT_NOTE: "GMC"}
_PREFIX = re.compile(r"^[A-Z0-9]{1,12}$")
_NUMBER = re.compile(r"^(?P<prefix>[A-Z0-9]{1,12})-(?P<year>\d{4})-(?P<seq>\d{6,})$")


@dataclass(frozen=True)
class Number:
    prefix: str
    year: int
    seq: int

    def __str__(self) -> str:
        return f"{self.prefix}-{self.year:04d}-{self.seq:06d}"


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise BillingError("an invoice number prefix is 1-12 capital letters or digits", value=prefix)
    return prefix


def parse_number(text: str) -> Number:
    m = _NUMBER.match(text)
    if not m:
        raise BillingError("not a gpumeter invoice number (PREFIX-YYYY-NNNNNN)", value=text)
    return Number(m.group("prefix"), int(m.group("year")), int(m.group("seq")))


def claim(con: duckdb.DuckDBPyConnection, *, supplier_vat_id: str, kind: Kind, year: int, prefix: str) -> Number:
    """The next number of the series; call inside the transaction that stores the document."""
    # fetchall, not fetchone: DuckDB keeps a partly fetched result open on the connection.
    rows = store.run(
        con,
        "billing_next_seq",
        {"supplier_vat_id": supplier_vat_id, "series": kind.value, "year": year},
    ).fetchall()
    row = rows[0] if len(rows) == 1 else None
    if row is None:
        raise BillingError("the number series did not answer", value=(supplier_vat_id, kind.value, year))
    return Number(check_prefix(prefix), year, int(row[0]))


def check_gapless(numbers: list[Number]) -> list[str]:
    """Findings if the numbers of one series and year are not exactly 1..n (for audits)."""
    findings = []
    by_series: dict[tuple[str, int], list[int]] = {}
    for n in numbers:
        by_series.setdefault((n.prefix, n.year), []).append(n.seq)
    for (prefix, year), seqs in sorted(by_series.items()):
        seqs.sort()
        if seqs != list(range(1, len(seqs) + 1)):
            findings.append(f"series {prefix}-{year} is not 1..{len(seqs)}: {seqs}")
    return findings


def read_issued(
    con: duckdb.DuckDBPyConnection, period: Period
) -> tuple[list[IssuedDocument], dict[str, dict[LineKey, IssuedPosition]]]:
    """The month's issued documents, and per tenant the signed sum of their lines by key."""
    docs = [
        IssuedDocument(
            number=r[0],
            kind=r[1],
            tenant=r[3],
            issue_date=r[5],
            references_number=r[7],
            net=r[9],
            vat=r[12],
            total=r[13],
            vat_treatment=r[10],
            vat_rate=r[11],
            paid=r[17],
        )
        for r in store.run(con, "billing_issued_documents", {"period": period.month}).fetchall()
    ]
    positions: dict[str, dict[LineKey, IssuedPosition]] = {}
    for tenant, model, profile, site, tier, kind, contract, hours, amount, price, lprice, disc, desc in store.run(
        con, "billing_issued_lines", {"period": period.month}
    ).fetchall():
        key = LineKey(model, profile, site, tier.normalize() if tier else Decimal(0), LineKind(kind), contract)
        positions.setdefault(tenant, {})[key] = IssuedPosition(hours, amount, price, lprice, disc, desc)
    return docs, positions


def read_credit_history(con: duckdb.DuckDBPyConnection) -> CreditHistory:
    """Every credit row of the issued documents, and each tenant's latest invoiced month."""
    events = tuple(
        CreditEvent(number, tenant, kind, Month.parse(period), credit, role, amount)
        for number, tenant, kind, period, credit, role, amount in store.run(con, "billing_credit_history").fetchall()
    )
    invoiced = {tenant: Month.parse(period) for tenant, period in store.run(con, "billing_invoiced_months").fetchall()}
    return CreditHistory(events, invoiced)


def store_document(
    con: duckdb.DuckDBPyConnection,
    inv: Invoice,
    seq: int,
    rates_sha256: str,
    jbytes: bytes,
    pdf: bytes,
    xml: bytes,
    moment: datetime,
) -> None:
    """Freeze one issued document: totals and lines as DECIMAL, JSON and PDF bytes, SHA-256s."""
    assert inv.number is not None and inv.issue_date is not None and inv.due_date is not None
    store.run(
        con,
        "billing_insert_document",
        {
            "number": inv.number,
            "supplier_vat_id": inv.supplier.vat_id,
            "series": inv.kind.value,
            "year": inv.issue_date.year,
            "seq": seq,
            "kind": inv.kind.value,
            "type_code": inv.kind.type_code,
            "tenant": inv.tenant,
            "period": inv.period.month,
            "issue_date": inv.issue_date,
            "due_date": inv.due_date,
            "references_number": inv.references.number if inv.references else None,
            "references_date": inv.references.issue_date if inv.references else None,
            "currency": "EUR",
            "net": inv.net,
            "vat_treatment": inv.vat.treatment.value,
            "vat_rate": inv.vat.rate_percent,
            "vat": inv.vat_amount,
            "total": inv.total,
            "rates_sha256": rates_sha256,
            "json_bytes": jbytes,
            "json_sha256": _sha256(jbytes),
            "pdf_bytes": pdf,
            "pdf_sha256": _sha256(pdf),
            "xml_sha256": _sha256(xml),
            "finalized_at": moment,
        },
    )
    for i, ln in enumerate(inv.lines, start=1):
        store.run(
            con,
            "billing_insert_line",
            {
                "number": inv.number,
                "line_no": i,
                "gpu_model": ln.gpu_model or None,
                "mig_profile": ln.mig_profile,
                "site": ln.site,
                "tier_from_gpu_hours": ln.tier_from_gpu_hours,
                "description": ln.description,
                "gpu_hours": ln.gpu_hours_display,
                "unit_price": ln.unit_price,
                "list_unit_price": ln.list_unit_price,
                "discount_percent": ln.discount_percent,
                "amount": ln.amount,
                "kind": ln.kind.value,
                "contract": ln.contract,
                "used_gpu_hours": round_exact(ln.used_gpu_hours, HOURS_DISPLAY_PLACES)
                if ln.used_gpu_hours is not None
                else None,
            },
        )
    for credit, role, amount in uses_of(inv):
        store.run(
            con,
            "billing_insert_credit",
            {"number": inv.number, "tenant": inv.tenant, "credit": credit, "role": role, "amount": amount},
        )


def store_ubl(con: duckdb.DuckDBPyConnection, number: str, ubl: bytes) -> None:
    """Freeze the UBL XML of document ``number``, in the transaction that stores the document."""
    store.run(con, "billing_insert_ubl", {"number": number, "ubl_bytes": ubl, "ubl_sha256": _sha256(ubl)})


def issued_ubl(con: duckdb.DuckDBPyConnection, number: str) -> tuple[bytes, str] | None:
    """(UBL XML bytes, their SHA-256) of an issued document, or None if it was issued without."""
    rows = store.run(con, "billing_issued_ubl", {"number": number}).fetchall()
    if not rows:
        return None
    _, ubl, sha = rows[0]
    return bytes(ubl) if ubl is not None else b"", sha


def check_frozen(number: str, name: str, data: bytes | None, sha256: str) -> bytes:
    """The frozen bytes ``name`` of issued document ``number``, if they match the SHA-256 stored with them."""
    if not data:
        raise StoreStateError(f"{number}: the stored bytes of {name} are missing", value=number)
    if _sha256(data) != sha256:
        raise StoreStateError(f"{number}: the stored bytes of {name} do not match their SHA-256", value=number)
    return bytes(data)


def embedded_xml(number: str, pdf: bytes, sha256: str) -> bytes:
    """The ``factur-x.xml`` inside issued document ``number``'s frozen PDF, if it matches the
    SHA-256 stored with the document (the XML is frozen only as part of the PDF)."""
    from facturx import get_facturx_xml_from_pdf

    try:
        _, xml = get_facturx_xml_from_pdf(pdf, check_xsd=False)
    except Exception as exc:  # the library raises bare Exceptions on a PDF it cannot read
        raise StoreStateError(f"{number}: the stored PDF holds no readable factur-x.xml", value=number) from exc
    return check_frozen(number, "factur-x.xml", xml, sha256)


def issued_files(con: duckdb.DuckDBPyConnection, number: str) -> tuple[bytes, str, bytes, str]:
    """(JSON bytes, their SHA-256, PDF bytes, their SHA-256) of an issued document."""
    rows = store.run(con, "billing_issued_files", {"number": number}).fetchall()
    if not rows:
        raise StoreStateError(f"issued document {number} is not in the store", value=number)
    _, jbytes, jsha, pdf, psha = rows[0]
    return bytes(jbytes), jsha, bytes(pdf), psha


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
