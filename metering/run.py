"""Orchestration of ``collect``: chunks, shards, store, report (from Prometheus, or any :class:`MetricsClient`)."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import duckdb

from gpumeter import store
from gpumeter.config import Config
from metering.collector import ChunkMeter, ChunkStats, MeterSettings, MetricsClient, merge_results
from metering.errors import TelemetryError
from metering.inventory import Inventory, load_inventory
from metering.mig import load_mig_slices
from metering.prom import PromClient, client_for
from metering.promql import shard_branches
from metering.semantics import MeterResult
from metering.usage_store import store_inventory, write_windows
from metering.windows import Span, from_ms

Progress = Callable[[int, int], None]  # (windows done, windows total)


@dataclass(frozen=True)
class ChunkFailure:
    """A chunk of windows left unwritten because one of its shards failed."""

    span: Span
    error: TelemetryError


@dataclass
class CollectReport:
    windows: int = 0
    windows_written: int = 0
    windows_unchanged: int = 0
    rows_written: int = 0
    gpu_windows: int = 0
    raw_gpu_windows: int = 0
    handover_gpu_windows: int = 0  # GPU-windows a job change inside the hour did not send to raw reads
    aggregate_queries: int = 0
    raw_queries: int = 0
    backend: str = ""
    unknown_jobs: list[str] = field(default_factory=list)
    changed_windows: list[int] = field(default_factory=list)  # windows written (new or revised), ms
    failed: list[ChunkFailure] = field(default_factory=list)  # chunks left unwritten
    stopped: bool = False  # asked to stop: the chunks not yet complete were left unwritten
    span: Span | None = None  # what was metered: the app prices the months it touches

    def unwritten(self) -> str:
        """The windows a failure left unwritten, for a message (empty when none)."""
        return ", ".join(f"{format_hour(f.span.start_ms)} to {format_hour(f.span.end_ms)}" for f in self.failed)


def settings_from(cfg: Config) -> MeterSettings:
    return MeterSettings(
        interval_ms=cfg.telemetry.scrape_interval_ms,
        job_label=cfg.telemetry.job_label,
        idle_job_ids=cfg.telemetry.idle_job_ids,
        mig_slices=load_mig_slices(cfg.billing.rates),
    )


QUERIES_AT_ONCE = 4
"""Aggregate and raw queries one worker keeps in flight (so ``workers`` shards send about 4 x workers / workers)."""


def collect(
    con: duckdb.DuckDBPyConnection | store.Writer,
    cfg: Config,
    span: Span,
    *,
    client: MetricsClient | None = None,
    inventory: Inventory | None = None,
    chunk_hours: int = 24,
    progress: Progress | None = None,
    workers: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    raise_failures: bool = True,
) -> CollectReport:
    """Meter ``span`` from Prometheus into the store; idempotent, resumable chunk by chunk.

    ``con`` is an open connection, or a :class:`gpumeter.store.Writer` that opens the store
    only for each chunk's write (so readers get in between chunks). ``client`` defaults to
    the client ``cfg.telemetry`` describes (closed on return); a given one stays open.

    Each chunk is split into ``workers`` shards of GPUs (default ``[telemetry] workers``;
    :func:`metering.promql.shard_branches`) metered in parallel, and written in one
    transaction once every shard is in, so the store never holds half a chunk. A shard
    that fails leaves its chunk unwritten; the chunks whose shards were already under way
    are still written, no new ones are started, and the run raises one
    :class:`TelemetryError` naming the windows left out (or, with ``raise_failures=False``,
    lists them in :attr:`CollectReport.failed`). ``should_stop`` is asked between steps:
    when it answers True, the chunks not yet complete are dropped and the report returned
    with ``stopped`` set.
    """
    inv = inventory or load_inventory(cfg.inventory)  # all input checked before any write
    shards = workers or cfg.telemetry.workers
    stop = should_stop or (lambda: False)
    own: PromClient | None = None
    if client is None:
        client = own = client_for(cfg.telemetry)
    try:
        report = CollectReport(backend=client.backend_name(), span=span)
        with store.session(con) as c:
            versions = store_inventory(c, inv)
        chunk_meter = ChunkMeter(client, settings_from(cfg), workers=max(1, QUERIES_AT_ONCE // shards))
        chunks = span.chunks(chunk_hours)
        tasks = [(ci, shard_branches(si, shards)) for ci in range(len(chunks)) for si in range(shards)]
        total = len(span.windows())
        done = 0
        seen: set[str] = set()
        parts: dict[int, list[tuple[MeterResult, ChunkStats]]] = defaultdict(list)
        failed: dict[int, TelemetryError] = {}
        # Each shard of a chunk is metered in the pool (aggregates, then raw samples where
        # they must), one more at a time than there are shards so that the next chunk's
        # queries run while a chunk's last raw reads finish; this thread merges and writes.
        # At most two chunks' shards are under way beyond the one being written.
        pool = ThreadPoolExecutor(max_workers=shards + 1)
        pending: deque[tuple[int, Future[Metered]]] = deque()
        submitted = 0

        def submit_upto(n: int) -> None:
            nonlocal submitted
            while submitted < min(n, len(tasks)) and not failed:
                ci, branches = tasks[submitted]
                pending.append((ci, pool.submit(chunk_meter.run, chunks[ci], branches)))
                submitted += 1

        try:
            submit_upto(2 * shards)
            while pending:
                ci, future = pending.popleft()
                metered = _wait(future, stop)
                if metered is None:
                    report.stopped = True
                    break
                submit_upto(submitted + 1)
                if ci in failed:
                    continue
                if isinstance(metered, TelemetryError):
                    failed[ci] = metered
                    parts.pop(ci, None)
                    continue
                parts[ci].append(metered)
                if len(parts[ci]) < shards:
                    continue
                if stop():
                    report.stopped = True
                    break
                result = merge_results([r for r, _ in parts[ci]])
                with store.session(con) as c:
                    w = write_windows(
                        c,
                        result,
                        chunks[ci].windows(),
                        interval_ms=cfg.telemetry.scrape_interval_ms,
                        backend=report.backend,
                        nodes_version=versions.get("nodes"),
                    )
                for _, stats in parts.pop(ci):
                    _add(report, stats, 0, 0, 0)
                    seen |= stats.jobs_seen
                _add(report, ChunkStats(), w.windows_written, w.windows_unchanged, w.rows_written)
                report.changed_windows += w.changed
                done += len(chunks[ci].windows())
                if progress:
                    progress(done, total)
        finally:
            pool.shutdown(wait=not report.stopped, cancel_futures=True)
        report.windows = total
        report.unknown_jobs = sorted(j for j in seen if j not in inv.jobs)
        report.failed = [ChunkFailure(chunks[ci], err) for ci, err in sorted(failed.items())]
        if report.failed and raise_failures:
            first = report.failed[0].error
            message = f"{first.message}; windows not written: {report.unwritten()}"
            raise TelemetryError(message, kind=first.kind) from first
        return report
    finally:
        if own is not None:
            own.close()


Metered = tuple[MeterResult, ChunkStats]


def _wait(future: Future[Metered], stop: Callable[[], bool]) -> Metered | TelemetryError | None:
    """The future's result (a TelemetryError returned, not raised); None once ``stop()`` says so."""
    while True:
        try:
            return future.result(timeout=0.2)
        except TimeoutError:
            if stop():
                return None
        except TelemetryError as exc:
            return exc


def format_hour(ms: int) -> str:
    return from_ms(ms).strftime("%Y-%m-%dT%H:%MZ")


def _add(report: CollectReport, stats: ChunkStats, written: int, unchanged: int, rows: int) -> None:
    report.windows_written += written
    report.windows_unchanged += unchanged
    report.rows_written += rows
    report.gpu_windows += stats.gpu_windows
    report.raw_gpu_windows += stats.raw_gpu_windows
    report.handover_gpu_windows += stats.handover_gpu_windows
    report.aggregate_queries += stats.aggregate_queries
    report.raw_queries += stats.raw_queries


def gpu_hours(ns: int) -> Decimal:
    return Decimal(ns) / Decimal(3_600_000_000_000)
