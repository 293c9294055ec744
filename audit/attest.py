"""Bring the month's facts into the log: usage windows, inventory versions, job attestations.

* :func:`sync_usage_windows` logs each metered hour of a month with the digest metering
  stored for its usage rows (``collected_windows.digest``).
* :func:`sync_inventory` logs every inventory file version with the file as a document.
* :func:`attest_month` logs one ``job_attestation`` per job of the month, from
  ``metering.report.job_month`` judged under the named policy.

All three are idempotent: a fact already logged unchanged is skipped; a changed one (late
usage, a re-collected window) is appended again with ``"supersedes": <old index>`` (and a
usage window with ``"previous_digest"``, the digest it revises) — entries are never
edited. Each runs in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl

from audit import entries
from audit.canonical import format_time
from audit.errors import AuditError
from audit.log import AuditLog, atomic, encode
from audit.policy import Policy
from audit.report import policy_json
from gpumeter import store
from gpumeter.months import Month
from metering.report import JOB_MONTH_COLUMNS
from metering.report import job_month as metered_jobs

JobMonth = Callable[[duckdb.DuckDBPyConnection, str, frozenset[str]], pl.DataFrame]


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal apart from when they were written and what they replace."""
    skip = {"time", "supersedes", "previous_digest"}
    return {k: v for k, v in old.items() if k not in skip} == {k: v for k, v in new.items() if k not in skip}


def _latest_bodies(log: AuditLog, entry_type: str, month: str | None) -> dict[str, tuple[int, dict[str, Any]]]:
    latest = log.subjects(entry_type, month)
    data = log.entries(list(latest.values()))
    return {subject: (idx, json.loads(data[idx])) for subject, idx in latest.items()}


@dataclass(frozen=True)
class SyncResult:
    """What a sync appended: new indices, and which earlier entries they supersede."""

    appended: tuple[int, ...]
    superseded: tuple[int, ...]
    unchanged: int


Candidate = tuple[str, dict[str, Any], Mapping[str, bytes]]  # (subject, entry, documents)


def _append_changes(
    log: AuditLog,
    candidates: Sequence[Candidate],
    latest: Mapping[str, tuple[int, dict[str, Any]]],
    at: datetime,
    *,
    supersede: bool = True,
    keep_previous: str | None = None,
) -> SyncResult:
    fresh: list[dict[str, Any]] = []
    docs: dict[str, bytes] = {}
    replaced: list[int] = []
    unchanged = 0
    for subject, entry, documents in candidates:
        prior = latest.get(subject)
        if prior is not None and _same(prior[1], entry):
            unchanged += 1
            continue
        if prior is not None and supersede:
            entry["supersedes"] = prior[0]
            if keep_previous is not None and keep_previous in prior[1]:
                entry[f"previous_{keep_previous}"] = prior[1][keep_previous]
            replaced.append(prior[0])
        fresh.append(entry)
        docs.update(documents)
    appended = log.append_encoded([encode(e) for e in fresh], docs, at=at) if fresh else []
    return SyncResult(tuple(appended), tuple(replaced), unchanged)


def sync_usage_windows(
    con: duckdb.DuckDBPyConnection, month: str | None = None, *, at: datetime | None = None
) -> SyncResult:
    """Log every metered hour of ``month`` (default: all) not yet logged with its current digest."""
    moment = at or datetime.now(UTC)
    start, end = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
    if month is not None:
        calendar = Month.parse(month)
        month, start, end = str(calendar), calendar.start, calendar.end
    with atomic(con):
        log = AuditLog(con)
        latest = _latest_bodies(log, "usage_window", month)
        candidates: list[Candidate] = []
        for window_start, interval_ms, rows, digest, nodes_version, backend, collected_at in store.run(
            con, "audit_collected_windows", {"start": start, "end_": end}
        ).fetchall():
            entry = entries.usage_window(
                at=collected_at,
                window_start=window_start,
                digest=str(digest),
                rows=int(rows),
                interval_ms=int(interval_ms),
                backend=str(backend),
                nodes_version=None if nodes_version is None else int(nodes_version),
            )
            candidates.append((format_time(window_start), entry, {}))
        # a revised window names the digest it replaces next to the index of its entry
        return _append_changes(log, candidates, latest, moment, keep_previous="digest")


def sync_inventory(con: duckdb.DuckDBPyConnection, *, at: datetime | None = None) -> SyncResult:
    """Log every inventory file version (the file kept as a document) not yet logged."""
    moment = at or datetime.now(UTC)
    with atomic(con):
        log = AuditLog(con)
        latest = _latest_bodies(log, "inventory_snapshot", None)
        candidates: list[Candidate] = []
        for kind, version, _sha, loaded_at, content in store.run(con, "audit_inventory_versions").fetchall():
            data = bytes(content)
            name = f"inventory-{kind}-v{int(version)}.csv"
            entry = entries.inventory_snapshot(
                at=loaded_at, kind=str(kind), version=int(version), content=data, file_name=name
            )
            candidates.append((f"{kind}/{int(version)}", entry, {entry["file"]["document"]: data}))
        return _append_changes(log, candidates, latest, moment, supersede=False)


@dataclass(frozen=True)
class AttestResult:
    month: str
    policy: str
    jobs: int
    appended: tuple[int, ...]
    superseded: tuple[int, ...]
    unchanged: int
    outside: tuple[str, ...]  # job ids judged outside the boundary


def attestation(row: Mapping[str, Any], month: str, boundary: Policy, at: datetime) -> dict[str, Any]:
    """A ``job_attestation`` entry from one ``job_month`` row (pure)."""
    missing = [c for c in JOB_MONTH_COLUMNS if c not in row]
    if missing:
        raise AuditError(f"job_month lacks column {missing[0]!r}")
    return entries.job_attestation(
        at=at,
        job_id=str(row["job_id"]),
        tenant=row["tenant"],
        month=month,
        gpu_seconds=row["gpu_seconds"],
        hosts=list(row["hosts"] or []),
        countries=list(row["countries"] or []),
        data_locations=list(row["data_locations"] or []),
        data_countries=list(row["data_countries"] or []),
        policy=boundary.id,
        policy_sha256=policy_digest(boundary),
        in_eu=bool(row["in_eu"]),
        findings=list(row["findings"] or []),
    )


def policy_digest(boundary: Policy) -> str:
    """SHA-256 of the canonical ``policy.json`` (attestations name the exact boundary)."""
    return entries.sha256_hex(policy_json(boundary))


def attest_month(
    con: duckdb.DuckDBPyConnection,
    month: str,
    boundary: Policy,
    *,
    job_month: JobMonth | None = None,
    at: datetime | None = None,
) -> AttestResult:
    """One ``job_attestation`` per job of ``month``; changed jobs supersede their last one."""
    month = str(Month.parse(month))
    moment = at or datetime.now(UTC)
    frame = (job_month or metered_jobs)(con, month, boundary.countries)
    rows = frame.to_dicts()
    with atomic(con):
        log = AuditLog(con)
        latest = _latest_bodies(log, "job_attestation", month)
        candidates: list[Candidate] = [(str(r["job_id"]), attestation(r, month, boundary, moment), {}) for r in rows]
        result = _append_changes(log, candidates, latest, moment)
    return AttestResult(
        month=month,
        policy=boundary.id,
        jobs=len(rows),
        appended=result.appended,
        superseded=result.superseded,
        unchanged=result.unchanged,
        outside=tuple(str(r["job_id"]) for r in rows if not r["in_eu"]),
    )
