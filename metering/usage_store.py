"""Writing metered windows and inventory snapshots into the store (the DuckDB edge).

A chunk of windows is written in one transaction: its old rows are deleted, the new ones
inserted from polars frames (over Arrow) and each window's digest recorded. A window whose
digest is unchanged is not rewritten at all, so re-running a range changes nothing, and a
run killed mid-chunk leaves the store as the last committed chunk left it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime

import duckdb
import polars as pl

from gpumeter import store
from metering.inventory import Inventory, Tenant
from metering.semantics import COVERAGE_SCHEMA, GAPS_SCHEMA, USAGE_SCHEMA, MeterResult
from metering.windows import HOUR_MS, from_ms


def _canonical_lines(frame: pl.DataFrame, tag: str, order: list[str]) -> pl.DataFrame:
    """(window_ms, line) with one canonical text line per row: fields joined by 0x1f, null as 0x00."""
    cols = [c for c in frame.columns if c != "window_ms"]
    exprs = []
    for c in cols:
        e = pl.col(c)
        if isinstance(frame.schema[c], pl.List):
            e = e.list.join(";")
        exprs.append(e.cast(pl.String).fill_null("\x00"))
    return frame.sort(order).select("window_ms", pl.concat_str([pl.lit(tag), *exprs], separator="\x1f").alias("line"))


def window_digests(result: MeterResult, windows: Iterable[int]) -> dict[int, tuple[str, int]]:
    """sha256 over each window's usage, coverage and gap rows, in a canonical text form."""
    lines = pl.concat(
        [
            _canonical_lines(result.usage, "u", ["window_ms", "job_id", "uuid", "gpu_i_id"]),
            _canonical_lines(result.coverage, "c", ["window_ms", "uuid"]),
            _canonical_lines(result.gaps, "g", ["window_ms", "uuid", "gap_start_ms"]),
        ]
    )
    texts = dict(lines.group_by("window_ms", maintain_order=True).agg(pl.col("line").str.join("\n")).iter_rows())
    counts = dict(result.usage.group_by("window_ms").len().iter_rows())
    out: dict[int, tuple[str, int]] = {}
    for w in windows:
        h = hashlib.sha256(f"gpumeter-window-v1\x1f{w}\n".encode())
        body = texts.get(w)
        if body:
            h.update(body.encode("utf-8") + b"\n")
        out[w] = (h.hexdigest(), int(counts.get(w, 0)))
    return out


@dataclass(frozen=True)
class WriteReport:
    windows_written: int
    windows_unchanged: int
    rows_written: int
    changed: tuple[int, ...] = ()  # the windows written (new, or with a different digest), in ms


def write_windows(
    con: duckdb.DuckDBPyConnection,
    result: MeterResult,
    windows: list[int],
    *,
    interval_ms: int,
    backend: str,
    nodes_version: int | None,
    now: datetime | None = None,
) -> WriteReport:
    """Replace the given windows with ``result`` in one transaction; skip unchanged ones."""
    digests = window_digests(result, windows)
    if not windows:
        return WriteReport(0, 0, 0)
    lo, hi = min(windows), max(windows) + HOUR_MS
    stored = {
        int(w): d for w, d in store.run(con, "windows_digests", {"start": from_ms(lo), "end_": from_ms(hi)}).fetchall()
    }
    changed = sorted(w for w in windows if stored.get(w) != digests[w][0])
    if not changed:
        return WriteReport(0, len(windows), 0)
    keep = pl.col("window_ms").is_in(changed)
    staged_usage = result.usage.filter(keep).select(list(USAGE_SCHEMA))
    staged_coverage = result.coverage.filter(keep).select(list(COVERAGE_SCHEMA))
    staged_gaps = result.gaps.filter(keep).select(list(GAPS_SCHEMA))
    collected_at = now or datetime.now(UTC)
    with store.transaction(con):
        for run_start, run_end in _runs(changed):
            store.run(con, "usage_delete_windows", {"start": from_ms(run_start), "end_": from_ms(run_end)})
        con.register("staged_usage", staged_usage)
        con.register("staged_coverage", staged_coverage)
        con.register("staged_gaps", staged_gaps)
        try:
            store.run(con, "usage_insert_staged")
        finally:
            for name in ("staged_usage", "staged_coverage", "staged_gaps"):
                con.unregister(name)
        staged_windows = pl.DataFrame(
            [(w, digests[w][1], digests[w][0]) for w in changed],
            schema={"window_ms": pl.Int64, "rows": pl.Int64, "digest": pl.String},
            orient="row",
        )
        con.register("staged_windows", staged_windows)
        try:
            store.run(
                con,
                "windows_upsert",
                {
                    "interval_ms": interval_ms,
                    "nodes_version": nodes_version,
                    "backend": backend,
                    "collected_at": collected_at,
                },
            )
        finally:
            con.unregister("staged_windows")
    return WriteReport(len(changed), len(windows) - len(changed), staged_usage.height, tuple(changed))


def stored_windows(con: duckdb.DuckDBPyConnection, start_ms: int, end_ms: int) -> list[int]:
    """Start (Unix ms) of every collected window in [start_ms, end_ms), oldest first."""
    rows = store.run(con, "windows_stored", {"start": from_ms(start_ms), "end_": from_ms(end_ms)}).fetchall()
    return [int(w) for (w,) in rows]


def window_bounds(con: duckdb.DuckDBPyConnection) -> tuple[int | None, int | None]:
    """The oldest and newest collected window (Unix ms), or (None, None) in an empty store."""
    row = store.run(con, "windows_bounds").fetchone()
    if row is None or row[0] is None:
        return None, None
    return int(row[0]), int(row[1])


def _runs(windows: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of hour windows as [start, end) pairs."""
    runs: list[tuple[int, int]] = []
    for w in windows:
        if runs and runs[-1][1] == w:
            runs[-1] = (runs[-1][0], w + HOUR_MS)
        else:
            runs.append((w, w + HOUR_MS))
    return runs


def store_inventory(con: duckdb.DuckDBPyConnection, inv: Inventory, *, now: datetime | None = None) -> dict[str, int]:
    """Record each inventory file's version (new version only when its bytes changed).

    nodes and storage rows are kept per version (the audit judges a window by the version
    in force); jobs and tenants tables hold the current files. One transaction.
    """
    loaded_at = now or datetime.now(UTC)
    versions: dict[str, int] = {}
    with store.transaction(con):
        for src in inv.sources:
            row = store.run(con, "inventory_latest_version", {"kind": src.kind}).fetchone()
            if row and row[1] == src.sha256:
                versions[src.kind] = int(row[0])
                continue
            version = int(row[0]) + 1 if row else 1
            store.run(
                con,
                "inventory_insert_version",
                {
                    "kind": src.kind,
                    "version": version,
                    "sha256": src.sha256,
                    "loaded_at": loaded_at,
                    "content": src.content,
                },
            )
            versions[src.kind] = version
            if src.kind == "nodes":
                nodes = pl.DataFrame(
                    [(version, n.hostname, n.site, n.country, n.provider) for n in inv.nodes.values()],
                    schema=["version", "hostname", "site", "country", "provider"],
                    orient="row",
                )
                con.register("staged_nodes", nodes)
                store.run(con, "inventory_insert_nodes")
                con.unregister("staged_nodes")
            elif src.kind == "storage":
                locs = pl.DataFrame(
                    [(version, s.location, s.country) for s in inv.storage],
                    schema=["version", "location", "country"],
                    orient="row",
                )
                con.register("staged_storage", locs)
                store.run(con, "inventory_insert_storage")
                con.unregister("staged_storage")
        jobs = pl.DataFrame(
            {
                "job_id": [j.job_id for j in inv.jobs.values()],
                "tenant": [j.tenant for j in inv.jobs.values()],
                "project": [j.project for j in inv.jobs.values()],
                "data_locations": [list(j.data_locations) for j in inv.jobs.values()],
                "job_class": [j.job_class for j in inv.jobs.values()],
            },
            schema={
                "job_id": pl.String,
                "tenant": pl.String,
                "project": pl.String,
                "data_locations": pl.List(pl.String),
                "job_class": pl.String,
            },
        )
        tenants = pl.DataFrame(
            [astuple(t) for t in inv.tenants.values()],
            schema={f.name: pl.String for f in fields(Tenant)},  # every field a string (or NULL)
            orient="row",
        )
        con.register("staged_jobs", jobs)
        con.register("staged_tenants", tenants)
        store.run(con, "inventory_replace_jobs_tenants")
        con.unregister("staged_jobs")
        con.unregister("staged_tenants")
    return versions
