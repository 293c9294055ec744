"""The serve loop against a clock a test moves: samples three hours late, a clock jumping.

This machine's clock cannot be moved here, so these tests run :class:`app.serve.Service`
in process with a fake clock (the one seam, :class:`FakeClock`); everything else is real:
the store, VictoriaMetrics, the sharded collect and the audit hook.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from app.serve import Options, Service
from app.serve_http import ServeMetrics
from audit import record
from gpumeter import store
from gpumeter.config import Config, load_config
from metering.inventory import load_inventory
from metering.prom import client_for
from metering.run import CollectReport, collect
from metering.samples import ENERGY, UTIL, Series
from metering.windows import Span
from testing import servers
from testing.stores import new_store
from tests.scenarios import gpu_labels
from tests.sites import make_site

pytestmark = pytest.mark.victoria

H = 3_600_000
S = 15_000
MIN = 60_000
T0 = int(datetime(2026, 8, 3, tzinfo=UTC).timestamp() * 1000)  # a range no other test uses


class FakeClock:
    """A stand-in for this machine's clock (Unix seconds) that the test sets."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def gpu(uuid: str, job: str, start_ms: int, end_ms: int) -> list[Series]:
    ts = np.arange(start_ms, end_ms, S, dtype=np.int64) + 2_000
    lab = {**gpu_labels(uuid), "hpc_job": job}
    return [
        Series({"__name__": UTIL, **lab}, ts, np.full(len(ts), 80.0)),
        Series({"__name__": ENERGY, **lab}, ts, 5e8 + (ts - T0) * 0.4),
    ]


def log_collect(con: duckdb.DuckDBPyConnection, cfg: Config, report: CollectReport) -> None:
    record.after_collect(con, cfg)  # what app.wiring hands serve and collect


def service(site: Path, url: str, clock: FakeClock, start_ms: int, workers: int = 2) -> Service:
    cfg = load_config(make_site(site, url))
    new_store(cfg.store.database).close()
    return Service(
        cfg,
        load_inventory(cfg.inventory),
        client_for(cfg.telemetry, {}),
        ServeMetrics(CollectorRegistry(), clock, max_lag_s=2 * 3600),
        options=Options(start_ms=start_ms, workers=workers),
        after_collect=log_collect,
        clock=clock,
    )


def stored(cfg: Config) -> list[tuple[object, ...]]:
    con = store.connect(cfg.store.database, read_only=True)
    try:
        return con.execute("SELECT window_start, rows, digest FROM collected_windows ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_samples_three_hours_late_and_a_clock_jumping_back_and_forth(victoria_url: str, tmp_path: Path) -> None:
    uuid = "GPU-c10c0000-0000-0000-0000-00000000000b"
    late = (T0 + 2 * H + 30 * MIN, T0 + 3 * H)  # the second half of 02:00-03:00
    servers.load_victoria(victoria_url, gpu(uuid, "job-month", T0 - H, late[0]))
    servers.load_victoria(victoria_url, gpu(uuid, "job-month", late[1], T0 + 7 * H))
    clock = FakeClock(T0 + 3 * H + 15 * MIN)
    svc = service(tmp_path / "site", victoria_url, clock, start_ms=T0)
    m = svc.metrics

    due, rep = svc.cycle()  # 03:15: hours 0-2 are due
    assert [(w - T0) // H for w in due.missing] == [0, 1, 2] and not rep.failed
    first = {w: d for w, _, d in stored(svc.cfg)}

    clock.ms = T0 + 5 * H + 15 * MIN  # 05:15: the rest of hour 2 arrives, three hours late
    servers.load_victoria(victoria_url, gpu(uuid, "job-month", *late))
    due, rep = svc.cycle()
    assert [(w - T0) // H for w in due.missing] == [3, 4] and [(w - T0) // H for w in due.recheck] == [0, 1, 2]
    assert (
        m.registry.get_sample_value("gpumeter_late_revisions_total") == 1
        and m.registry.get_sample_value("gpumeter_windows_metered_total") == 5
    )
    second = {w: d for w, _, d in stored(svc.cfg)}
    assert [w for w in first if first[w] != second[w]] == [datetime(2026, 8, 3, 2, tzinfo=UTC)]
    assert m.lag_s() == 15 * 60  # 05:15 - end of 04:00-05:00

    clock.ms = T0 + 1 * H + 30 * MIN  # the clock jumps back four hours: nothing breaks, nothing is lost
    due, rep = svc.cycle()
    assert due.missing == () and [(w - T0) // H for w in due.recheck] == [0]
    assert not rep.changed_windows and m.lag_s() >= 0
    assert {w: d for w, _, d in stored(svc.cfg)} == second

    clock.ms = T0 + 7 * H + 15 * MIN  # and forward past where it was
    due, _ = svc.cycle()
    assert [(w - T0) // H for w in due.missing] == [5, 6]
    assert (
        m.registry.get_sample_value("gpumeter_late_revisions_total") == 1
        and m.registry.get_sample_value("gpumeter_windows_metered_total") == 7
    )

    # the same as one collect of the seven hours once every sample is in
    cfg = load_config(make_site(tmp_path / "fresh", victoria_url))
    con = new_store(cfg.store.database)
    collect(con, cfg, Span(T0, T0 + 7 * H))
    con.close()
    assert stored(svc.cfg) == stored(cfg)


def test_a_clock_ahead_of_the_backend_never_meters_hours_the_backend_has_not_seen(
    victoria_url: str, tmp_path: Path
) -> None:
    real = int(time.time() * 1000)
    hour = real - real % H
    clock = FakeClock(real + 2 * 24 * H)  # this machine thinks it is two days later
    svc = service(tmp_path / "site", victoria_url, clock, start_ms=hour - 3 * H)
    due, _ = svc.cycle()
    newest_allowed = real - svc.cfg.telemetry.settle_ms  # by the backend's clock
    assert due.horizon_ms <= newest_allowed and due.missing
    assert all(w.timestamp() * 1000 + H <= newest_allowed for w, _, _ in stored(svc.cfg))
