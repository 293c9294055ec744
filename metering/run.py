"""Orchestration of ``collect``: chunks, store, report (from Prometheus, or any :class:`MetricsClient`)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import duckdb

from gpumeter import store
from gpumeter.config import Config
from metering.collector import ChunkMeter, ChunkStats, MeterSettings, MetricsClient
from metering.inventory import Inventory, load_inventory
from metering.mig import load_mig_slices
from metering.prom import PromClient
from metering.usage_store import store_inventory, write_windows
from metering.windows import Span

Progress = Callable[[int, int], None]  # (windows done, windows total)


@dataclass
class CollectReport:
    windows: int = 0
    windows_written: int = 0
    windows_unchanged: int = 0
    rows_written: int = 0
    gpu_windows: int = 0
    raw_gpu_windows: int = 0
    aggregate_queries: int = 0
    raw_queries: int = 0
    backend: str = ""
    unknown_jobs: list[str] = field(default_factory=list)
    span: Span | None = None  # what was metered: the app prices the months it touches


def settings_from(cfg: Config) -> MeterSettings:
    return MeterSettings(
        interval_ms=cfg.telemetry.scrape_interval_ms,
        job_label=cfg.telemetry.job_label,
        idle_job_ids=cfg.telemetry.idle_job_ids,
        mig_slices=load_mig_slices(cfg.billing.rates),
    )


def collect(
    con: duckdb.DuckDBPyConnection | store.Writer,
    cfg: Config,
    span: Span,
    *,
    client: MetricsClient | None = None,
    inventory: Inventory | None = None,
    chunk_hours: int = 24,
    progress: Progress | None = None,
) -> CollectReport:
    """Meter ``span`` from Prometheus into the store; idempotent, resumable chunk by chunk.

    ``con`` is an open connection, or a :class:`gpumeter.store.Writer` that opens the store
    only for each chunk's write (so readers get in between chunks). ``client`` defaults to a
    :class:`PromClient` for ``cfg.telemetry`` (closed on return); a given one stays open.
    """
    inv = inventory or load_inventory(cfg.inventory)  # all input checked before any write
    own: PromClient | None = None
    if client is None:
        t = cfg.telemetry
        client = own = PromClient(t.prometheus_url, timeout_s=t.timeout_s, retries=t.retries)
    try:
        report = CollectReport(backend=client.backend_name(), span=span)
        with store.session(con) as c:
            versions = store_inventory(c, inv)
        chunk_meter = ChunkMeter(client, settings_from(cfg))
        total = len(span.windows())
        done = 0
        seen: set[str] = set()
        chunks = span.chunks(chunk_hours)
        # The next chunk's aggregate queries run while this chunk's raw samples are read
        # and its rows written: Prometheus and the client work at the same time.
        ahead = ThreadPoolExecutor(max_workers=1)
        try:
            pending = ahead.submit(chunk_meter.aggregates, chunks[0])
            for i, chunk in enumerate(chunks):
                aggregates = pending.result()
                if i + 1 < len(chunks):
                    pending = ahead.submit(chunk_meter.aggregates, chunks[i + 1])
                result, stats = chunk_meter.finish(chunk, aggregates)
                with store.session(con) as c:
                    w = write_windows(
                        c,
                        result,
                        chunk.windows(),
                        interval_ms=cfg.telemetry.scrape_interval_ms,
                        backend=report.backend,
                        nodes_version=versions.get("nodes"),
                    )
                _add(report, stats, w.windows_written, w.windows_unchanged, w.rows_written)
                seen |= stats.jobs_seen
                done += len(chunk.windows())
                if progress:
                    progress(done, total)
        finally:
            ahead.shutdown(wait=True, cancel_futures=True)
        report.windows = total
        report.unknown_jobs = sorted(j for j in seen if j not in inv.jobs)
        return report
    finally:
        if own is not None:
            own.close()


def _add(report: CollectReport, stats: ChunkStats, written: int, unchanged: int, rows: int) -> None:
    report.windows_written += written
    report.windows_unchanged += unchanged
    report.rows_written += rows
    report.gpu_windows += stats.gpu_windows
    report.raw_gpu_windows += stats.raw_gpu_windows
    report.aggregate_queries += stats.aggregate_queries
    report.raw_queries += stats.raw_queries


def gpu_hours(ns: int) -> Decimal:
    return Decimal(ns) / Decimal(3_600_000_000_000)
