"""``gpumeter serve``: meter a fleet around the clock, one process per store.

Each cycle asks :mod:`metering.schedule` which hour windows are due (closed plus the settle
delay, catch-up after downtime, holes, the late re-check), meters them with the sharded
:func:`metering.run.collect`, runs the same after-collect hook as ``collect``
(:func:`app.reactions.after_metering`: the audit log records new windows and revisions,
budget alerts are decided and delivered), and publishes a checkpoint (signed, time-stamped,
witnessed: :func:`audit.seal.sign_and_seal`, as ``gpumeter audit checkpoint`` does) when
``[audit] checkpoint_every`` has passed. Then it sleeps until the next hour is due.

systemd-friendly: logs go to stderr; SIGTERM (or Ctrl-C) finishes the chunk being written,
drops the ones under way, and exits 0; SIGHUP reloads the inventory files (a bad file is
reported and the previous inventory kept). A backend that fails is retried with
exponential backoff (up to a minute), ``/readyz`` reports not-ready meanwhile, and the
next cycle catches up exactly. A second ``serve`` on the same store refuses to start and
names the first one's PID (a lock file beside the database). ``--start`` is where an empty
store begins (otherwise serve continues after the newest stored hour); with ``--until`` the
process exits 0 once every hour ending by then is in the store (backfills, tests).

The horizon is taken from the earlier of this machine's clock and the backend's, so a
clock that jumps ahead never meters hours the backend has not seen yet.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
from prometheus_client import CollectorRegistry

from app.serve_http import ServeMetrics, serving
from audit import keys
from audit.log import AuditLog
from audit.note import Signer
from audit.seal import sign_and_seal
from gpumeter import store
from gpumeter.commandline import ConfigOpt, get_config
from gpumeter.config import Config, parse_duration_ms
from gpumeter.errors import GpumeterError, StoreError
from metering import schedule
from metering.commands import AfterCollect, WorkersOpt
from metering.errors import TelemetryError
from metering.inventory import Inventory, load_inventory
from metering.prom import PromClient, client_for
from metering.run import CollectReport, collect, format_hour
from metering.usage_store import stored_windows, window_bounds
from metering.windows import Span, parse_instant, to_ms

log = logging.getLogger("gpumeter.serve")

MAX_BACKOFF_S = 60.0
PROBE_EVERY_S = 30.0  # while idle, how often the backend is asked (for /readyz)
CLOCK_SKEW_WARN_MS = 120_000
DEFAULT_METRICS_PORT = 9835


@dataclass(frozen=True)
class Options:
    start_ms: int | None = None
    until_ms: int | None = None
    workers: int = 1
    chunk_hours: int = 24


# ------------------------------------------------------------------ one instance per store


@contextmanager
def instance_lock(database: Path) -> Iterator[Path]:
    """Hold ``<database>.serve.lock`` (flock, our PID inside) for the block; refuse if another holds it."""
    path = database.with_name(database.name + ".serve.lock")
    path.parent.mkdir(mode=store.PRIVATE_DIR, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, store.PRIVATE_FILE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise StoreError(
                f"another gpumeter serve (PID {holder}) is metering into {database}; "
                f"one serve per store (lock file {path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock; a SIGKILLed holder's lock is released by the kernel


# ------------------------------------------------------------------ the loop


class Service:
    """The serve loop over one store; the clock and the wait are parameters (tests pass their own)."""

    def __init__(
        self,
        cfg: Config,
        inventory: Inventory,
        client: PromClient,
        metrics: ServeMetrics,
        *,
        options: Options,
        after_collect: AfterCollect | None = None,
        checkpoint: Callable[[duckdb.DuckDBPyConnection, datetime], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.inventory = inventory
        self.client = client
        self.metrics = metrics
        self.options = options
        self.after_collect = after_collect
        self.checkpoint = checkpoint
        self.clock = clock
        self.writer = store.Writer(cfg.store.database)
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.reload_requested = False
        self.origin_ms: int | None = None
        self.cycles = 0

    # -- signals ------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def request_reload(self) -> None:
        self.reload_requested = True
        self.wake.set()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, woken early by a signal; probes the backend every 30 s meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set() and not self.reload_requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.wake.wait(min(left, PROBE_EVERY_S)):
                self.wake.clear()
                continue
            if time.monotonic() < deadline:
                self._probe()

    # -- one cycle ----------------------------------------------------------------------

    def _now_ms(self) -> int:
        return round(self.clock() * 1000)

    def _probe(self) -> int | None:
        """The backend's clock, or None (recorded for /readyz) when it does not answer."""
        try:
            at = self.client.server_time_ms()
        except TelemetryError as exc:
            self._backend_failed(exc)
            return None
        self.metrics.health.backend_ok = True
        return at

    def _backend_failed(self, exc: TelemetryError) -> None:
        self.metrics.backend_errors.labels(kind=exc.kind).inc()
        self.metrics.health.backend_ok = False
        self.metrics.health.backend_problem = exc.message

    def _due(self, horizon_ms: int) -> schedule.Due:
        lookback = horizon_ms - self.cfg.telemetry.late_window_ms
        with self.writer.open() as con:
            oldest, newest = window_bounds(con)
            if self.origin_ms is None:  # fixed for the life of the process: holes since are retried
                self.origin_ms = schedule.origin(self.options.start_ms, newest, horizon_ms)
            have = stored_windows(con, min(self.origin_ms, lookback), horizon_ms)
        return schedule.due(
            horizon_ms=horizon_ms,
            origin_ms=self.origin_ms,
            late_window_ms=self.cfg.telemetry.late_window_ms,
            stored=have,
            oldest_stored_ms=oldest,
        )

    def cycle(self) -> tuple[schedule.Due, CollectReport]:
        """Meter what is due now; returns what was due and what happened (failures included)."""
        now_ms = self._now_ms()
        backend_ms = self.client.server_time_ms()  # a backend that is down fails the cycle here
        self.metrics.health.backend_ok = True
        if abs(backend_ms - now_ms) > CLOCK_SKEW_WARN_MS:
            log.warning(
                "this machine's clock and the backend's differ by %.0f s; metering up to the earlier one",
                (now_ms - backend_ms) / 1000,
            )
        horizon = schedule.horizon(min(now_ms, backend_ms), self.cfg.telemetry.settle_ms, self.options.until_ms)
        due = self._due(horizon)
        runs = due.runs()
        # the reactions price the months these hours touch, as after a collect of the same span
        report = CollectReport(span=Span(runs[0][0], runs[-1][1]) if runs else None)
        for start, end in runs:
            if self.stopping.is_set():
                report.stopped = True
                break
            part = collect(
                self.writer,
                self.cfg,
                Span(start, end),
                client=self.client,
                inventory=self.inventory,
                chunk_hours=self.options.chunk_hours,
                workers=self.options.workers,
                should_stop=self.stopping.is_set,
                raise_failures=False,
            )
            _merge(report, part)
            if part.stopped:
                break
        if due.windows and self.after_collect is not None:
            with self.writer.open() as con:
                self.after_collect(con, self.cfg, report)
        self._account(due, report)
        return due, report

    def _account(self, due: schedule.Due, report: CollectReport) -> None:
        changed = set(report.changed_windows)
        first = changed & set(due.missing)
        revised = sorted(changed & set(due.recheck))
        self.metrics.windows_metered.inc(len(first))
        self.metrics.late_revisions.inc(len(revised))
        for w in revised:
            log.info("window %s metered again: its samples changed (revision in the audit log)", format_hour(w))
        for failure in report.failed:
            self._backend_failed(failure.error)
            log.error("windows %s to %s not written: %s", *_hours(failure.span), failure.error.message)
        after = self._due(due.horizon_ms)  # where metering stands now
        self.metrics.health.frontier_s = after.frontier_ms / 1000
        if due.windows:
            log.info(
                "cycle up to %s: %d windows metered, %d re-checked (%d revised), %d not written",
                format_hour(due.horizon_ms),
                len(first),
                len(due.recheck),
                len(revised),
                sum(len(f.span.windows()) for f in report.failed),
            )

    def _reload(self) -> None:
        self.reload_requested = False
        try:
            self.inventory = load_inventory(self.cfg.inventory)
        except GpumeterError as exc:
            log.error("inventory not reloaded, keeping the previous one: %s", exc.explain())
            return
        log.info("inventory reloaded (stored as a new version at the next cycle if it changed)")

    def _sign_checkpoint(self) -> None:
        if self.checkpoint is None:
            return
        moment = datetime.fromtimestamp(self.clock(), UTC)
        try:
            with self.writer.open() as con:
                if self.checkpoint(con, moment):
                    log.info("signed a checkpoint of the audit log")
        except GpumeterError as exc:  # metering goes on; the next cycle tries again
            log.error("checkpoint not signed: %s", exc.explain())

    def done(self) -> bool:
        """True once every window before ``--until`` is stored (never without ``--until``)."""
        until = self.options.until_ms
        return until is not None and (self.metrics.health.frontier_s or 0) * 1000 >= until

    def run(self) -> None:
        """Cycle until stopped (or, with ``--until``, done)."""
        backoff = 0.0
        while not self.stopping.is_set():
            if self.reload_requested:
                self._reload()
            failed = True
            try:
                _, report = self.cycle()
                failed = bool(report.failed)
                if report.stopped:
                    break
                if not failed:
                    self.metrics.last_success.set(self.clock())
                    self._sign_checkpoint()
            except TelemetryError as exc:
                self._backend_failed(exc)
                log.error("backend: %s", exc.message)
            except StoreError as exc:
                log.error("store: %s", exc.explain())
            self.cycles += 1
            if not failed and self.done():
                log.info("every window before %s is in the store; stopping", format_hour(self.options.until_ms or 0))
                break
            if failed:
                backoff = min(max(1.0, 2 * backoff), MAX_BACKOFF_S)
                log.info("trying again in %.0f s", backoff)
                self.wait(backoff)
            else:
                backoff = 0.0
                now_ms = self._now_ms()
                self.wait(max(0.0, (schedule.next_due(now_ms, self.cfg.telemetry.settle_ms) - now_ms) / 1000))


def _merge(into: CollectReport, part: CollectReport) -> None:
    for name in (
        "windows",
        "windows_written",
        "windows_unchanged",
        "rows_written",
        "gpu_windows",
        "raw_gpu_windows",
        "handover_gpu_windows",
    ):
        setattr(into, name, getattr(into, name) + getattr(part, name))
    into.aggregate_queries += part.aggregate_queries
    into.raw_queries += part.raw_queries
    into.backend = part.backend
    into.unknown_jobs = sorted({*into.unknown_jobs, *part.unknown_jobs})
    into.changed_windows += part.changed_windows
    into.failed += part.failed
    into.stopped = into.stopped or part.stopped


def _hours(span: Span) -> tuple[str, str]:
    return format_hour(span.start_ms), format_hour(span.end_ms)


# ------------------------------------------------------------------ checkpoints


def checkpoint_signer(cfg: Config, signer: Signer) -> Callable[[duckdb.DuckDBPyConnection, datetime], bool]:
    """Publish a checkpoint (signed, time-stamped, witnessed: :func:`audit.seal.sign_and_seal`,
    as ``gpumeter audit checkpoint`` does) when ``[audit] checkpoint_every`` has passed since the last one."""
    every_ms = cfg.audit.checkpoint_every_ms or 0

    def sign(con: duckdb.DuckDBPyConnection, now: datetime) -> bool:
        latest = AuditLog(con).latest_checkpoint()
        if latest is not None and (now - latest.signed_at).total_seconds() * 1000 < every_ms:
            return False
        sealed = sign_and_seal(con, cfg, signer, at=now)
        for warning in sealed.warnings:
            log.warning("%s", warning)
        if sealed.problems:
            log.warning("%s", sealed.shortfall())
        return True

    return sign


# ------------------------------------------------------------------ the command


def _instant_ms(text: str | None) -> int | None:
    """An instant in Unix ms; the schedule works in the whole hours around it."""
    return None if text is None else to_ms(parse_instant(text))


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def build(*, after_collect: AfterCollect | None) -> typer.Typer:
    """The ``serve`` command; ``after_collect`` is the app's hook, the same as ``collect``'s."""
    commands = typer.Typer(add_completion=False)

    @commands.command()
    def serve(
        start: Annotated[
            str | None,
            typer.Option("--start", help="In an empty store, meter from the hour of this instant (ISO 8601 UTC)."),
        ] = None,
        until: Annotated[
            str | None,
            typer.Option("--until", help="Exit once every hour ending by this instant is metered (ISO 8601 UTC)."),
        ] = None,
        workers: WorkersOpt = None,
        chunk_hours: Annotated[
            int, typer.Option("--chunk-hours", min=1, max=24 * 31, help="Hours metered and committed together.")
        ] = 24,
        metrics_port: Annotated[
            int, typer.Option("--metrics-port", min=0, max=65535, help="Port of /metrics, /healthz, /readyz (0: off).")
        ] = DEFAULT_METRICS_PORT,
        metrics_host: Annotated[str, typer.Option("--metrics-host", help="Address to serve them on.")] = "127.0.0.1",
        ready_max_lag: Annotated[
            str, typer.Option("--ready-max-lag", help="/readyz fails above this metering lag (e.g. 2h).")
        ] = "2h",
        config: ConfigOpt = None,
    ) -> None:
        """Meter every hour as it closes, catch up after downtime, re-check late samples."""
        cfg = get_config(config)
        options = Options(
            start_ms=_instant_ms(start),
            until_ms=schedule.floor_hour(u) if (u := _instant_ms(until)) is not None else None,
            workers=workers or cfg.telemetry.workers,
            chunk_hours=chunk_hours,
        )
        max_lag_s = parse_duration_ms(ready_max_lag, key="--ready-max-lag") / 1000
        inventory = load_inventory(cfg.inventory)  # bad input stops here, before any write
        with store.opened(cfg, "write"):  # checks the schema; released before the long work
            pass
        _log_to_stderr()
        with instance_lock(cfg.store.database), client_for(cfg.telemetry, os.environ) as client:
            checkpoint = None
            if cfg.audit.checkpoint_every_ms:
                signer = keys.load_signer(
                    cfg.audit.signing_key, os.environ.get(keys.PASSPHRASE_ENV) or None, cfg.audit.origin
                )
                checkpoint = checkpoint_signer(cfg, signer)
            metrics = ServeMetrics(CollectorRegistry(), time.time, max_lag_s)
            service = Service(
                cfg,
                inventory,
                client,
                metrics,
                options=options,
                after_collect=after_collect,
                checkpoint=checkpoint,
            )
            handlers = _install_signals(service)
            try:
                with serving(metrics, metrics_host, metrics_port) as url:
                    log.info(
                        "serving %s with %d worker(s)%s", cfg.store.database, options.workers, f"; {url}" if url else ""
                    )
                    service.run()
            finally:
                for sig, old in handlers.items():
                    signal.signal(sig, old)
            stopped = service.stopping.is_set()
        log.info("stopped" if stopped else "done")
        if stopped:
            # Queries already sent for chunks that were dropped may still be running in
            # worker threads; their answers are not wanted, so do not wait for them.
            sys.stderr.flush()
            os._exit(0)

    return commands


def _install_signals(service: Service) -> dict[int, Any]:
    def on_stop(signum: int, frame: object) -> None:
        log.info("%s: finishing the chunk being written, then exiting", signal.Signals(signum).name)
        service.request_stop()

    def on_hup(signum: int, frame: object) -> None:
        log.info("SIGHUP: reloading the inventory")
        service.request_reload()

    old: dict[int, Any] = {}
    for sig, fn in ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop), (signal.SIGHUP, on_hup)):
        old[sig] = signal.signal(sig, fn)
    return old
