"""What a store holds after a run, and whether it is consistent: the fault suite's yardstick.

Every fault test ends the same way: :func:`metered` or :func:`billed` reads the store of the
disturbed site and of an undisturbed run of the same commands on the same data; the test
asserts that the store is consistent (``findings == []``) and that both hold the same
totals. The store is read from a copy, because checking the audit log means signing a
checkpoint (with a test key) and recomputing the whole tree from the entry bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.check import check_log
from audit.log import AuditLog
from audit.note import Signer
from gpumeter import store

ORIGIN = "gpumeter.test/audit"  # tests/sites.py and testing/stores.py name their logs so


@dataclass(frozen=True)
class Metered:
    usage: list[tuple[Any, ...]]  # every usage row, hosts sorted
    windows: list[tuple[Any, ...]]  # (window_start, rows, digest) of every collected hour
    inventory: list[tuple[Any, ...]]  # (kind, version, sha256)
    findings: list[str]  # consistency problems of the metering tables; [] when consistent
    log_findings: list[str]  # the audit log against itself and the metering tables

    @property
    def consistent(self) -> bool:
        return not self.findings and not self.log_findings


@dataclass(frozen=True)
class Billed:
    documents: list[tuple[Any, ...]]  # (number, kind, tenant, period, issue_date, net, vat, total, json bytes)
    findings: list[str]


def _copy(db: Path, into: Path) -> Path:
    target = into / db.name
    shutil.copy2(db, target)
    wal = db.with_name(db.name + ".wal")
    if wal.exists():
        shutil.copy2(wal, target.with_name(target.name + ".wal"))
    return target


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def _log_findings(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The audit log recomputed from its entry bytes against a checkpoint signed now."""
    signer = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32))
    AuditLog(con).sign_checkpoint(signer, ORIGIN)
    result = check_log(con, [signer.verifier], ORIGIN)
    return [f"audit log: {f}" for f in result.findings]


def metered(db: Path) -> Metered:
    with tempfile.TemporaryDirectory() as tmp:
        con = store.connect(_copy(db, Path(tmp)))
        try:
            findings = [
                f"window {ws} says {rows} rows, the store has {n}"
                for ws, rows, n in _rows(
                    con,
                    "SELECT cw.window_start, cw.rows, count(u.window_start) FROM collected_windows AS cw "
                    "LEFT JOIN usage AS u USING (window_start) GROUP BY ALL HAVING cw.rows <> count(u.window_start)",
                )
            ]
            findings += [
                f"usage in hour {ws}, which no collect recorded"
                for (ws,) in _rows(
                    con, "SELECT DISTINCT window_start FROM usage ANTI JOIN collected_windows USING (window_start)"
                )
            ]
            logged = {
                ws: digest
                for ws, digest in _rows(
                    con,
                    "SELECT subject, json_extract_string(decode(entry), '$.digest') FROM audit_entries "
                    "WHERE entry_type = 'usage_window' QUALIFY idx = max(idx) OVER (PARTITION BY subject)",
                )
            }
            windows = _rows(con, "SELECT window_start, rows, digest FROM collected_windows ORDER BY 1")
            stored = {f"{ws:%Y-%m-%dT%H:%M:%SZ}": digest for ws, _, digest in windows}
            log_findings = [
                f"hour {w}: the log vouches for {logged.get(w)}, the store holds {d}"
                for w, d in stored.items()
                if logged.get(w) != d
            ]
            log_findings += [f"hour {w} is in the log but was never collected" for w in logged.keys() - stored.keys()]
            log_findings += [
                f"hour {w} is logged {n} times with the same digest"
                for w, n in _rows(
                    con,
                    "SELECT subject, count(*) FROM audit_entries WHERE entry_type = 'usage_window' "
                    "GROUP BY subject, json_extract_string(decode(entry), '$.digest') HAVING count(*) > 1",
                )
            ]
            inventory = _rows(con, "SELECT kind, version, sha256 FROM inventory_versions ORDER BY ALL")
            findings += [
                f"inventory {kind}: versions {a} and {b} hold the same file"
                for kind, a, b in _rows(
                    con,
                    "SELECT kind, min(version), max(version) FROM inventory_versions "
                    "GROUP BY kind, sha256 HAVING count(*) > 1",
                )
            ]
            log_findings += _log_findings(con)
            usage = _rows(con, "SELECT * EXCLUDE (hosts), list_sort(hosts) FROM usage ORDER BY ALL")
        finally:
            con.close()
    return Metered(usage, windows, inventory, findings, log_findings)


def billed(db: Path, out: Path) -> Billed:
    """Issued documents, and their files in ``out`` (the invoices folder) checked against the store."""
    with tempfile.TemporaryDirectory() as tmp:
        con = store.connect(_copy(db, Path(tmp)))
        try:
            docs = _rows(
                con,
                "SELECT number, kind, tenant, period, issue_date, net, vat, total, json_bytes, json_sha256, "
                "pdf_sha256 FROM billing_documents ORDER BY number",
            )
            findings: list[str] = []
            for number, *_, jbytes, jsha, psha in docs:
                for suffix, sha in (("json", jsha), ("pdf", psha)):
                    path = out / docs_period(jbytes) / f"{number}.{suffix}"
                    if not path.exists():
                        findings.append(f"{path.name} is missing from the invoices folder")
                    elif hashlib.sha256(path.read_bytes()).hexdigest() != sha:
                        findings.append(f"{path.name} differs from the document frozen in the store")
            logged = [
                s
                for (s,) in _rows(
                    con, "SELECT subject FROM audit_entries WHERE entry_type = 'invoice_finalized' ORDER BY idx"
                )
            ]
            if sorted(logged) != [d[0] for d in docs]:
                findings.append(f"the log vouches for {logged}, the store holds {[d[0] for d in docs]}")
            for series, year, last in _rows(con, "SELECT series, year, last_seq FROM billing_sequences"):
                seqs = [
                    s
                    for (s,) in con.execute(
                        "SELECT seq FROM billing_documents WHERE series = ? AND year = ? ORDER BY seq", [series, year]
                    ).fetchall()
                ]
                if seqs != list(range(1, last + 1)):
                    findings.append(f"{series} {year}: numbers {seqs}, the sequence is at {last}")
            drafts = sorted(p.name for p in out.rglob("draft-*"))
            if drafts:
                findings.append(f"stale drafts left beside issued documents: {drafts}")
            findings += _log_findings(con)
        finally:
            con.close()
    return Billed([tuple(d[:9]) for d in docs], findings)


def docs_period(json_bytes: bytes) -> str:
    period: str = json.loads(bytes(json_bytes))["period"]
    return period
