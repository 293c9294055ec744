"""``gpumeter audit export``: a zip an auditor can check offline (docs/formats.md, "Auditor bundle").

Layout: ``checkpoint``; ``keys/<name>+<key ID>.vkey`` (every key the log has used, from
its ``key_event`` entries); ``entries/<index>.json`` (exact bytes) and
``entries/<index>.tlog-proof`` against ``checkpoint``; ``consistency.json`` from the
checkpoint the previous month's bundle carried (absent when there is none); ``policy.json``;
``report/sovereignty.csv``; ``report/summary.md``; ``VERIFY.md``; ``policy.txt`` (a C2SP
tlog-policy naming the log key, witnesses and quorum, for convenience: verifiers never
trust it); ``documents/``; ``checkpoint.tsr`` (the RFC 3161 token of the checkpoint as the
log signed it) when there is one. ``checkpoint`` and every proof carry the witnesses'
cosignatures gathered when the bundle was written.

Scope: the month's entries — only the tenant's when ``--tenant`` is given, so a tenant
bundle holds no other tenant's names, ids or documents — plus every ``key_event`` and
the bundle's own ``export`` entry, which commits to the indices it carries, the SHA-256
of the report files and the previous checkpoint. Proofs are against the global root.

One transaction: log keys, append the export entry, sign the checkpoint, record the
export, compute every proof in one bulk read, create the temporary zip file; commit. Then
seal the checkpoint (time stamp, cosignatures: they need it committed), write the zip and
rename it into place. Members are written in a fixed order with fixed
timestamps, so the same log state gives the same bytes. Entries and their proofs are
stored uncompressed (each is small; a verifier slices them straight out of the file),
the rest deflated.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from audit import entries as kinds
from audit import report
from audit.errors import AuditError
from audit.log import AuditLog, StoredCheckpoint, atomic, encode, stored_checkpoint
from audit.note import Signer, parse_vkey
from audit.policy import Policy
from audit.proof import TlogProof, format_proof
from audit.seal import Sealed
from audit.trust import TrustPolicy, build_policy
from gpumeter import store
from gpumeter.months import Month

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    month: str
    tenant: str | None
    checkpoint: StoredCheckpoint
    export_index: int
    entries: int
    documents: int
    attestations: int
    outside: tuple[str, ...]
    previous_size: int | None
    sealed: Sealed | None = None  # time stamp and cosignatures, when the export was sealed


def _previous_checkpoint(con: duckdb.DuckDBPyConnection, month: Month, tenant: str | None) -> StoredCheckpoint | None:
    found = stored_checkpoint(
        store.run(con, "audit_previous_export", {"month": str(month.previous()), "tenant": tenant}).fetchone()
    )
    if found is None:
        found = stored_checkpoint(store.run(con, "audit_checkpoint_before", {"before": month.start}).fetchone())
    return found


def _zip_member(out: zipfile.ZipFile, name: str, data: bytes, *, stored: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    info.external_attr = 0o100644 << 16
    out.writestr(info, data)


def export_bundle(
    con: duckdb.DuckDBPyConnection,
    month: str,
    tenant: str | None,
    out_path: Path,
    signers: Sequence[Signer],
    origin: str,
    boundary: Policy,
    *,
    by: str,
    at: datetime | None = None,
    mark: Path | None = None,
    seal: Callable[[StoredCheckpoint], Sealed] | None = None,
    trust: TrustPolicy | None = None,
) -> ExportResult:
    """Write the bundle for ``month`` (and ``tenant``, or the whole log) to ``out_path``.

    ``mark``: the largest-checkpoint file the signing is guarded by (:mod:`audit.highwater`).
    ``seal``: time-stamps and cosigns the checkpoint once the export is committed
    (:func:`audit.seal.seal`); the bundle then carries the cosigned note (in ``checkpoint``
    and every proof) and the token (``checkpoint.tsr``). ``trust``: the policy written as
    ``policy.txt`` (default: the signers' keys, no witness)."""
    calendar = Month.parse(month)
    month = str(calendar)
    moment = at or datetime.now(UTC)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    log = AuditLog(con)
    tmp_name: str | None = None
    try:
        with atomic(con):
            log.record_keys(signers, at=moment)
            scope = [
                (int(i), bytes(b))
                for i, b in store.run(con, "audit_scope", {"month": month, "tenant": tenant}).fetchall()
            ]
            parsed: list[tuple[int, dict[str, Any]]] = [(i, json.loads(b)) for i, b in scope]
            prev = _previous_checkpoint(con, calendar, tenant)
            vkeys = sorted({str(e["key"]) for _, e in parsed if e.get("type") == "key_event"})
            docs: dict[str, str] = {}
            for _, e in parsed:
                for name, digest in kinds.document_refs(e):
                    docs[name] = digest
            atts = report.latest_attestations(parsed)
            files = {
                "policy.json": report.policy_json(boundary),
                "VERIFY.md": report.verify_md(origin=origin, month=month, tenant=tenant),
                "policy.txt": report.policy_txt(
                    origin, trust or build_policy([s.vkey for s in signers], source="the signing keys")
                ),
                "report/sovereignty.csv": report.sovereignty_csv(atts),
                "report/summary.md": report.summary_md(
                    origin=origin,
                    month=month,
                    tenant=tenant,
                    boundary=boundary.document(),
                    entries=parsed,
                    documents=docs,
                    previous_size=prev.size if prev else None,
                    key_fingerprints=[parse_vkey(v).fingerprint for v in vkeys],
                ),
            }
            entry = kinds.export(
                at=moment,
                month=month,
                tenant=tenant,
                by=by,
                entry_count=len(scope),
                entry_digest=report.entry_list_digest(i for i, _ in scope),
                files={name: kinds.sha256_hex(data) for name, data in files.items()},
                previous_checkpoint=(
                    None if prev is None else {"size": prev.size, "sha256": kinds.sha256_hex(prev.note.encode())}
                ),
            )
            export_index = log.append_encoded([encode(entry)], at=moment)[0]
            checkpoint = log.sign(signers, origin, at=moment, mark=mark)
            store.run(
                con,
                "audit_insert_export",
                {
                    "month": month,
                    "tenant": tenant,
                    "checkpoint_id": checkpoint.id,
                    "entry_idx": export_index,
                    "made_by": by,
                    "made_at": moment,
                },
            )
            scope.append((export_index, encode(entry).data))
            proofs = log.inclusion_proofs([i for i, _ in scope], checkpoint.size)
            consistency: bytes | None = None
            if prev is not None:
                consistency = report.consistency_json(prev.note, log.consistency_proof(prev.size, checkpoint.size))
            stored_docs = log.documents(sorted(docs))
            missing = sorted(set(docs) - set(stored_docs))
            if missing:
                raise AuditError("the log does not keep a document an entry names", value=missing[0])
            fd, tmp_name = tempfile.mkstemp(prefix=".bundle-", suffix=".zip", dir=out_path.parent)
        sealed = seal(checkpoint) if seal is not None else None  # committed first: see audit.seal
        note = sealed.note if sealed is not None else checkpoint.note
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as out:
            _zip_member(out, "checkpoint", note.encode("utf-8"))
            if sealed is not None and sealed.tsr is not None:
                _zip_member(out, "checkpoint.tsr", sealed.tsr)
            for v in vkeys:
                _zip_member(out, report.key_file_name(v), report.key_file(v))
            if consistency is not None:
                _zip_member(out, "consistency.json", consistency)
            for name in ("policy.json", "policy.txt", "VERIFY.md", "report/sovereignty.csv", "report/summary.md"):
                _zip_member(out, name, files[name])
            for i, data in scope:  # stored: small, and a verifier reads them without inflating
                _zip_member(out, f"entries/{i}.json", data, stored=True)
                text = format_proof(TlogProof(i, tuple(proofs[i]), note))
                _zip_member(out, f"entries/{i}.tlog-proof", text.encode("utf-8"), stored=True)
            for name in sorted(stored_docs):
                _zip_member(out, name, stored_docs[name])
        os.replace(tmp_name, out_path)
        tmp_name = None
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
    return ExportResult(
        path=out_path,
        month=month,
        tenant=tenant,
        checkpoint=checkpoint,
        export_index=export_index,
        entries=len(scope),
        documents=len(stored_docs),
        attestations=len(atts),
        outside=tuple(str(e.get("job_id")) for _, e in atts if e.get("in_eu") is not True),
        previous_size=prev.size if prev else None,
        sealed=sealed,
    )


@dataclass(frozen=True)
class MonthExport:
    attested: Any  # audit.attest.AttestResult
    export: ExportResult


def attest_and_export(
    con: duckdb.DuckDBPyConnection,
    month: str,
    tenant: str | None,
    out_path: Path,
    signers: Sequence[Signer],
    origin: str,
    boundary: Policy,
    *,
    by: str,
    at: datetime | None = None,
    mark: Path | None = None,
    seal: Callable[[StoredCheckpoint], Sealed] | None = None,
    trust: TrustPolicy | None = None,
) -> MonthExport:
    """What ``gpumeter audit export`` does: log inventory versions, the month's usage
    windows and job attestations, then sign a checkpoint and write the bundle.

    A bad ``month`` is refused before anything is logged."""
    from audit import attest

    month = str(Month.parse(month))
    attest.sync_inventory(con, at=at)
    attest.sync_usage_windows(con, month, at=at)
    attested = attest.attest_month(con, month, boundary, at=at)
    result = export_bundle(
        con, month, tenant, out_path, signers, origin, boundary, by=by, at=at, mark=mark, seal=seal, trust=trust
    )
    return MonthExport(attested, result)
