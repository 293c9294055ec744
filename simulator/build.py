"""A deterministic synthetic DCGM fleet: what dcgm-exporter would have shown Prometheus.

:func:`simulate` turns a :class:`FleetSpec` into a :class:`Fleet`: the raw series
(``metering.samples.Series``, labels exactly as dcgm-exporter and Prometheus attach them)
and the ground truth behind them — the inventory (nodes, storage, jobs, tenants, rates),
the GPUs, every job placement and every exporter event.

How the telemetry is made (and why):

- Time is a grid of scrape-interval slots aligned to the Unix epoch. A scrape target
  (one Prometheus job on one exporter, or one HA replica) samples once per slot at its own
  phase (0 with ``epoch_aligned``, the way backfilled data usually is; otherwise a seeded
  offset in ms). Secondary targets sit a few seconds after the primary one.
- Each GPU, or MIG instance, has a mapping-file history: the job ids its ``hpc_job`` file
  holds over time (several for time-sliced sharing, none or ``"0"`` when idle). A sample
  at time t carries the jobs of the file at t; N jobs give N copies with identical values.
- Utilisation is per slot: every target sampling in a slot reads the same value (the
  exporter serves DCGM's latest reading). ``DCGM_FI_DEV_GPU_UTIL`` (integer %) exists on
  whole GPUs only; ``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` (0..1) on MIG instances and, with
  ``whole_gpu_gr_active``, on whole GPUs too.
- Energy integrates a piecewise-constant power (watts per slot) exactly: the counter at
  time t is the millijoules since the driver loaded, floored to an integer, so it never
  decreases except at a simulated driver reload, where it restarts from a small value.
  On a MIG GPU every instance series repeats the parent's counter.

Each concern draws from its own ``numpy.random.Generator`` stream spawned from the seed,
and draws the same numbers whether its trap is on or off, so switching a telemetry trap
(outages, restarts, upgrade, second scrape job, HA pair, zero-idle, NaN) off changes
nothing else in the fleet. Job-shaping traps (sharing, MIG mixing, odd ids, requeues,
unlisted jobs) change job ids or placements by nature.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from gpumeter.countries import EU27
from metering.samples import Series
from simulator import _catalog as cat
from simulator._schedule import Placement, schedule_group, share_overlays, unit_intervals
from simulator._telemetry import GpuState, Grid, NodeState, Rng, UnitState, emit, readings
from simulator.fleet import Fleet
from simulator.model import (
    DEMO_START,
    Assignment,
    Event,
    FleetSpec,
    GpuInfo,
    JobInfo,
    MigInstance,
    NodeInfo,
    RateInfo,
    StorageInfo,
    Target,
    TenantInfo,
    Traps,
    bench_spec,
    small_spec,
)

_MINUTE_MS = 60_000
_STREAMS = (
    "layout",
    "targets",
    "outages",
    "restarts",
    "upgrades",
    "schedule",
    "share",
    "ids",
    "inventory",
    "activity",
    "nan",
    "energy",
    "jitter",
)


def _pick(rng: Rng, n: int, share: float) -> list[bool]:
    """Each of n items with probability ``share``; at least one when share > 0.

    Draws the same numbers whatever ``share`` is.
    """
    draws = rng.random(n)
    fallback = int(rng.integers(n)) if n else 0
    picked = [bool(x) for x in draws < share]
    if share > 0 and n and not any(picked):
        picked[fallback] = True
    return picked


def _uuid(rng: Rng) -> str:
    h = rng.bytes(16).hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ---------------------------------------------------------------- layout


def _layout(spec: FleetSpec, rng: Rng, grid: Grid) -> list[NodeState]:
    sites = {s.name: s for s in cat.SITES}
    sizes: list[int] = []
    while sum(sizes) < spec.gpus:
        sizes.append(min(spec.node_sizes[len(sizes) % len(spec.node_sizes)], spec.gpus - sum(sizes)))
    per_site: dict[str, int] = {}
    proto: list[tuple[NodeInfo, str, int, str]] = []
    for i, size in enumerate(sizes):
        site = sites[cat.SITE_CYCLE[i % len(cat.SITE_CYCLE)]]
        seq = per_site[site.name] = per_site.get(site.name, 0) + 1
        host = f"{site.name}-gpu{seq:02d}"
        proto.append((NodeInfo(host, site.name, site.country, site.provider), cat.MODEL_CYCLE[i % 4], size, site.name))
    # MIG mode: per MIG-capable model, a share of its GPUs (at least one when the share > 0).
    slots_by_model: dict[str, list[tuple[int, int]]] = {}
    for i, (_, model, size, _) in enumerate(proto):
        if cat.MODELS[model].mig_slices:
            slots_by_model.setdefault(model, []).extend((i, g) for g in range(size))
    mig_at: dict[tuple[int, int], tuple[tuple[str, int], ...]] = {}
    for model, places in slots_by_model.items():
        if spec.mig_fraction <= 0:
            continue
        k = max(1, round(spec.mig_fraction * len(places)))
        chosen = sorted(int(x) for x in rng.choice(len(places), size=min(k, len(places)), replace=False))
        layouts = cat.MODELS[model].mig_layouts
        offset = int(rng.integers(len(layouts)))
        for j, c in enumerate(chosen):
            mig_at[places[c]] = layouts[(offset + j) % len(layouts)]
    nodes: list[NodeState] = []
    for i, (info, model, size, site_name) in enumerate(proto):
        site = sites[site_name]
        seq = int(info.hostname.rsplit("gpu", 1)[1])
        gpus: list[GpuState] = []
        for g in range(size):
            mig = tuple(MigInstance(gi, prof) for prof, gi in mig_at.get((i, g), ()))
            gi = GpuInfo(info.hostname, g, _uuid(rng), f"00000000:{cat.PCI_BUSES[g]:02X}:00.0", model, mig)
            units = [UnitState(gi, m, np.empty(0, np.int64), [], []) for m in mig] or [
                UnitState(gi, None, np.empty(0, np.int64), [], [])
            ]
            gpus.append(GpuState(gi, units, grid))
        nodes.append(
            NodeState(
                info,
                cat.DRIVERS[int(rng.integers(len(cat.DRIVERS)))],
                f"10.{site.subnet}.{seq // 200}.{10 + seq % 200}",
                gpus,
                zero_idle=False,
            )
        )
    return nodes


def _targets(spec: FleetSpec, rng: Rng, nodes: list[NodeState]) -> None:
    span = spec.interval_ms - spec.jitter_ms  # phases stay below the slot end minus the jitter
    second = _pick(rng, len(nodes), spec.traps.second_scrape_job)
    ha = _pick(rng, len(nodes), spec.traps.ha_pair)
    zero = _pick(rng, len(nodes), spec.traps.zero_idle_nodes)
    replica_a = "prom-a" if any(ha) else None
    for node, sec, pair, z in zip(nodes, second, ha, zero, strict=True):
        node.zero_idle = z
        drawn = rng.integers(0, span)
        # Secondary loops sit a few seconds after the loop they duplicate, wrapped into the slot.
        shifts = rng.integers(1000, 7000, 3)
        primary = 0 if spec.epoch_aligned else int(drawn)
        loops = [("dcgm-exporter", f"{node.ip}:9400", primary)]
        if sec:
            loops.append(("gpu-nodes", f"{node.info.hostname}:9400", (primary + int(shifts[0])) % span))
        for job, instance, phase in loops:
            node.targets.append(Target(node.info.hostname, job, instance, replica_a, phase))
        if pair:
            for k, (job, instance, phase) in enumerate(loops):
                node.targets.append(
                    Target(node.info.hostname, job, instance, "prom-b", (phase + int(shifts[1 + k])) % span)
                )


def _place(rng: Rng, spec: FleetSpec, dur: int) -> tuple[int, int]:
    """A stretch of ``dur`` ms inside the period, clear of its first and last minutes."""
    start, end = spec.start_ms, spec.end_ms
    length = end - start
    margin = min(10 * _MINUTE_MS, length // 10)
    dur = max(1000, min(dur, length - 2 * margin))
    lo, hi = start + margin, end - margin - dur
    a = (int(rng.integers(lo, hi + 1)) if hi > lo else lo) // 1000 * 1000
    return a, min(end, a + dur)


def _events(spec: FleetSpec, rngs: dict[str, Rng], nodes: list[NodeState]) -> list[Event]:
    traps = spec.traps
    events: list[Event] = []
    n = len(nodes)
    out_rng, rst_rng, upg_rng = rngs["outages"], rngs["restarts"], rngs["upgrades"]
    outages = out_rng.poisson(traps.outages_per_node_day * spec.days, n)
    forced = int(out_rng.integers(n))
    if traps.outages_per_node_day > 0 and outages.sum() == 0:
        outages[forced] = 1
    restarts = rst_rng.poisson(traps.restarts_per_node_day * spec.days, n)
    forced = int(rst_rng.integers(n))
    if traps.restarts_per_node_day > 0 and restarts.sum() == 0:
        restarts[forced] = 1
    upgraded = _pick(upg_rng, n, traps.upgrade_nodes if traps.upgrade_at is not None else 0.0)
    lo_min, hi_min = traps.outage_minutes
    for i, node in enumerate(nodes):
        host = node.info.hostname
        down: list[tuple[int, int]] = []
        for _ in range(int(outages[i])):
            a, b = _place(out_rng, spec, int(out_rng.uniform(lo_min, hi_min) * 60) * 1000)
            down.append((a, b))
            events.append(Event(host, "outage", a, b))
        resets: list[int] = []
        for _ in range(int(restarts[i])):
            a, b = _place(rst_rng, spec, int(rst_rng.integers(30, 150)) * 1000)
            down.append((a, b))
            resets.append(a)
            events.append(Event(host, "restart", a, b))
        merged: list[tuple[int, int]] = []
        for a, b in sorted(down):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        node.down = merged
        resets.sort()
        for gpu in node.gpus:
            gpu.reset_ms = np.array(resets, dtype=np.int64)
            gpu.reset_to_mj = np.floor(rst_rng.uniform(2e5, 5e6, len(resets)))
        if upgraded[i] and traps.upgrade_at is not None:
            at = spec.start_ms + int(traps.upgrade_at * (spec.end_ms - spec.start_ms)) // 1000 * 1000 + i * 90_000
            if at < spec.end_ms:
                node.upgrade_ms = at
                events.append(Event(host, "upgrade", at, at))
    return events


# ---------------------------------------------------------------- jobs


def _schedule(spec: FleetSpec, rng: Rng, share_rng: Rng, nodes: list[NodeState]) -> list[Placement]:
    out: list[Placement] = []
    for ni, node in enumerate(nodes):
        index = {id(u): k for k, u in enumerate(node.units)}
        whole = [index[id(g.units[0])] for g in node.gpus if not g.info.mig]
        groups: list[tuple[list[int], bool]] = [(whole, False)] if whole else []
        for g in node.gpus:
            if g.info.mig:
                members = [index[id(u)] for u in g.units]
                if spec.traps.mig_mixed_jobs:
                    groups.extend(([m], False) for m in members)
                else:
                    groups.append((members, True))
        for members, together in groups:
            out.extend(
                schedule_group(
                    rng,
                    node=ni,
                    units=members,
                    start_ms=spec.start_ms,
                    end_ms=spec.end_ms,
                    mix=spec.jobs,
                    together=together,
                )
            )
    # Time-slicing: extra jobs on single whole-GPU placements.
    if spec.traps.shared_gpu > 0:
        eligible = [
            p
            for p in out
            if len(p.units) == 1
            and nodes[p.node].units[p.units[0]].mig is None
            and p.start_ms >= spec.start_ms
            and p.end_ms <= spec.end_ms
        ] or [p for p in out if len(p.units) == 1 and nodes[p.node].units[p.units[0]].mig is None]
        extra: list[Placement] = []
        for p in eligible:
            if share_rng.random() < spec.traps.shared_gpu:
                extra.extend(share_overlays(share_rng, p))
        if not extra and eligible:
            longest = max(eligible, key=lambda p: p.end_ms - p.start_ms)
            extra.extend(share_overlays(share_rng, longest))
        out.extend(extra)
    out.sort(key=lambda p: (p.start_ms, p.node, p.units, p.overlay))
    return out


def _name_jobs(spec: FleetSpec, rng: Rng, nodes: list[NodeState], placements: list[Placement]) -> tuple[str, ...]:
    """Slurm-like increasing ids, then the odd ids, requeues and unlisted jobs.

    Returns the unlisted job ids.
    """
    n = 4_800_000 + int(rng.integers(0, 100_000))
    for p in placements:
        n += int(rng.integers(1, 40))
        p.job_id = str(n)
    traps = spec.traps
    plain = [p for p in placements if not p.overlay]
    special: set[int] = set()
    if traps.odd_job_ids and plain:
        for k, template in enumerate(cat.ODD_JOB_IDS):
            p = plain[min(len(plain) - 1, (k + 1) * len(plain) // (len(cat.ODD_JOB_IDS) + 1))]
            if id(p) in special:
                continue
            p.job_id = template.format(n=p.job_id)
            special.add(id(p))

    def eu(p: Placement) -> bool:
        return nodes[p.node].info.country in EU27

    in_window = [p for p in plain if id(p) not in special and p.start_ms < spec.end_ms and p.end_ms > spec.start_ms]
    for r in range(traps.requeues):
        firsts = [p for p in in_window if (not eu(p)) == (r == 0) and p.end_ms < spec.end_ms - 3_600_000]
        for a in firsts:
            later = [
                b
                for b in in_window
                if b.node != a.node and eu(b) and b.start_ms >= a.end_ms + 10 * _MINUTE_MS and id(b) not in special
            ]
            if later:
                b = later[0]
                b.job_id = a.job_id
                special.update((id(a), id(b)))
                break
    unlisted: list[str] = []
    candidates = [p for p in in_window if id(p) not in special]
    for k in range(min(traps.unlisted_jobs, len(candidates))):
        p = candidates[(2 * k + 1) * len(candidates) // (2 * traps.unlisted_jobs + 1)]
        unlisted.append(p.job_id)
        special.add(id(p))
    return tuple(unlisted)


def _inventory(
    spec: FleetSpec, rng: Rng, nodes: list[NodeState], placements: list[Placement], unlisted: tuple[str, ...]
) -> tuple[list[JobInfo], list[StorageInfo], list[TenantInfo]]:
    sites = {s.name: s for s in cat.SITES}
    storage = [StorageInfo(loc, s.country) for s in cat.SITES for loc in s.storage]
    storage += [StorageInfo(loc, c) for loc, c in cat.EXTRA_STORAGE]
    tenants = [TenantInfo(t.tenant, t.legal_name, t.country, t.vat_id, t.email, t.address) for t in cat.TENANTS]
    weights = np.array([t.weight for t in cat.TENANTS])
    weights = weights / weights.sum()
    eu_sites = [s for s in cat.SITES if s.country in EU27]
    first_node: dict[str, int] = {}
    for p in placements:
        first_node.setdefault(p.job_id, p.node)
    jobs: list[JobInfo] = []
    foreign_done = False
    for job_id, ni in first_node.items():
        t = cat.TENANTS[int(rng.choice(len(cat.TENANTS), p=weights))]
        project = t.projects[int(rng.integers(len(t.projects)))]
        site = sites[nodes[ni].info.site]
        roots = [site.storage[int(rng.integers(len(site.storage)))]]
        if rng.random() < 0.3:
            other = eu_sites[int(rng.integers(len(eu_sites)))]
            roots.append(other.storage[0])
        if rng.random() < spec.foreign_data:
            roots.append(cat.FOREIGN_DATA[int(rng.integers(len(cat.FOREIGN_DATA)))])
            foreign_done = foreign_done or (nodes[ni].info.country in EU27 and job_id not in unlisted)
        locations = tuple(dict.fromkeys(f"{r}/{t.tenant}/{project}" for r in roots))
        if job_id not in unlisted:
            jobs.append(JobInfo(job_id, t.tenant, project, locations))
    if spec.foreign_data > 0 and not foreign_done:
        # Promised at least once: a job on an EU node that reads from a non-EU bucket.
        for k, j in enumerate(jobs):
            if nodes[first_node[j.job_id]].info.country in EU27:
                extra = f"{cat.FOREIGN_DATA[0]}/{j.tenant}/{j.project}"
                jobs[k] = JobInfo(j.job_id, j.tenant, j.project, (*j.data_locations, extra))
                break
    return jobs, storage, tenants


def _assign(nodes: list[NodeState], placements: list[Placement]) -> list[Assignment]:
    by_unit: dict[tuple[int, int], list[Placement]] = {}
    out: list[Assignment] = []
    overlays = [o for o in placements if o.overlay]
    shared_bases = {
        id(p)
        for p in placements
        if not p.overlay
        and any(
            o.node == p.node and o.units == p.units and o.start_ms < p.end_ms and p.start_ms < o.end_ms
            for o in overlays
        )
    }
    for p in placements:
        for u in p.units:
            by_unit.setdefault((p.node, u), []).append(p)
            unit = nodes[p.node].units[u]
            out.append(
                Assignment(
                    unit.gpu.hostname,
                    unit.gpu.uuid,
                    str(unit.mig.gpu_i_id) if unit.mig else "",
                    unit.mig.profile if unit.mig else None,
                    unit.gpu.model,
                    p.job_id,
                    p.start_ms,
                    p.end_ms,
                    p.overlay or id(p) in shared_bases,
                )
            )
    for ni, node in enumerate(nodes):
        for k, unit in enumerate(node.units):
            starts, jobs, act = unit_intervals(by_unit.get((ni, k), []))
            unit.starts = np.array(starts, dtype=np.int64)
            unit.jobs = jobs
            unit.activity = act
    return out


# ---------------------------------------------------------------- all together


def build(spec: FleetSpec, *, with_series: bool = True) -> Fleet:
    streams = dict(zip(_STREAMS, np.random.SeedSequence(spec.seed).spawn(len(_STREAMS)), strict=True))
    rngs = {k: np.random.default_rng(s) for k, s in streams.items()}
    grid = Grid(spec.start_ms, spec.end_ms, spec.interval_ms)
    nodes = _layout(spec, rngs["layout"], grid)
    _targets(spec, rngs["targets"], nodes)
    events = _events(spec, rngs, nodes)
    placements = _schedule(spec, rngs["schedule"], rngs["share"], nodes)
    unlisted = _name_jobs(spec, rngs["ids"], nodes, placements)
    jobs, storage, tenants = _inventory(spec, rngs["inventory"], nodes, placements, unlisted)
    assignments = _assign(nodes, placements)
    readings(spec, rngs["activity"], rngs["nan"], rngs["energy"], nodes, grid)
    series = emit(spec, rngs["jitter"], nodes, grid) if with_series else []
    models = sorted({g.info.model for n in nodes for g in n.gpus}, key=cat.MODEL_CYCLE.index)
    rates = [
        RateInfo(m, cat.MODELS[m].eur_per_gpu_hour, cat.MODELS[m].mig_slices if "A30" in m else None) for m in models
    ]
    return Fleet(
        spec=spec,
        series=series,
        nodes=[n.info for n in nodes],
        storage=storage,
        jobs=jobs,
        tenants=tenants,
        rates=rates,
        gpus=[g.info for n in nodes for g in n.gpus],
        assignments=assignments,
        targets=[t for n in nodes for t in n.targets],
        events=sorted(events, key=lambda e: (e.start_ms, e.hostname, e.kind)),
        unlisted_job_ids=unlisted,
        state=nodes,
    )


def simulate(spec: FleetSpec, *, with_series: bool = True) -> Fleet:
    """The fleet ``spec`` describes; pure and deterministic in ``spec``.

    ``with_series=False`` leaves ``fleet.series`` empty: a fleet too large to hold every
    sample at once is then streamed with :func:`series_between`, a slice at a time.
    """
    return build(spec, with_series=with_series)


def series_between(fleet: Fleet, start_ms: int, end_ms: int) -> list[Series]:
    """The fleet's series restricted to samples in [start_ms, end_ms): the same samples,
    slice by slice, as ``fleet.series`` holds whole (for a spec without scrape jitter)."""
    spec = fleet.spec
    if spec.jitter_ms:
        raise ValueError("series_between needs a spec without jitter (jitter is drawn over the whole span)")
    nodes = list(fleet.state)
    grid = Grid(spec.start_ms, spec.end_ms, spec.interval_ms)
    return emit(spec, np.random.default_rng(0), nodes, grid, (start_ms, end_ms))


def small_fleet(
    seed: int = 1, start: datetime = DEMO_START, days: float = 30.0, *, traps: Traps | None = None
) -> Fleet:
    return simulate(small_spec(seed, start, days, traps=traps))


def bench_fleet(
    seed: int = 1, start: datetime = DEMO_START, days: float = 7.0, gpus: int = 256, *, with_series: bool = True
) -> Fleet:
    return simulate(bench_spec(seed, start, days, gpus), with_series=with_series)
