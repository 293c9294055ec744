"""The synthetic DCGM fleet: determinism, the exporter's label and value facts, the traps,
and round trips through the real tools (promtool + Prometheus 2.42, VictoriaMetrics).
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
import tomllib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import requests

from gpumeter.config import load_config
from gpumeter.countries import EU27
from metering.inventory import load_inventory
from metering.samples import ENERGY, GR_ACTIVE, UTIL, Series, host_of
from simulator import (
    Fleet,
    FleetSpec,
    Traps,
    backfill,
    bench_fleet,
    render_exporter_page,
    serve_exporter,
    simulate,
    small_fleet,
    small_spec,
    vm_import,
    vm_import_chunks,
    vm_import_payload,
    write_inventory,
    write_openmetrics,
    write_openmetrics_days,
)
from simulator.exposition import go_float
from simulator.server import simulated_instant
from testing import servers

START = datetime(2025, 3, 1, tzinfo=UTC)
TARGET_LABELS = ("job", "instance", "replica")
EXPORTER_ORDER = (
    "gpu",
    "UUID",
    "pci_bus_id",
    "device",
    "modelName",
    "GPU_I_PROFILE",
    "GPU_I_ID",
    "Hostname",
    "hostname",
    "DCGM_FI_DRIVER_VERSION",
    "hpc_job",
    "job",
    "instance",
    "replica",
)
MODELS = {"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA A30", "NVIDIA L40S"}


def short_spec(seed: int = 5, hours: float = 4.0, **changes: object) -> FleetSpec:
    return replace(small_spec(seed, START), duration=timedelta(hours=hours), **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def traps() -> Fleet:
    """Two days with every trap on (each is promised to occur at least once)."""
    return small_fleet(11, START, days=2)


@pytest.fixture(scope="module")
def short() -> Fleet:
    """Four epoch-aligned hours with every trap on: small enough for real servers."""
    return simulate(short_spec(epoch_aligned=True))


def exporter_view(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Labels minus __name__ and Prometheus target labels, host label under one name."""
    return tuple(
        ("host" if k in ("Hostname", "hostname") else k, v)
        for k, v in labels.items()
        if k != "__name__" and k not in TARGET_LABELS
    )


def by_target(fleet: Fleet) -> dict[tuple[str, str, str | None], list[Series]]:
    out: dict[tuple[str, str, str | None], list[Series]] = defaultdict(list)
    for s in fleet.series:
        out[(s.labels["job"], s.labels["instance"], s.labels.get("replica"))].append(s)
    return out


def merged(series: Iterable[Series]) -> tuple[np.ndarray, np.ndarray]:
    """Samples of several series, by time; one per timestamp (asserting copies agree)."""
    items = list(series)
    ts = np.concatenate([s.ts_ms for s in items])
    vs = np.concatenate([s.values for s in items])
    order = np.argsort(ts, kind="stable")
    ts, vs = ts[order], vs[order]
    same = ts[1:] == ts[:-1]
    assert np.array_equal(vs[1:][same], vs[:-1][same], equal_nan=True)
    keep = np.concatenate(([True], ~same))
    return ts[keep], vs[keep]


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_openmetrics_and_another_seed_differs(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.om", tmp_path / "b.om", tmp_path / "c.om"
    write_openmetrics(simulate(short_spec(seed=5)).series, a)
    write_openmetrics(simulate(short_spec(seed=5)).series, b)
    write_openmetrics(simulate(short_spec(seed=6)).series, c)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_switching_a_telemetry_trap_off_changes_nothing_else() -> None:
    base = short_spec(seed=9, hours=24)
    with_nan = simulate(base)
    calm = simulate(replace(base, traps=replace(base.traps, nan_util=0.0, ha_pair=0.0, outages_per_node_day=0.0)))
    assert with_nan.assignments == calm.assignments
    assert with_nan.jobs == calm.jobs
    assert [e for e in with_nan.events if e.kind != "outage"] == calm.events
    assert calm.targets == [replace(t, replica=None) for t in with_nan.targets if t.replica != "prom-b"]


# ---------------------------------------------------------------- labels and values


def test_labels_are_those_dcgm_exporter_and_prometheus_attach(traps: Fleet) -> None:
    uuid = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    keys = set()
    for s in traps.series:
        labels = dict(s.labels)
        assert s.metric in (UTIL, GR_ACTIVE, ENERGY)
        names = [k for k in labels if k != "__name__"]
        assert names == sorted(names, key=EXPORTER_ORDER.index), names
        assert uuid.match(labels["UUID"])
        assert labels["device"] == f"nvidia{labels['gpu']}"
        assert re.fullmatch(r"00000000:[0-9A-F]{2}:00\.0", labels["pci_bus_id"])
        assert labels["modelName"] in MODELS
        assert ("Hostname" in labels) != ("hostname" in labels)
        assert ("GPU_I_ID" in labels) == ("GPU_I_PROFILE" in labels)
        assert labels["job"] in ("dcgm-exporter", "gpu-nodes") and labels["instance"].endswith(":9400")
        assert labels.get("hpc_job", "x") != ""  # an empty mapping line is no label at all
        keys.add(s.key())
    assert len(keys) == len(traps.series), "two series share one label set"
    hosts = {n.hostname for n in traps.nodes}
    assert {host_of(s.labels) for s in traps.series} == hosts


def test_gpu_util_never_on_mig_and_mig_instances_carry_gr_engine_active(traps: Fleet) -> None:
    mig_gpus = [g for g in traps.gpus if g.mig]
    assert {g.model for g in mig_gpus} >= {"NVIDIA A30"} and any("A30" not in g.model for g in mig_gpus)
    assert not [s for s in traps.series if s.metric == UTIL and "GPU_I_ID" in s.labels]
    seen = {
        (s.labels["UUID"], s.labels["GPU_I_ID"], s.labels["GPU_I_PROFILE"])
        for s in traps.series
        if s.metric == GR_ACTIVE and "GPU_I_ID" in s.labels
    }
    assert seen == {(g.uuid, str(m.gpu_i_id), m.profile) for g in mig_gpus for m in g.mig}
    a30_profiles = {m.profile for g in mig_gpus if "A30" in g.model for m in g.mig}
    assert a30_profiles <= {"1g.6gb", "2g.12gb", "4g.24gb"}
    whole = {g.uuid for g in traps.gpus if not g.mig}
    assert {s.labels["UUID"] for s in traps.series if s.metric == UTIL} == whole


def test_value_domains(traps: Fleet) -> None:
    nan = 0
    for s in traps.series:
        v = s.values
        finite = v[~np.isnan(v)]
        nan += len(v) - len(finite)
        if s.metric == ENERGY:
            assert len(finite) == len(v), "a counter is never NaN"
        if s.metric in (UTIL, ENERGY):
            assert np.array_equal(finite, np.floor(finite))
        if s.metric == UTIL:
            assert finite.min(initial=0) >= 0 and finite.max(initial=0) <= 100
        if s.metric == GR_ACTIVE:
            assert finite.min(initial=0) >= 0 and finite.max(initial=0) <= 1
    assert nan > 0, "the traps fleet promises NaN utilisation readings"


def test_mig_energy_is_the_parents_counter_on_every_instance(traps: Fleet) -> None:
    for g in (g for g in traps.gpus if g.mig):
        for target, series in by_target(traps).items():
            per_instance: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            mine = [s for s in series if s.metric == ENERGY and s.labels["UUID"] == g.uuid]
            if not mine:
                continue
            for gi in {s.labels["GPU_I_ID"] for s in mine}:
                per_instance[gi] = merged(s for s in mine if s.labels["GPU_I_ID"] == gi)
            assert len(per_instance) == len(g.mig), target
            ts0, v0 = next(iter(per_instance.values()))
            for ts, v in per_instance.values():
                assert np.array_equal(ts, ts0) and np.array_equal(v, v0)


def test_job_copies_of_a_shared_gpu_are_identical(traps: Fleet) -> None:
    shared = {a.uuid for a in traps.assignments if a.shared}
    assert shared, "the traps fleet promises a time-sliced GPU"
    groups: dict[tuple[tuple[str, str], ...], list[Series]] = defaultdict(list)
    for s in traps.series:
        groups[tuple((k, v) for k, v in s.labels.items() if k != "hpc_job")].append(s)
    copies = 0
    for members in groups.values():
        if len(members) == 1:
            continue
        index: dict[int, list[float]] = defaultdict(list)
        for s in members:
            for t, v in zip(s.ts_ms.tolist(), s.values.tolist(), strict=True):
                index[t].append(v)
        for values in index.values():
            if len(values) > 1:
                copies += 1
                assert all(v == values[0] or (math.isnan(v) and math.isnan(values[0])) for v in values)
    assert copies > 0


def test_mig_gpu_instances_hold_different_jobs(traps: Fleet) -> None:
    jobs_on: dict[str, set[str]] = defaultdict(set)
    for a in traps.assignments:
        if a.gpu_i_id:
            jobs_on[a.uuid].add(a.job_id)
    assert any(len(j) > 1 for j in jobs_on.values())
    mixed_off = simulate(short_spec(seed=3, hours=24, traps=replace(Traps(), mig_mixed_jobs=False)))
    for g in (g for g in mixed_off.gpus if g.mig):
        spans = defaultdict(set)
        for a in mixed_off.assignments:
            if a.uuid == g.uuid:
                spans[(a.job_id, a.start_ms, a.end_ms)].add(a.gpu_i_id)
        assert all(len(v) == len(g.mig) for v in spans.values())


def test_energy_counter_only_drops_at_a_restart_and_grows_with_power(traps: Fleet) -> None:
    restarts = defaultdict(list)
    for e in traps.events:
        if e.kind == "restart":
            restarts[e.hostname].append(e)
    assert restarts, "the traps fleet promises an exporter restart"
    watts = {g.uuid: g.model for g in traps.gpus}
    limits = {"NVIDIA H100 80GB HBM3": 760, "NVIDIA A100-SXM4-80GB": 440, "NVIDIA L40S": 390, "NVIDIA A30": 185}
    drops = 0
    for target, series in by_target(traps).items():
        hosts = {s.labels["UUID"]: host_of(s.labels) for s in series}
        for uuid, host in hosts.items():
            ts, v = merged(s for s in series if s.metric == ENERGY and s.labels["UUID"] == uuid)
            step = np.diff(v)
            for i in np.flatnonzero(step < 0):
                drops += 1
                assert any(ts[i] < e.start_ms and ts[i + 1] >= e.end_ms for e in restarts[host]), (target, uuid)
                assert v[i + 1] < 1e8  # restarted from a small value
            ok = step >= 0
            watt = step[ok] / np.diff(ts)[ok]  # mJ per ms = W
            assert watt.min() > 10 and watt.max() < limits[watts[uuid]], (uuid, watt.min(), watt.max())
    assert drops >= len(restarts)


def test_scrape_phases_one_sample_per_slot_per_target(traps: Fleet, short: Fleet) -> None:
    for fleet in (traps, short):
        iv = fleet.spec.interval_ms
        phases = {(t.job, t.instance, t.replica): t.phase_ms for t in fleet.targets}
        for target, series in by_target(fleet).items():
            for s in series:
                assert np.all((s.ts_ms - phases[target]) % iv == 0)
                assert np.all(np.diff(s.ts_ms) > 0)
        if fleet.spec.epoch_aligned:
            assert {
                t.phase_ms for t in fleet.targets if t.job == "dcgm-exporter" and t.replica in (None, "prom-a")
            } == {0}
        for node in fleet.nodes:
            mine = [t for t in fleet.targets if t.hostname == node.hostname]
            assert len({t.phase_ms for t in mine}) == len(mine), "duplicate scrapes must not share timestamps"
    assert any(t.job == "gpu-nodes" for t in traps.targets) and any(t.replica == "prom-b" for t in traps.targets)


def test_outages_leave_gaps_and_the_upgrade_renames_the_host_label(traps: Fleet) -> None:
    samples_of: dict[str, list[np.ndarray]] = defaultdict(list)
    host_labels: dict[str, list[tuple[np.ndarray, str]]] = defaultdict(list)
    for s in traps.series:
        key = "hostname" if "hostname" in s.labels else "Hostname"
        host = s.labels[key]
        samples_of[host].append(s.ts_ms)
        host_labels[host].append((s.ts_ms, key))
    outages = [e for e in traps.events if e.kind == "outage"]
    assert outages
    for e in outages:
        ts = np.concatenate(samples_of[e.hostname])
        assert not np.any((ts >= e.start_ms) & (ts < e.end_ms))
        assert np.any(ts < e.start_ms) and np.any(ts >= e.end_ms)
    upgrades = {e.hostname: e.start_ms for e in traps.events if e.kind == "upgrade"}
    assert upgrades
    for host, parts in host_labels.items():
        for ts, key in parts:
            if host not in upgrades:
                assert key == "Hostname"
            elif key == "Hostname":
                assert ts.max() < upgrades[host]
            else:
                assert ts.min() >= upgrades[host]


def test_idle_gpus_show_no_job_label_or_zero(traps: Fleet) -> None:
    zero_hosts = {host_of(s.labels) for s in traps.series if s.labels.get("hpc_job") == "0"}
    bare_hosts = {host_of(s.labels) for s in traps.series if "hpc_job" not in s.labels}
    assert zero_hosts and bare_hosts and not zero_hosts & bare_hosts


def test_clean_fleet_has_no_traps() -> None:
    fleet = simulate(short_spec(seed=4, hours=24, traps=Traps.none()))
    assert all(not np.isnan(s.values).any() for s in fleet.series)
    assert all("Hostname" in s.labels and "replica" not in s.labels for s in fleet.series)
    assert len(fleet.targets) == len(fleet.nodes) and not fleet.events and not fleet.unlisted_job_ids
    assert all(s.labels.get("hpc_job", "x") != "0" for s in fleet.series)
    assert all(j.job_id.isdigit() for j in fleet.jobs) and not any(a.shared for a in fleet.assignments)
    for series in by_target(fleet).values():
        for uuid in {s.labels["UUID"] for s in series}:
            _, v = merged(s for s in series if s.metric == ENERGY and s.labels["UUID"] == uuid)
            assert np.all(np.diff(v) >= 0)


def test_jobs_are_realistic_and_the_fleet_breaks_the_boundary_somewhere(traps: Fleet) -> None:
    whole_job_hours = [(a.end_ms - a.start_ms) / 3.6e6 for a in traps.assignments if not a.shared]
    assert min(whole_job_hours) >= 1.0 and max(whole_job_hours) <= 72.0
    countries = {n.country for n in traps.nodes}
    assert {"FR", "DE", "NL", "FI", "IT"} <= countries and countries - EU27
    telemetry_jobs = {s.labels["hpc_job"] for s in traps.series if s.labels.get("hpc_job") not in (None, "0")}
    listed = {j.job_id for j in traps.jobs}
    assert telemetry_jobs - listed == set(traps.unlisted_job_ids) != set()
    host_country = {n.hostname: n.country for n in traps.nodes}
    hosts_of: dict[str, set[str]] = defaultdict(set)
    for s in traps.series:
        if s.labels.get("hpc_job") not in (None, "0"):
            hosts_of[s.labels["hpc_job"]].add(host_of(s.labels))
    outside_hosts = {j for j, hs in hosts_of.items() if any(host_country[h] not in EU27 for h in hs)}
    storage = {s.location: s.country for s in traps.storage}

    def country(location: str) -> str:
        return storage[max((p for p in storage if location.startswith(p + "/")), key=len)]

    outside_data = {j.job_id for j in traps.jobs if any(country(loc) not in EU27 for loc in j.data_locations)}
    assert outside_hosts and outside_data - outside_hosts
    requeued = [j for j, hs in hosts_of.items() if len(hs) > 1]
    assert any({host_country[h] in EU27 for h in hosts_of[j]} == {True, False} for j in requeued)


# ---------------------------------------------------------------- inventory files


def test_write_inventory_loads_cleanly_and_quotes_odd_job_ids(traps: Fleet, tmp_path: Path) -> None:
    cfg_path = write_inventory(traps, tmp_path / "site", prometheus_url="http://127.0.0.1:19090")
    cfg = load_config(cfg_path)
    assert cfg.telemetry.prometheus_url == "http://127.0.0.1:19090"
    assert cfg.telemetry.scrape_interval_ms == 15_000 and cfg.telemetry.job_label == "hpc_job"
    assert cfg.telemetry.idle_job_ids == ("", "0") and cfg.audit.allowed_countries == ("EU",)
    assert cfg.billing.supplier.country == "FR" and cfg.billing.supplier.siren
    from stdnum.eu import vat

    assert vat.is_valid(cfg.billing.supplier.vat_id)
    inv = load_inventory(cfg.inventory)
    assert set(inv.jobs) == {j.job_id for j in traps.jobs}
    odd = [j for j in traps.jobs if not j.job_id.isdigit()]
    assert {c for j in odd for c in j.job_id} >= {'"', "\\", " ", ",", ";", "北"}
    for j in odd:
        assert inv.jobs[j.job_id].data_locations == j.data_locations
    raw = (tmp_path / "site" / "jobs.csv").read_text(encoding="utf-8")
    assert '"ml ""llama"" run' in raw
    with open(tmp_path / "site" / "jobs.csv", newline="", encoding="utf-8") as f:
        assert [r["job_id"] for r in csv.DictReader(f)] == [j.job_id for j in traps.jobs]
    assert {t.country for t in inv.tenants.values()} >= {"FR", "DE", "NL", "IT", "US", "CH"}
    assert inv.tenants["prairie-ml"].vat_id == ""
    rates = tomllib.loads((tmp_path / "site" / "rates.toml").read_text())["rate"]
    assert {r["model"] for r in rates} == {g.model for g in traps.gpus}
    assert all(isinstance(r["eur_per_gpu_hour"], str) for r in rates)
    assert [r.get("mig_slices") for r in rates if "A30" in r["model"]] == [4]
    for s in traps.series:
        host = host_of(s.labels)
        assert inv.node_country(host) is not None


def test_the_demo_site_has_a_reservation_a_spot_job_and_credits_the_billing_parser_accepts(
    traps: Fleet, tmp_path: Path
) -> None:
    from billing.contracts import CreditKind, read_contracts
    from billing.rates import parse_rates

    plain = write_inventory(traps, tmp_path / "plain")
    assert load_config(plain).billing.contracts is None and not (tmp_path / "plain" / "contracts.toml").exists()
    cfg = load_config(write_inventory(traps, tmp_path / "site", contracts=True))
    assert cfg.billing.contracts == tmp_path / "site" / "contracts.toml"
    deals = read_contracts(cfg.billing.contracts)
    (reservation,) = deals.reservations
    assert reservation.start == (START + timedelta(days=1)).date() and reservation.gpus == 1
    assert {c.kind for c in deals.credits} == {CreditKind.PROMOTIONAL, CreditKind.PREPAID}
    assert {c.tenant for c in deals.credits} != {reservation.tenant}
    inv = load_inventory(cfg.inventory)
    (spot,) = [j for j in inv.jobs.values() if j.job_class == "spot"]
    assert spot.tenant == reservation.tenant
    card = parse_rates((tmp_path / "site" / "rates.toml").read_text(encoding="utf-8"))
    assert any(r.spot for r in card.rates) and reservation.model in card.models()
    # Every other job and tenant is as the plain site has it.
    plain_jobs = load_inventory(load_config(plain).inventory).jobs
    assert {j: (v.tenant, v.project) for j, v in inv.jobs.items()} == {
        j: (v.tenant, v.project) for j, v in plain_jobs.items()
    }


# ---------------------------------------------------------------- writers and real tools


def test_openmetrics_days_split_by_utc_day_and_end_with_eof(tmp_path: Path) -> None:
    fleet = simulate(replace(short_spec(seed=8, hours=6), start=START + timedelta(hours=21)))
    files = write_openmetrics_days(fleet.series, tmp_path)
    assert [p.name for p in files] == ["2025-03-01.om", "2025-03-02.om"]
    total = 0
    for p in files:
        text = p.read_text(encoding="utf-8")
        assert text.endswith("\n# EOF\n")
        lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
        total += len(lines)
        day = datetime.strptime(p.stem, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        assert all(day <= float(ln.rsplit(" ", 1)[1]) < day + 86400 for ln in lines)
    assert total == fleet.sample_count
    two_hourly = write_openmetrics_days(fleet.series, tmp_path / "2h", hours=2)
    assert [p.name for p in two_hourly] == [
        "2025-03-01T20.om",
        "2025-03-01T22.om",
        "2025-03-02T00.om",
        "2025-03-02T02.om",
    ]


def test_backfilled_prometheus_returns_exactly_the_written_samples(short: Fleet, tmp_path: Path) -> None:
    assert any(not j.job_id.isdigit() for j in short.jobs)
    servers.need("promtool")
    blocks = backfill(short.series, tmp_path / "tsdb", tmp_path / "om")
    assert blocks and not list((tmp_path / "om").iterdir())
    expected = {tuple(sorted(s.labels.items())): s for s in short.series}
    end_s = short.spec.end_ms / 1000
    with servers.prometheus_on(tmp_path / "tsdb", tmp_path) as url:
        r = requests.get(
            f"{url}/api/v1/query",
            params={"query": '{__name__=~"DCGM_.+"}[5h]', "time": f"{end_s:.3f}"},
            timeout=60,
        )
    r.raise_for_status()
    result = r.json()["data"]["result"]
    assert len(result) == len(expected)
    for item in result:
        s = expected[tuple(sorted(item["metric"].items()))]
        ts = np.array([round(float(t) * 1000) for t, _ in item["values"]], dtype=np.int64)
        values = np.array([float(v) for _, v in item["values"]])
        assert len(ts) == len(s.ts_ms)
        assert np.array_equal(ts, s.ts_ms)
        assert np.array_equal(values, s.values, equal_nan=True)


def test_victoria_metrics_import_round_trips_all_but_nan(short: Fleet, tmp_path: Path) -> None:
    chunks = list(vm_import_chunks(short.series, chunk_bytes=1 << 20))
    assert len(chunks) > 1 and all(c.endswith(b"\n") for c in chunks)
    assert b"".join(chunks) == vm_import_payload(short.series)
    expected = {tuple(sorted(s.labels.items())): s for s in short.series}
    with servers.victoria(tmp_path) as url:
        vm_import(url, short.series)
        r = requests.get(
            f"{url}/api/v1/export",
            params={"match[]": '{__name__=~"DCGM_.+"}', "start": "0", "end": f"{short.spec.end_ms / 1000:.0f}"},
            timeout=60,
        )
        r.raise_for_status()
        count = requests.get(
            f"{url}/api/v1/query",
            params={"query": f"count(count_over_time({UTIL}[5h]))", "time": f"{short.spec.end_ms / 1000:.3f}"},
            timeout=60,
        ).json()
    exported = [json.loads(line) for line in r.text.splitlines() if line]
    assert len(exported) == len(expected)
    dropped = 0
    for item in exported:
        s = expected[tuple(sorted(item["metric"].items()))]
        keep = ~np.isnan(s.values)
        dropped += int((~keep).sum())
        order = np.argsort(item["timestamps"])
        assert np.array_equal(np.asarray(item["timestamps"])[order], s.ts_ms[keep])
        assert np.array_equal(np.asarray(item["values"], dtype=float)[order], s.values[keep])
    assert dropped > 0, "VictoriaMetrics drops NaN samples at ingestion"
    assert int(count["data"]["result"][0]["value"][1]) == len({s.key() for s in short.series if s.metric == UTIL})


# ---------------------------------------------------------------- exporter page and server


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_page(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, dict[str, str], str]]]:
    """A small Prometheus text-format parser: families (HELP, TYPE) and samples."""
    help_: dict[str, str] = {}
    types: dict[str, str] = {}
    samples: list[tuple[str, dict[str, str], str]] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, doc = line[7:].split(" ", 1)
            help_[name] = doc
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ", 1)
            types[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m, line
            name, inner, value = m.groups()
            labels: dict[str, str] = {}
            pos = 0
            while inner and pos < len(inner):
                lm = _LABEL.match(inner, pos)
                assert lm, inner[pos:]
                raw = lm.group(2)
                labels[lm.group(1)] = re.sub(r"\\(.)", lambda x: "\n" if x.group(1) == "n" else x.group(1), raw)
                pos = lm.end()
            assert name in types, "sample before its # TYPE"
            samples.append((name, labels, value))
    return {n: (help_[n], types[n]) for n in types}, samples


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e6, "1e+06"),
        (999999.0, "999999"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (608863452348.1149, "6.088634523481149e+11"),
        (1e21, "1e+21"),
        (183447263021.0, "1.83447263021e+11"),
        (0.874512, "0.874512"),
        (97.0, "97"),
        (0.0, "0"),
        (float("nan"), "NaN"),
    ],
)
def test_go_float_matches_strconv_shortest_g(value: float, text: str) -> None:
    assert go_float(value) == text


def page_rows(fleet: Fleet, host: str, t_ms: int) -> set[tuple[str, tuple[tuple[str, str], ...], str]]:
    """What the primary scrape of ``host`` recorded at ``t_ms``, as exporter rows."""
    rows = set()
    t = next(x for x in fleet.targets if x.hostname == host)
    primary = (t.job, t.instance, t.replica)
    for s in fleet.series:
        if (s.labels["job"], s.labels["instance"], s.labels.get("replica")) != primary:
            continue
        i = int(np.searchsorted(s.ts_ms, t_ms))
        if i < len(s.ts_ms) and s.ts_ms[i] == t_ms:
            rows.add((s.metric, exporter_view(dict(s.labels)), repr(float(s.values[i]))))
    return rows


@pytest.mark.parametrize("style", ["4.5", "4.6"])
def test_exporter_page_matches_the_scraped_samples(traps: Fleet, style: str) -> None:
    node = next(n for n in traps.nodes if any(m for g in traps.gpus if g.hostname == n.hostname for m in g.mig))
    target = next(x for x in traps.targets if x.hostname == node.hostname)
    t_ms = traps.spec.start_ms + 7 * 3_600_000 + target.phase_ms + 15_000 * 17
    expected = page_rows(traps, node.hostname, t_ms)
    assert expected, "pick an instant the primary target scraped"
    page = render_exporter_page(traps, datetime.fromtimestamp(t_ms / 1000, tz=UTC), style, hostname=node.hostname)
    families, samples = parse_page(page)
    assert families[ENERGY] == ("Total energy consumption since boot (in mJ).", "counter")
    assert families[UTIL][1] == "gauge" and families[GR_ACTIVE][1] == "gauge"
    host_key = "hostname" if style == "4.6" else "Hostname"
    assert all(host_key in labels for _, labels, _ in samples)
    got = {(name, exporter_view(labels), repr(float(v))) for name, labels, v in samples}
    assert got == expected
    names = [name for name, _, _ in samples]
    if style == "4.6":
        assert names == sorted(names)
        assert any("e+" in v for name, _, v in samples if name == ENERGY)
    else:
        assert all(re.fullmatch(r"\d+\.\d{6}|NaN", v) for name, _, v in samples if name == GR_ACTIVE)
        assert all(re.fullmatch(r"\d+|NaN", v) for name, _, v in samples if name != GR_ACTIVE)


def test_exporter_page_of_the_whole_fleet_leaves_out_down_exporters(traps: Fleet) -> None:
    outage = next(e for e in traps.events if e.kind == "outage")
    t_ms = (outage.start_ms + outage.end_ms) // 2
    down = {e.hostname for e in traps.events if e.kind in ("outage", "restart") and e.start_ms <= t_ms < e.end_ms}
    _, samples = parse_page(render_exporter_page(traps, datetime.fromtimestamp(t_ms / 1000, tz=UTC)))
    assert outage.hostname in down
    assert {labels["Hostname"] for _, labels, _ in samples} == {n.hostname for n in traps.nodes} - down


def test_live_server_serves_metrics_and_health(traps: Fleet) -> None:
    wall = datetime(2030, 6, 1, 12, 0, 7, tzinfo=UTC)
    instant = simulated_instant(traps, wall)
    assert traps.spec.start <= instant < traps.spec.start + traps.spec.duration
    outage = next(e for e in traps.events if e.kind == "outage")
    mid = datetime.fromtimestamp((outage.start_ms + outage.end_ms) // 2 / 1000, tz=UTC)
    server, url = serve_exporter(traps, clock=lambda: wall)
    try:
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        r = requests.get(f"{url}/metrics", timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        assert r.text == render_exporter_page(traps, instant)
        r = requests.get(f"{url}/metrics", params={"node": outage.hostname, "at": mid.isoformat()}, timeout=10)
        assert r.status_code == 503
        assert requests.get(f"{url}/metrics", params={"node": "nope"}, timeout=10).status_code == 404
        assert requests.get(f"{url}/nothing", timeout=10).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- scale


def test_default_fleets_are_fast_and_the_bench_fleet_is_big_and_calm() -> None:
    t0 = time.perf_counter()
    month = small_fleet(2, START, days=30)
    t_month = time.perf_counter() - t0
    assert 16 <= len(month.gpus) <= 24
    del month
    t0 = time.perf_counter()
    bench = bench_fleet(2, START, days=7, gpus=256)
    t_bench = time.perf_counter() - t0
    assert t_month < 20 and t_bench < 45, (t_month, t_bench)
    assert len(bench.gpus) == 256 and bench.sample_count >= 10_000_000
    assert 1 <= sum(1 for g in bench.gpus if g.mig) <= 12
    assert len(bench.targets) == len(bench.nodes) and not bench.events
    hours = sorted((a.end_ms - a.start_ms) / 3.6e6 for a in bench.assignments)
    assert hours[len(hours) // 2] >= 24


def test_a_fleet_streamed_a_day_at_a_time_has_exactly_its_samples() -> None:
    """series_between slices (for fleets too large to hold) add up to fleet.series."""
    from simulator import bench_fleet, series_between

    whole = bench_fleet(seed=3, days=2.5, gpus=16)
    lean = bench_fleet(seed=3, days=2.5, gpus=16, with_series=False)
    assert lean.series == [] and lean.jobs == whole.jobs
    day = 86_400_000
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for lo in range(whole.spec.start_ms, whole.spec.end_ms, day):
        for s in series_between(lean, lo, lo + day):
            assert ((s.ts_ms >= lo) & (s.ts_ms < lo + day)).all()
            parts.setdefault(s.key(), []).append((s.ts_ms, s.values))
    assert sorted(parts) == sorted(s.key() for s in whole.series)
    for s in whole.series:
        ts = np.concatenate([t for t, _ in parts[s.key()]])
        vs = np.concatenate([v for _, v in parts[s.key()]])
        assert np.array_equal(ts, s.ts_ms) and np.array_equal(vs, s.values, equal_nan=True)
