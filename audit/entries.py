"""The kinds of audit entry, as plain JSON objects (pure builders, no I/O).

Every entry has ``type`` and ``time`` (RFC 3339 UTC). Quantities are decimal strings. A
file an entry vouches for is named ``{"document": "documents/<file>", "sha256": "<hex>"}``
and its bytes are kept by the log. The kinds:

==================== ========================================================= ===========
type                 what it records                                            tenant
==================== ========================================================= ===========
usage_window         a metered hour: start, digest of its usage rows, rows      —
inventory_snapshot   an inventory file version (kind, version, sha256, file)    —
job_attestation      a job's month: GPU-seconds, hosts, countries, data, verdict the job's
invoice_finalized    an invoice: number, totals, SHA-256 of its PDF and JSON    the invoice's
stripe_sync          what was sent to Stripe for an invoice                     the invoice's
export               an auditor bundle was made: month, tenant, by whom         the bundle's
key_event            a signing key was added or rotated (vkeys)                 —
==================== ========================================================= ===========

A later entry never edits an earlier one; it may name it in ``"supersedes": <index>``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from audit.canonical import format_time
from audit.errors import EntryError
from gpumeter.months import Month, MonthError

DOCUMENT_NAME = re.compile(r"^documents/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

KINDS = (
    "usage_window",
    "inventory_snapshot",
    "job_attestation",
    "invoice_finalized",
    "stripe_sync",
    "export",
    "key_event",
)


def check_month(month: str) -> str:
    """``month`` if an entry may carry it: exactly ``str(Month)``, else :class:`EntryError`.

    The rule is :class:`gpumeter.months.Month`'s; a malformed month inside an entry is a
    malformed entry (so a verifier reports it as such), not a user's bad ``--month``.
    """
    if type(month) is str and month in _MONTHS_SEEN:
        return month
    try:
        canonical = str(Month.parse(month))
    except MonthError as exc:
        raise EntryError(exc.message, value=month) from exc
    if canonical != month:
        raise EntryError("month must be exactly YYYY-MM", value=month)
    if len(_MONTHS_SEEN) < 4096:
        _MONTHS_SEEN.add(month)
    return month


_MONTHS_SEEN: set[str] = set()  # months that passed check_month (str only: nothing else is added)


def decimal_text(value: Decimal | int | str) -> str:
    """A quantity as a plain decimal string without exponent or trailing zeros."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if not d.is_finite():
        raise EntryError("quantities must be finite", value=str(value))
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "") else text


def document(name: str, content: bytes) -> dict[str, str]:
    """A reference to a file the log keeps: ``{"document": "documents/<file>", "sha256": …}``."""
    ref = {"document": name if name.startswith("documents/") else f"documents/{name}", "sha256": sha256_hex(content)}
    check_document_ref(ref)
    return ref


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_document_ref(ref: Mapping[str, Any]) -> None:
    name, digest = ref.get("document"), ref.get("sha256")
    if not isinstance(name, str) or not DOCUMENT_NAME.match(name):
        raise EntryError("a document must be named documents/<file> (letters, digits, . _ -)", value=name)
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise EntryError("a document's sha256 must be 64 lowercase hex digits", value=digest)


def document_refs(value: Any) -> Iterator[tuple[str, str]]:
    """Every (name, sha256) a JSON value vouches for, depth first."""
    if isinstance(value, Mapping):
        if "document" in value and "sha256" in value:
            check_document_ref(value)
            yield str(value["document"]), str(value["sha256"])
        for v in value.values():
            yield from document_refs(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from document_refs(v)


class EntryMeta(NamedTuple):
    """What the log indexes an entry by (not hashed, derived from the entry)."""

    entry_type: str
    month: str
    tenant: str | None
    subject: str | None


_SUBJECT = {
    "usage_window": ("window_start",),
    "inventory_snapshot": ("kind", "version"),
    "job_attestation": ("job_id",),
    "invoice_finalized": ("number",),
    "stripe_sync": ("invoice",),
    "key_event": ("key",),
}


def meta(entry: Mapping[str, Any]) -> EntryMeta:
    """Type, month, tenant and subject of an entry, for the log's index columns.

    The subject names what it is about (job id, invoice number, window start, vkey,
    ``kind/version``), when the entry says; month and tenant: :func:`scope`.
    """
    kind = str(entry["type"])
    keys = _SUBJECT.get(kind, ())
    if len(keys) == 1:
        part = entry.get(keys[0])
        subject = None if part is None else str(part)
    else:
        parts = [entry.get(k) for k in keys]
        subject = "/".join(str(p) for p in parts) if parts and all(p is not None for p in parts) else None
    month, tenant = scope(entry)
    return EntryMeta(kind, month, tenant, subject)


def scope(entry: Mapping[str, Any]) -> tuple[str, str | None]:
    """The month (``YYYY-MM``) and tenant an entry is about: what a bundle is scoped by.

    The month is the entry's ``month`` (or ``period``), else the month of a usage window's
    start, else the month of its ``time``; the tenant is its ``tenant`` (null: log-wide).
    """
    month = entry.get("month") or entry.get("period")
    if month is None:
        month = str(entry.get("window_start") if entry["type"] == "usage_window" else entry["time"])[:7]
    tenant = entry.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise EntryError("tenant must be a string or null", value=tenant)
    return check_month(month if type(month) is str else str(month)), tenant


def _with_supersedes(entry: dict[str, Any], supersedes: int | None) -> dict[str, Any]:
    if supersedes is not None:
        entry["supersedes"] = supersedes
    return entry


# ------------------------------------------------------------------------------ builders


def usage_window(
    *,
    at: datetime,
    window_start: datetime,
    digest: str,
    rows: int,
    interval_ms: int | None = None,
    backend: str | None = None,
    nodes_version: int | None = None,
    supersedes: int | None = None,
    previous_digest: str | None = None,
) -> dict[str, Any]:
    """A metered hour: the digest metering stored for its usage rows (``collected_windows``).

    A revision (the hour metered again with a different result, e.g. late samples) names
    the entry it supersedes and the digest it replaces (``previous_digest``).
    """
    entry: dict[str, Any] = {
        "type": "usage_window",
        "time": format_time(at),
        "window_start": format_time(window_start),
        "digest": digest,
        "rows": rows,
    }
    if interval_ms is not None:
        entry["interval_ms"] = interval_ms
    if backend is not None:
        entry["backend"] = backend
    if nodes_version is not None:
        entry["nodes_version"] = nodes_version
    if previous_digest is not None:
        entry["previous_digest"] = previous_digest
    return _with_supersedes(entry, supersedes)


def inventory_snapshot(*, at: datetime, kind: str, version: int, content: bytes, file_name: str) -> dict[str, Any]:
    """An inventory file version, with the file itself as a document."""
    return {
        "type": "inventory_snapshot",
        "time": format_time(at),
        "kind": kind,
        "version": version,
        "sha256": sha256_hex(content),
        "file": document(file_name, content),
    }


def job_attestation(
    *,
    at: datetime,
    job_id: str,
    tenant: str | None,
    month: str,
    gpu_seconds: Decimal | int | str,
    hosts: Sequence[str],
    countries: Sequence[str],
    data_locations: Sequence[str],
    data_countries: Sequence[str],
    policy: str,
    policy_sha256: str,
    in_eu: bool,
    findings: Sequence[str],
    supersedes: int | None = None,
) -> dict[str, Any]:
    """A job's month as docs/formats.md's auditor bundle defines it (verdict under a named policy)."""
    entry: dict[str, Any] = {
        "type": "job_attestation",
        "time": format_time(at),
        "job_id": job_id,
        "tenant": tenant,
        "month": check_month(month),
        "gpu_seconds": decimal_text(gpu_seconds),
        "hosts": sorted(hosts),
        "countries": sorted(countries),
        "data_locations": sorted(data_locations),
        "data_countries": sorted(data_countries),
        "policy": policy,
        "policy_sha256": policy_sha256,
        "in_eu": bool(in_eu),
        "findings": list(findings),
    }
    return _with_supersedes(entry, supersedes)


def invoice_finalized(
    *,
    at: datetime,
    number: str,
    tenant: str,
    period: str,
    totals: Mapping[str, Decimal | str],
    currency: str,
    json_document: bytes,
    pdf_document: bytes,
    kind: str = "invoice",
    file_stem: str | None = None,
    ubl_document: bytes | None = None,
) -> dict[str, Any]:
    """A finalized invoice (or credit note): totals and the SHA-256 of its PDF and JSON,
    and of its Peppol UBL XML when it has one."""
    stem = file_stem or re.sub(r"[^A-Za-z0-9._-]", "_", number)
    entry: dict[str, Any] = {
        "type": "invoice_finalized",
        "time": format_time(at),
        "number": number,
        "kind": kind,
        "tenant": tenant,
        "period": check_month(period),
        "currency": currency,
        "totals": {k: decimal_text(v) for k, v in totals.items()},
        "json": document(f"{stem}.json", json_document),
        "pdf": document(f"{stem}.pdf", pdf_document),
    }
    if ubl_document is not None:
        entry["ubl"] = document(f"{stem}.xml", ubl_document)
    return entry


def stripe_sync(
    *, at: datetime, invoice: str, tenant: str, period: str, sent: Mapping[str, Any], result: Mapping[str, Any]
) -> dict[str, Any]:
    """What gpumeter sent to Stripe for one invoice, and what Stripe answered (ids, status)."""
    return {
        "type": "stripe_sync",
        "time": format_time(at),
        "invoice": invoice,
        "tenant": tenant,
        "period": check_month(period),
        "sent": dict(sent),
        "result": dict(result),
    }


def export(
    *,
    at: datetime,
    month: str,
    tenant: str | None,
    by: str,
    entry_count: int,
    entry_digest: str,
    files: Mapping[str, str],
    previous_checkpoint: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """An auditor bundle was made: its scope, who made it, and what it carries.

    ``entry_digest`` commits to the indices of the other entries in the bundle, ``files``
    maps the bundle's report files to their SHA-256, and ``previous_checkpoint`` (size and
    SHA-256 of the note) names the checkpoint ``consistency.json`` starts from.
    """
    return {
        "type": "export",
        "time": format_time(at),
        "month": check_month(month),
        "tenant": tenant,
        "scope": "tenant" if tenant is not None else "log",
        "by": by,
        "entries": {"count": entry_count, "sha256": entry_digest},
        "files": dict(sorted(files.items())),
        "previous_checkpoint": None if previous_checkpoint is None else dict(previous_checkpoint),
    }


def key_event(*, at: datetime, event: str, key: str, previous: str | None = None) -> dict[str, Any]:
    """A signing key entered the log (``key_added``) or replaced another (``key_rotated``)."""
    if event not in ("key_added", "key_rotated"):
        raise EntryError("key_event must be key_added or key_rotated", value=event)
    entry: dict[str, Any] = {"type": "key_event", "time": format_time(at), "event": event, "key": key}
    if previous is not None:
        entry["previous"] = previous
    return entry
