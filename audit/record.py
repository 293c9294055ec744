"""What other packages call to put facts in the audit log, without knowing its internals.

Each ``record_*`` builds one entry (:mod:`audit.entries`), appends it with the documents
it vouches for, and returns its index. It joins the caller's open transaction, so e.g.
billing can finalize an invoice and log it atomically::

    with store.transaction(con):
        ...write the invoice rows...
        record_invoice_finalized(con, number=n, tenant=t, period="2026-07", currency="EUR",
                                 totals={"net": net, "vat": vat, "total": total},
                                 json_document=json_bytes, pdf_document=pdf_bytes)

Times default to now (UTC); pass ``at`` for reproducible entries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb

from audit import entries
from audit.attest import sync_inventory, sync_usage_windows
from audit.canonical import format_time
from audit.log import AuditLog
from gpumeter.config import Config


def _now(at: datetime | None) -> datetime:
    return at or datetime.now(UTC)


def record(
    con: duckdb.DuckDBPyConnection,
    entry: Mapping[str, Any],
    documents: Mapping[str, bytes] | None = None,
    *,
    at: datetime | None = None,
) -> int:
    """Append any valid entry (a JSON object with ``type`` and ``time``); returns its index."""
    return AuditLog(con).append(entry, documents, at=at)


def record_invoice_finalized(
    con: duckdb.DuckDBPyConnection,
    *,
    number: str,
    tenant: str,
    period: str,
    totals: Mapping[str, Decimal | str],
    currency: str,
    json_document: bytes,
    pdf_document: bytes,
    kind: str = "invoice",
    at: datetime | None = None,
    ubl_document: bytes | None = None,
) -> int:
    """An invoice or credit note was finalized; the log keeps its JSON and PDF (and UBL XML)."""
    moment = _now(at)
    entry = entries.invoice_finalized(
        at=moment,
        number=number,
        tenant=tenant,
        period=period,
        totals=totals,
        currency=currency,
        json_document=json_document,
        pdf_document=pdf_document,
        kind=kind,
        ubl_document=ubl_document,
    )
    docs = {entry["json"]["document"]: json_document, entry["pdf"]["document"]: pdf_document}
    if ubl_document is not None:
        docs[entry["ubl"]["document"]] = ubl_document
    return AuditLog(con).append(entry, docs, at=moment)


def record_stripe_sync(
    con: duckdb.DuckDBPyConnection,
    *,
    invoice: str,
    tenant: str,
    period: str,
    sent: Mapping[str, Any],
    result: Mapping[str, Any],
    at: datetime | None = None,
) -> int:
    """What was sent to Stripe for an invoice (amounts as decimal strings) and its answer."""
    moment = _now(at)
    entry = entries.stripe_sync(at=moment, invoice=invoice, tenant=tenant, period=period, sent=sent, result=result)
    return AuditLog(con).append(entry, at=moment)


def record_usage_window(
    con: duckdb.DuckDBPyConnection,
    *,
    window_start: datetime,
    digest: str,
    rows: int,
    interval_ms: int | None = None,
    backend: str | None = None,
    nodes_version: int | None = None,
    at: datetime | None = None,
) -> int:
    """A metered hour and the digest of its usage rows; supersedes an earlier, different one."""
    moment = _now(at)
    log = AuditLog(con)
    start = format_time(window_start)
    prior = log.latest("usage_window", start)
    previous = json.loads(prior[1]).get("digest") if prior else None
    entry = entries.usage_window(
        at=moment,
        window_start=window_start,
        digest=digest,
        rows=rows,
        interval_ms=interval_ms,
        backend=backend,
        nodes_version=nodes_version,
        supersedes=prior[0] if prior else None,
        previous_digest=previous if isinstance(previous, str) else None,
    )
    return log.append(entry, at=moment)


def record_inventory_snapshot(
    con: duckdb.DuckDBPyConnection,
    *,
    kind: str,
    version: int,
    content: bytes,
    file_name: str | None = None,
    at: datetime | None = None,
) -> int:
    """An inventory file version, kept whole as a document."""
    moment = _now(at)
    name = file_name or f"inventory-{kind}-v{version}.csv"
    entry = entries.inventory_snapshot(at=moment, kind=kind, version=version, content=content, file_name=name)
    return AuditLog(con).append(entry, {entry["file"]["document"]: content}, at=moment)


def after_collect(con: duckdb.DuckDBPyConnection, cfg: Config, *, at: datetime | None = None) -> None:
    """``gpumeter collect``'s hook: log new inventory versions and (re)metered windows."""
    del cfg  # nothing configurable yet; the hook's signature is metering's
    moment = _now(at)
    sync_inventory(con, at=moment)
    sync_usage_windows(con, at=moment)
