"""Properties: the PromQL path equals the plain reference over the raw samples, and
sharded collection (``workers`` > 1) gives exactly what one worker gives.

Each hypothesis example is a small random fleet (several scrape loops per GPU, outages,
jobs starting and ending anywhere, shared GPUs, MIG, NaN, counter resets, a renamed host
label) imported live into a real VictoriaMetrics in a time range of its own; gpumeter
collects it through PromQL and must find exactly what the reference finds in the same
samples (VictoriaMetrics drops NaN samples at ingestion, so the reference does too).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpumeter import store
from gpumeter.config import load_config
from metering.run import collect
from metering.samples import Series
from metering.windows import Span
from testing import servers
from tests.fleetgen import fleets
from tests.oracle import assert_same, from_frame, reference, without_nan
from tests.sites import make_site

pytestmark = pytest.mark.victoria

HOUR = 3_600_000
BASE = 1_700_000_000_000 - 1_700_000_000_000 % HOUR  # far from the scenario fixtures' days
_slot = itertools.count()
PATHS = {"aggregate": 0, "handover": 0, "raw": 0}


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with servers.victoria(tmp_path_factory.mktemp("vm-property")) as url:
        yield url


@pytest.fixture(scope="module")
def site(vm: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    cfg = make_site(root, vm)
    cfg.write_text(cfg.read_text().replace('scrape_interval = "15s"', 'scrape_interval = "60s"'))
    return cfg


@settings(
    max_examples=25,
    derandomize=True,  # the same fleets every run, so test_both_paths_were_exercised never depends on luck
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_promql_path_equals_reference(vm: str, site: Path, data: st.DataObject) -> None:
    start = BASE + next(_slot) * 6 * HOUR  # each example in hours of its own
    series = without_nan(data.draw(fleets(start_ms=start, hours=2, interval_ms=60_000)))
    servers.load_victoria(vm, series)
    cfg = load_config(site)
    con = store.memory()
    try:
        rep = collect(con, cfg, Span(start, start + 2 * HOUR))
        PATHS["aggregate"] += rep.gpu_windows - rep.raw_gpu_windows - rep.handover_gpu_windows
        PATHS["handover"] += rep.handover_gpu_windows
        PATHS["raw"] += rep.raw_gpu_windows
        rows = con.execute(
            "SELECT epoch_ms(window_start), job_id, uuid, gpu_i_id, mig_profile, gpu_model, hosts, "
            "gpu_ns, busy_ns, energy_uj FROM usage ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    want = reference(series, start_ms=start, end_ms=start + 2 * HOUR, interval_ms=60_000)
    assert_same(from_frame(rows), want)


def test_both_paths_were_exercised() -> None:
    """The property above only means something if every path ran: whole-hour aggregates,
    single-loop handovers (metering.handover) and raw samples."""
    if sum(PATHS.values()) == 0:
        pytest.skip("run with test_promql_path_equals_reference")
    assert PATHS["aggregate"] > 0 and PATHS["handover"] > 0 and PATHS["raw"] > 0, PATHS


def _relabel(series: list[Series], suffix: dict[str, str], old_label: set[str]) -> list[Series]:
    """Each GPU's UUID with a drawn last character, under ``uuid`` (the old exporter's) for some GPUs."""
    out = []
    for s in series:
        labels = dict(s.labels)
        uuid = labels.pop("UUID")
        labels["uuid" if uuid in old_label else "UUID"] = uuid + suffix[uuid]
        out.append(Series(labels, s.ts_ms, s.values))
    return out


def _stored(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    usage = con.execute("SELECT * EXCLUDE (hosts), list_sort(hosts) FROM usage ORDER BY ALL").fetchall()
    windows = con.execute("SELECT window_start, rows, digest FROM collected_windows ORDER BY ALL").fetchall()
    return usage, windows


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_sharded_collect_equals_one_worker(vm: str, site: Path, data: st.DataObject) -> None:
    """workers = N gives byte for byte the rows and window digests of one worker."""
    start = BASE + next(_slot) * 6 * HOUR
    drawn = without_nan(data.draw(fleets(start_ms=start, hours=2, interval_ms=60_000)))
    uuids = sorted({s.labels["UUID"] for s in drawn})
    suffix = {u: data.draw(st.sampled_from("0123456789abcdefAF-x"), label=f"last char of {u}") for u in uuids}
    old = {u for u in uuids if data.draw(st.booleans(), label=f"{u} under uuid")}
    series = _relabel(drawn, suffix, old)
    servers.load_victoria(vm, series)
    cfg = load_config(site)
    workers = data.draw(st.sampled_from([2, 3, 4, 16, 17]), label="workers")
    got = {}
    for n in (1, workers):
        con = store.memory()
        try:
            collect(con, cfg, Span(start, start + 2 * HOUR), workers=n, chunk_hours=1)
            got[n] = _stored(con)
        finally:
            con.close()
    assert got[1][1], "windows were recorded"
    assert got[workers] == got[1]
