"""Metering against real backends: Prometheus 2.42 (closed ranges) and VictoriaMetrics
(left-open ranges, like Prometheus 3.x and Mimir), each loaded with every trap scenario.

Every scenario must give exactly what the plain reference computation gives over the same
raw samples (VictoriaMetrics drops NaN samples at ingestion, so its reference is computed
without them), and the numbers a person can check by hand.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import pytest

from gpumeter.config import load_config
from metering.prom import PromClient
from metering.report import gaps, month_usage
from metering.run import collect
from metering.windows import Span
from testing.stores import new_store
from tests.oracle import assert_same, from_frame, reference, stored_rows, without_nan
from tests.scenarios import HOUR, Scenario, ms
from tests.sites import make_site

pytestmark = [pytest.mark.prometheus, pytest.mark.victoria]


def meter_span(site: Path, url: str, start: int, end: int):  # type: ignore[no-untyped-def]
    cfg = load_config(make_site(site, url) if not (site / "gpumeter.toml").exists() else site / "gpumeter.toml")
    con = new_store(cfg.store.database)
    rep = collect(con, cfg, Span(start, end))
    rows = stored_rows(con)
    con.close()
    return rep, from_frame(rows)


def test_probe_detects_boundary_semantics(prometheus_url: str, victoria_url: str) -> None:
    with PromClient(prometheus_url) as c:
        assert c.closed_ranges() is True
        assert c.backend_name() == "prometheus-closed"
    with PromClient(victoria_url) as c:
        assert c.closed_ranges() is False


@pytest.mark.parametrize(
    "name", ["boundaries", "duplicates", "outage_reset", "rename_escape", "mig_shared", "month_edge", "handovers"]
)
def test_scenario_equals_reference(
    name: str, backend: tuple[str, str], scenarios: dict[str, Scenario], tmp_path: Path
) -> None:
    kind, url = backend
    sc = scenarios[name]
    rep, got = meter_span(tmp_path / "site", url, sc.start_ms, sc.end_ms)
    series = without_nan(sc.series) if kind == "victoria" else sc.series
    want = reference(series, start_ms=sc.start_ms, end_ms=sc.end_ms, interval_ms=15_000)
    assert want, "scenario produced no usage"
    assert_same(got, want)
    assert rep.windows == (sc.end_ms - sc.start_ms) // HOUR
    if name in ("month_edge", "boundaries"):
        # whole hours held by one series per GPU are settled by PromQL aggregates alone
        assert rep.gpu_windows - rep.raw_gpu_windows >= (rep.windows if name == "month_edge" else 6)
    if name == "boundaries":
        # the hand-over from job-edge-A to job-edge-B at 01:30, one scrape loop: no raw reads
        assert rep.handover_gpu_windows == 1
    if name == "handovers":
        # GPU 1 at 00:00 and GPU 6 at 01:00 are clean single-loop hand-overs; A-B-A, a
        # reset, sharing and the HA pair taking turns (six GPU-hours) are read raw
        assert (rep.handover_gpu_windows, rep.raw_gpu_windows) == (2, 6)


def seconds_by_job(got: dict, job: str) -> Decimal:  # type: ignore[type-arg]
    return sum((Decimal(r.gpu_ns) / 10**9 for k, r in got.items() if k[1] == job), Decimal(0))


def test_hand_checked_numbers(backend: tuple[str, str], scenarios: dict[str, Scenario], tmp_path: Path) -> None:
    _, url = backend
    site = tmp_path / "site"
    got = {}
    for name in ("boundaries", "duplicates", "outage_reset", "mig_shared", "month_edge", "rename_escape"):
        sc = scenarios[name]
        got.update(meter_span(site, url, sc.start_ms, sc.end_ms)[1])
    # one whole GPU for three hours, samples exactly on slot and hour edges
    assert seconds_by_job(got, "job-edge-1") == 3 * 3600
    # a hand-over at exactly 01:30:00: the sample on the edge opens job B's time
    assert seconds_by_job(got, "job-edge-A") == Decimal(5400)
    # idle GPUs (no label, "0") bill nobody
    assert not [k for k in got if k[1] in ("", "0")]
    # two scrape jobs and an HA pair: each slot counts once
    assert seconds_by_job(got, "job-dup") == 3 * 3600
    assert seconds_by_job(got, "job-ha") == 3 * 3600
    # a 20-minute outage is not billed
    assert seconds_by_job(got, "job-outage") == 3 * 3600 - 20 * 60
    # two jobs on one GPU: half each
    assert seconds_by_job(got, "job-share-1") == seconds_by_job(got, "job-share-2") == Decimal(3 * 3600) / 2
    # MIG instances are held per instance; the 1g instance only from 01:45
    assert seconds_by_job(got, "job-mig-3g") == 3 * 3600
    assert seconds_by_job(got, "job-mig-1g") == 75 * 60
    # a host label renamed mid-hour: still one GPU, both samples in the switch slot count once
    assert seconds_by_job(got, "job-rename") == 3 * 3600
    assert seconds_by_job(got, 'we"ird\\job name/é') == 3 * 3600
    # the month edge: two hours each side of midnight UTC
    oct_ = [r for k, r in got.items() if k[1] == "job-month" and k[0] < ms("2026-11-01T00:00:00")]
    nov = [r for k, r in got.items() if k[1] == "job-month" and k[0] >= ms("2026-11-01T00:00:00")]
    assert sum(r.gpu_ns for r in oct_) == sum(r.gpu_ns for r in nov) == 7200 * 10**9


def test_energy_counter_reset_and_mig_shares(
    prometheus_url: str, scenarios: dict[str, Scenario], tmp_path: Path
) -> None:
    sc = scenarios["outage_reset"]
    _, got = meter_span(tmp_path / "site", prometheus_url, sc.start_ms, sc.end_ms)
    energy_mj = sum(r.energy_uj for r in got.values()) / 1000
    # before the outage 3,000,000 mJ per slot; the first sample after the restart counts its
    # own value (5,000 mJ: the counter restarted); then 2,000,000 mJ per slot.
    before = (ms("2026-10-03T01:10:00") - ms("2026-10-03T00:00:00")) // 15_000
    after = (ms("2026-10-03T03:00:00") - ms("2026-10-03T01:30:00")) // 15_000
    assert energy_mj == before * 3_000_000 + 5_000 + (after - 1) * 2_000_000
    sc = scenarios["mig_shared"]
    _, got = meter_span(tmp_path / "site2", prometheus_url, sc.start_ms, sc.end_ms)
    e = {k[1]: 0 for k in got}
    for k, r in got.items():
        e[k[1]] += r.energy_uj
    # 3g on an A100 gets 3/7 of the GPU's energy, 2g gets 2/7; the idle 1g slice goes to no one
    assert math.isclose(e["job-mig-3g"] / e["job-mig-2g"], 1.5, rel_tol=1e-9)
    # A30 has 4 slices: two 2g instances get 2/4 each; energy is not multiplied by copies
    assert e["job-a30-x"] == e["job-a30-y"]
    share = e["job-share-1"] + e["job-share-2"]
    assert abs(share - 2 * e["job-a30-x"]) <= 2  # the shared GPU's whole increase, split in two


def test_split_ranges_add_up_and_rerun_changes_nothing(
    prometheus_url: str, scenarios: dict[str, Scenario], tmp_path: Path
) -> None:
    sc = scenarios["boundaries"]
    _, whole = meter_span(tmp_path / "a", prometheus_url, sc.start_ms, sc.end_ms)
    cfg = load_config(make_site(tmp_path / "b", prometheus_url))
    con = new_store(cfg.store.database)
    collect(con, cfg, Span(sc.start_ms, sc.start_ms + HOUR))
    collect(con, cfg, Span(sc.start_ms + HOUR, sc.end_ms))
    first = con.execute("SELECT * FROM collected_windows ORDER BY ALL").fetchall()
    usage_rows = con.execute("SELECT * FROM usage ORDER BY ALL").fetchall()
    rep = collect(con, cfg, Span(sc.start_ms, sc.end_ms))
    assert rep.windows_written == 0 and rep.windows_unchanged == 3
    assert con.execute("SELECT * FROM collected_windows ORDER BY ALL").fetchall() == first
    assert con.execute("SELECT * FROM usage ORDER BY ALL").fetchall() == usage_rows
    rows = stored_rows(con)
    assert from_frame(rows) == whole
    con.close()


def test_month_usage_gaps_and_verdicts(prometheus_url: str, scenarios: dict[str, Scenario], tmp_path: Path) -> None:
    cfg = load_config(make_site(tmp_path / "site", prometheus_url))
    con = new_store(cfg.store.database)
    for name in ("outage_reset", "rename_escape", "month_edge", "boundaries"):
        sc = scenarios[name]
        rep = collect(con, cfg, Span(sc.start_ms, sc.end_ms))
    assert "job-edge-B" in rep.unknown_jobs
    oct_ = month_usage(con, "2026-10", frozenset({"FR", "DE", "NL", "FI", "IT"}))
    rows = {r["job_id"]: r for r in oct_.iter_rows(named=True)}
    assert rows["job-month"]["gpu_seconds"] == Decimal(7200)
    assert rows["job-outage"]["countries"] == ["NL"] and rows["job-outage"]["in_eu"] is True
    # data in a US bucket: outside; a data location no storage prefix covers: outside
    assert rows["job-rename"]["in_eu"] is False
    assert rows['we"ird\\job name/é']["in_eu"] is False
    # absent from jobs.csv: no tenant, judged on its hosts alone
    assert rows["job-edge-B"]["tenant"] is None and rows["job-edge-B"]["in_eu"] is True
    assert rows["job-nan"]["busy_gpu_seconds"] < rows["job-nan"]["gpu_seconds"]
    nov = month_usage(con, "2026-11", frozenset({"FR"}))
    assert nov.get_column("job_id").to_list() == ["job-month"]
    g = gaps(con, "2026-10", 15_000)
    found = [(r["hostname"], r["start"].isoformat(), r["end"].isoformat()) for r in g.iter_rows(named=True)]
    assert found == [("nl-ams-gpu01", "2026-10-03T01:10:00+00:00", "2026-10-03T01:30:00+00:00")]
    con.close()


def test_label_values_reach_promql_escaped(backend: tuple[str, str], scenarios: dict[str, Scenario]) -> None:
    """A job id with quotes, a backslash, a space and unicode selects exactly its series, and
    a regex alternation over such values matches them literally."""
    from metering.promql import quote, regex_alternation

    _, url = backend
    weird = 'we"ird\\job name/é'
    at = scenarios["rename_escape"].start_ms + HOUR
    with PromClient(url) as c:
        got = c.instant(f"count(DCGM_FI_DEV_GPU_UTIL{{hpc_job={quote(weird)}}})", at)
        assert got and float(got[0]["value"][1]) == 1
        got = c.instant(f"count(DCGM_FI_DEV_GPU_UTIL{{hpc_job=~{regex_alternation([weird, 'job-rename'])}}})", at)
        assert got and float(got[0]["value"][1]) == 2
        # a regex metacharacter in a value is literal: "job.rename" must not match "job-rename"
        assert c.instant(f"count(DCGM_FI_DEV_GPU_UTIL{{hpc_job=~{regex_alternation(['job.rename'])}}})", at) == []
