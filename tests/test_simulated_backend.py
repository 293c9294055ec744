"""simulator.SimulatedBackend: the in-process backend the demo meters through.

It must answer the collector's queries exactly as the real backends do over the same
samples (Prometheus 2.42 with closed ranges, VictoriaMetrics with left-open ones, each asked
with its own ``range_ms``), so that ``collect`` through it gives the reference usage.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gpumeter.config import load_config
from metering.collector import MetricsClient
from metering.prom import PromClient
from metering.promql import over_energy, over_evidence, raw_selector
from metering.run import collect
from metering.samples import ENERGY, UTIL, Series, series_key, uuid_of
from metering.windows import HOUR_MS, Span
from simulator import SimulatedBackend
from testing.stores import new_store
from tests.oracle import assert_same, from_frame, reference, stored_rows, without_nan
from tests.scenarios import S, Scenario
from tests.sites import make_site

NEVER_CONTACTED = "http://127.0.0.1:9"  # collect gets the simulated backend; no Prometheus is asked

Answer = dict[tuple[str, int], float]  # (result label set, t_ms) -> value


@pytest.fixture(scope="module")
def everything(scenarios: dict[str, Scenario]) -> list[Series]:
    return [s for sc in scenarios.values() for s in sc.series]


def aggregate_queries(client: MetricsClient, span: Span) -> list[tuple[str, int, int]]:
    """The collector's five aggregate queries for one chunk: (query, start, end)."""
    r_win, r_ext = client.range_ms(HOUR_MS), client.range_ms(HOUR_MS + S)
    first_end = span.start_ms + HOUR_MS
    return [
        (over_evidence("count_over_time", r_win), first_end, span.end_ms),
        (over_evidence("sum_over_time", r_win), first_end, span.end_ms),
        (over_energy("count_over_time", r_ext), first_end, span.end_ms),
        (over_energy("last_over_time", r_win), span.start_ms, span.end_ms),
        (over_energy("resets", r_ext), first_end, span.end_ms),
    ]


def answers(client: MetricsClient, span: Span) -> list[Answer]:
    out = []
    for query, start, end in aggregate_queries(client, span):
        labels, frame = client.range_frame(query, start, end, HOUR_MS // 1000)
        keys = [series_key(lab) for lab in labels]  # the metric name stays where the backend keeps it
        out.append({(keys[i], t): v for i, t, v in frame.iter_rows()})
    return out


def assert_same_answers(got: list[Answer], want: list[Answer]) -> None:
    for g, w in zip(got, want, strict=True):
        assert sorted(g) == sorted(w)
        for k, v in w.items():
            assert g[k] == v or (math.isnan(g[k]) and math.isnan(v)) or math.isclose(g[k], v, rel_tol=1e-12), k


@pytest.mark.parametrize(
    "name", ["boundaries", "duplicates", "outage_reset", "rename_escape", "mig_shared", "month_edge", "handovers"]
)
def test_collect_through_the_simulated_backend_equals_the_reference(
    name: str, scenarios: dict[str, Scenario], everything: list[Series], tmp_path: Path
) -> None:
    sc = scenarios[name]
    cfg = load_config(make_site(tmp_path / "site", NEVER_CONTACTED))
    con = new_store(cfg.store.database)
    rep = collect(con, cfg, Span(sc.start_ms, sc.end_ms), client=SimulatedBackend(everything))
    got = from_frame(stored_rows(con))
    con.close()
    want = reference(sc.series, start_ms=sc.start_ms, end_ms=sc.end_ms, interval_ms=S)
    assert want, "scenario produced no usage"
    assert_same(got, want)
    assert rep.backend == "simulated" and rep.aggregate_queries == 6 * len(Span(sc.start_ms, sc.end_ms).chunks(24))
    if name in ("month_edge", "boundaries"):
        assert rep.gpu_windows - rep.raw_gpu_windows >= (rep.windows if name == "month_edge" else 6)
    if name in ("duplicates", "outage_reset", "mig_shared"):
        assert rep.raw_queries > 0  # overlapping series, outages and sharing take the raw path
    if name == "handovers":
        assert (rep.handover_gpu_windows, rep.raw_gpu_windows) == (2, 6)  # as on the real backends


@pytest.mark.prometheus
@pytest.mark.victoria
@pytest.mark.parametrize("name", ["boundaries", "duplicates", "outage_reset", "rename_escape", "mig_shared"])
def test_aggregate_answers_equal_the_real_backends(
    name: str, scenarios: dict[str, Scenario], everything: list[Series], prometheus_url: str, victoria_url: str
) -> None:
    span = Span(scenarios[name].start_ms, scenarios[name].end_ms)
    with PromClient(prometheus_url) as prom:
        assert_same_answers(answers(SimulatedBackend(everything), span), answers(prom, span))
    with PromClient(victoria_url) as vm:  # VictoriaMetrics drops NaN samples at ingestion
        assert_same_answers(answers(SimulatedBackend(without_nan(everything)), span), answers(vm, span))


@pytest.mark.prometheus
def test_raw_series_equal_prometheus(
    scenarios: dict[str, Scenario], everything: list[Series], prometheus_url: str
) -> None:
    sim = SimulatedBackend(everything)
    for sc in scenarios.values():
        uuids = sorted({uuid_of(s.labels) for s in sc.series})
        selector = raw_selector("UUID", uuids)
        # the slot before the first window (the energy reference) and the first window, half-open
        lo, hi = sc.start_ms - S, sc.start_ms + HOUR_MS
        with PromClient(prometheus_url) as prom:
            want = {x.key(): (x.ts_ms.tolist(), x.values.tolist()) for x in prom.raw_series(selector, lo, hi)}
        got = {x.key(): (x.ts_ms.tolist(), x.values.tolist()) for x in sim.raw_series(selector, lo, hi)}
        assert sorted(got) == sorted(want), sc.name
        for k, (ts, vs) in want.items():
            assert got[k][0] == ts and np.array_equal(got[k][1], vs, equal_nan=True), (sc.name, k)


def test_ranges_are_left_open_and_offset_moves_them() -> None:
    labels = {"__name__": UTIL, "UUID": "GPU-1", "Hostname": "h"}
    ts = np.array([0, 15_000, HOUR_MS - 15_000, HOUR_MS, HOUR_MS + 15_000], dtype=np.int64)
    sim = SimulatedBackend([Series(labels, ts, np.array([1.0, 2.0, 3.0, 4.0, 5.0]))])
    # at t = 1h: (0, 1h] without offset; [0, 1h) with offset 1ms
    _, plain = sim.range_frame(f"sum_over_time({UTIL}[{HOUR_MS}ms])", HOUR_MS, HOUR_MS, 3600)
    _, shifted = sim.range_frame(f"sum_over_time({UTIL}[{HOUR_MS}ms] offset 1ms)", HOUR_MS, HOUR_MS, 3600)
    assert plain.get_column("value").to_list() == [2.0 + 3.0 + 4.0]
    assert shifted.get_column("value").to_list() == [1.0 + 2.0 + 3.0]
    got = sim.raw_series(f'{{__name__="{UTIL}",UUID=~"GPU-.*"}}', 15_000, HOUR_MS)
    assert [x.ts_ms.tolist() for x in got] == [[15_000, HOUR_MS - 15_000]]
    assert sim.raw_series(f'{{__name__="{ENERGY}"}}', 0, 2 * HOUR_MS) == []
    assert sim.raw_series('{UUID=~"GPU"}', 0, 2 * HOUR_MS) == []  # regexes are anchored


def test_anything_the_collector_does_not_ask_is_refused() -> None:
    sim = SimulatedBackend([])
    for query in (f"rate({UTIL}[5m])", f"sum(count_over_time({UTIL}[1h]))", f"count_over_time({UTIL}[1h]) + 1"):
        with pytest.raises(ValueError, match="simulated backend"):
            sim.range_frame(query, 0, HOUR_MS, 3600)
    with pytest.raises(ValueError, match="simulated backend"):
        sim.raw_series(f'{UTIL}{{UUID="a\\qb"}}', 0, HOUR_MS)
