"""The Compliance page's data: the sovereignty boundary per job, each violation's evidence,
and whether the local audit log still matches its latest signed checkpoint.

* Verdicts are metering's (those of :func:`metering.report.verdicts`, the same as ``usage``
  and the audit attestations) under the configured boundary (:func:`audit.policy.policy`),
  read with the same query).
* A violation is one finding of one job, with its evidence: the host and its country and
  site in the nodes.csv version in force, the first and last metered window the job ran
  there, its GPU-seconds there, and the job's declared data locations with their countries.
* The log status is :func:`audit.log.check_log` (a check that returns, not raises) against
  the key ring beside the signing key, with the latest checkpoint and every key's
  fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from audit import keys
from audit.check import LogCheck, check_log
from audit.log import AuditLog
from audit.policy import Policy
from gpumeter import store
from gpumeter.errors import GpumeterError
from gpumeter.sovereignty import Verdict
from metering import report
from metering.windows import from_ms, month_span

JOBS_SCHEMA = pl.Schema(
    {
        "job_id": pl.String(),
        "tenant": pl.String(),
        "gpu_seconds": pl.Decimal(38, 9),
        "in_boundary": pl.Boolean(),
        "hosts": pl.List(pl.String),
        "countries": pl.List(pl.String),
        "data_locations": pl.List(pl.String),
        "data_countries": pl.List(pl.String),
        "findings": pl.List(pl.String),
    }
)

VIOLATIONS_SCHEMA = pl.Schema(
    {
        "job_id": pl.String(),
        "tenant": pl.String(),
        "finding": pl.String(),  # host_outside | host_unknown | data_outside | data_unknown
        "host": pl.String(),
        "site": pl.String(),
        "country": pl.String(),
        "data_location": pl.String(),
        "first_window": pl.Datetime("us", "UTC"),
        "end_window": pl.Datetime("us", "UTC"),
        "gpu_seconds": pl.Decimal(38, 9),
        "data_locations": pl.List(pl.String),
        "data_countries": pl.List(pl.String),
        "evidence": pl.String(),
    }
)


@dataclass(frozen=True)
class BoundaryMonth:
    """One month judged under one boundary: per job, and every finding with its evidence."""

    month: str
    policy: str
    jobs: pl.DataFrame
    violations: pl.DataFrame

    @property
    def job_count(self) -> int:
        return self.jobs.height

    @property
    def jobs_inside(self) -> int:
        return int(self.jobs.get_column("in_boundary").sum()) if self.jobs.height else 0

    @property
    def gpu_seconds(self) -> Decimal:
        return _decimal_sum(self.jobs.get_column("gpu_seconds"))

    @property
    def gpu_seconds_inside(self) -> Decimal:
        return _decimal_sum(self.jobs.filter(pl.col("in_boundary")).get_column("gpu_seconds"))

    @property
    def share_jobs(self) -> float | None:
        return self.jobs_inside / self.job_count if self.job_count else None

    @property
    def share_gpu_seconds(self) -> float | None:
        total = self.gpu_seconds
        return float(self.gpu_seconds_inside / total) if total else None


def _decimal_sum(series: pl.Series) -> Decimal:
    total = series.sum() if series.len() else None
    return Decimal(total) if total is not None else Decimal(0)


Verdicts = Mapping[str, tuple[Verdict, Mapping[str, Any]]]


def judge_month(
    con: duckdb.DuckDBPyConnection, month: str, boundary: Policy, *, tenant: str | None = None
) -> BoundaryMonth:
    """The month's jobs (only ``tenant``'s when given) under ``boundary``, with the evidence."""
    span = month_span(month)
    judged: Verdicts = report.verdicts(con, span, boundary.countries, tenant=tenant)
    jobs = []
    outside: list[str] = []
    for job_id, (verdict, facts) in sorted(judged.items()):
        jobs.append(
            (
                job_id,
                facts["tenant"],
                facts["gpu_seconds"],
                verdict.in_boundary,
                list(facts["hosts"]),
                list(verdict.host_countries),
                list(facts["data_locations"]),
                list(verdict.data_countries),
                [f.text() for f in verdict.findings],
            )
        )
        if not verdict.in_boundary:
            outside.append(job_id)
    frame = pl.DataFrame(jobs, schema=JOBS_SCHEMA, orient="row")
    params = {"start": from_ms(span.start_ms), "end_": from_ms(span.end_ms), "jobs": outside}
    return BoundaryMonth(month, boundary.id, frame, _violations(con, params, judged, outside))


Place = tuple[str | None, str | None, datetime | None, datetime | None, Decimal | None]


def _violations(
    con: duckdb.DuckDBPyConnection, params: Mapping[str, object], verdicts: Verdicts, outside: list[str]
) -> pl.DataFrame:
    """One row per finding of each job outside the boundary, with the evidence behind it."""
    if not outside:
        return pl.DataFrame(schema=VIOLATIONS_SCHEMA)
    places: dict[str, dict[str, Place]] = {}
    for job_id, host, site, country, first, end, secs in store.run(con, "dash_job_host_windows", params).fetchall():
        places.setdefault(job_id, {})[host] = (site, country, first, end, secs)
    rows = []
    for job_id in outside:
        verdict, facts = verdicts[job_id]
        here = places.get(job_id, {})
        first_any = min((p[2] for p in here.values() if p[2] is not None), default=None)
        end_any = max((p[3] for p in here.values() if p[3] is not None), default=None)
        data_locations = list(facts["data_locations"])
        data_countries = list(verdict.data_countries)
        for f in verdict.findings:
            if f.kind.startswith("host"):
                site, country, first, end, secs = here.get(f.subject, (None, None, None, None, None))
                host, location = f.subject, None
            else:
                site, country, first, end, secs = None, f.country, first_any, end_any, facts["gpu_seconds"]
                host, location = None, f.subject
            rows.append(
                (
                    job_id,
                    facts["tenant"],
                    f.kind,
                    host,
                    site,
                    country or f.country,
                    location,
                    first,
                    end,
                    secs,
                    data_locations,
                    data_countries,
                    f.text(),
                )
            )
    return pl.DataFrame(rows, schema=VIOLATIONS_SCHEMA, orient="row")


# --------------------------------------------------------------------------- the audit log


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str
    vkey: str
    added: str
    retired: str | None
    current: bool


@dataclass(frozen=True)
class CheckpointInfo:
    id: int
    size: int
    root_hex: str
    signed_at: datetime
    note: str


@dataclass(frozen=True)
class LogStatus:
    """The latest signed checkpoint, whether the local log verifies against it, the keys."""

    origin: str
    entries: int
    checkpoint: CheckpointInfo | None
    check: LogCheck | None  # None when there is no key to check with
    keys: tuple[KeyInfo, ...]
    problem: str | None  # why the check could not run

    @property
    def verified(self) -> bool:
        return self.check is not None and self.check.passed

    @property
    def findings(self) -> tuple[str, ...]:
        """What is wrong with the stored log, apart from not having been signed yet."""
        if self.check is None:
            return ()
        if self.check.checkpoint_id is None:  # check_log's one finding for an unsigned log is that
            return self.check.findings[1:]
        return self.check.findings


def key_ring(signing_key: Path, origin: str) -> tuple[KeyInfo, ...]:
    ring = keys.load_keyring(signing_key)
    return tuple(
        KeyInfo(r.fingerprint, r.verifier(origin).vkey, r.added, r.retired, r is ring.current) for r in ring.records
    )


def log_status(con: duckdb.DuckDBPyConnection, signing_key: Path, origin: str) -> LogStatus:
    log = AuditLog(con)
    latest = log.latest_checkpoint()
    info = (
        None
        if latest is None
        else CheckpointInfo(latest.id, latest.size, latest.root.hex(), latest.signed_at, latest.note)
    )
    try:
        ring = key_ring(signing_key, origin)
    except GpumeterError as exc:
        return LogStatus(origin, log.size(), info, None, (), exc.explain())
    if not ring:
        return LogStatus(origin, log.size(), info, None, ring, f"no key ring beside {signing_key}; run `gpumeter init`")
    verifiers = keys.load_keyring(signing_key).verifiers(origin)
    result = check_log(con, verifiers, origin)
    return LogStatus(origin, result.size, info, result, ring, None)
