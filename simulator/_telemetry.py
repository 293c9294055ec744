"""Readings and series: per-slot values, exact energy counters, samples per scrape target.

Per unit (whole GPU or MIG instance) one reading per slot; per physical GPU one power per
slot and the running counter; per scrape target one array of sample times. A series is
then a slice of those arrays (a read-only view whenever its samples are contiguous), so a
month of a small fleet costs little more memory than its samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from metering.samples import ENERGY, GR_ACTIVE, UTIL, Series
from simulator import _catalog as cat
from simulator.model import FleetSpec, GpuInfo, MigInstance, NodeInfo, Target

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Rng = np.random.Generator


@dataclass(frozen=True)
class Grid:
    """Epoch-aligned slots covering [start_ms, end_ms)."""

    start_ms: int
    end_ms: int
    interval_ms: int

    @property
    def k0(self) -> int:
        return self.start_ms // self.interval_ms

    @property
    def n(self) -> int:
        return -(-self.end_ms // self.interval_ms) - self.k0

    def slot_of(self, t_ms: I64) -> I64:
        out: I64 = np.clip(t_ms // self.interval_ms - self.k0, 0, self.n - 1)
        return out


@dataclass(eq=False)
class UnitState:
    """A whole GPU or one MIG instance: its mapping-file history and per-slot readings."""

    gpu: GpuInfo
    mig: MigInstance | None
    starts: I64  # interval starts (first one is -2**62)
    jobs: list[tuple[str, ...]]  # job ids held in each interval
    activity: list[float]  # mean activity per interval
    util: F64 = field(default_factory=lambda: np.empty(0))  # % per slot (whole GPU), NaN possible
    gr: F64 = field(default_factory=lambda: np.empty(0))  # ratio per slot

    def jobs_at(self, t_ms: int) -> tuple[str, ...]:
        return self.jobs[int(np.searchsorted(self.starts, t_ms, side="right")) - 1]


@dataclass(eq=False)
class GpuState:
    info: GpuInfo
    units: list[UnitState]
    grid: Grid
    power_w: F64 = field(default_factory=lambda: np.empty(0))  # per slot
    cum_mj: F64 = field(default_factory=lambda: np.empty(0))  # raw counter at each slot start
    reset_ms: I64 = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    reset_to_mj: F64 = field(default_factory=lambda: np.empty(0))

    def _raw(self, t_ms: I64) -> F64:
        k = self.grid.slot_of(t_ms)
        since = (t_ms - (k + self.grid.k0) * self.grid.interval_ms).astype(np.float64)
        out: F64 = self.cum_mj[k] + self.power_w[k] * since  # W x ms = mJ
        return out

    def energy(self, t_ms: I64) -> F64:
        """The exporter's counter (mJ, integer-valued) at each time in ``t_ms``."""
        raw = self._raw(t_ms)
        if len(self.reset_ms):
            j = np.searchsorted(self.reset_ms, t_ms, side="right") - 1
            at_reset = self.reset_to_mj - self._raw(self.reset_ms)
            raw = raw + np.where(j >= 0, at_reset[np.maximum(j, 0)], 0.0)
        out: F64 = np.floor(raw)
        return out


@dataclass(eq=False)
class NodeState:
    info: NodeInfo
    driver: str
    ip: str
    gpus: list[GpuState]
    zero_idle: bool
    targets: list[Target] = field(default_factory=list)
    down: list[tuple[int, int]] = field(default_factory=list)  # merged outage intervals
    upgrade_ms: int | None = None

    @property
    def units(self) -> list[UnitState]:
        return [u for g in self.gpus for u in g.units]

    def is_down(self, t_ms: int) -> bool:
        return any(a <= t_ms < b for a, b in self.down)

    def host_label(self, t_ms: int) -> str:
        return "hostname" if self.upgrade_ms is not None and t_ms >= self.upgrade_ms else "Hostname"


def readings(spec: FleetSpec, rng: Rng, nan_rng: Rng, energy_rng: Rng, nodes: list[NodeState], grid: Grid) -> None:
    slot_start = (np.arange(grid.n, dtype=np.int64) + grid.k0) * grid.interval_ms
    nan_count = 0
    for node in nodes:
        for gpu in node.gpus:
            model = cat.MODELS[gpu.info.model]
            load = np.zeros(grid.n)
            for unit in gpu.units:
                iv = np.searchsorted(unit.starts, slot_start, side="right") - 1
                mean = np.asarray(unit.activity)[iv]
                busy = mean > 0
                act = np.where(busy, np.clip(mean + rng.normal(0.0, 0.06, grid.n), 0.01, 1.0), 0.0)
                gr = np.where(busy, np.round(np.clip(act * 0.96 + rng.normal(0.0, 0.015, grid.n), 0.0, 1.0), 6), 0.0)
                share = 1.0 if unit.mig is None else unit.mig.slices / (model.mig_slices or 7)
                load += act * share
                nans = int(nan_rng.binomial(grid.n, spec.traps.nan_util)) if spec.traps.nan_util > 0 else 0
                where = nan_rng.integers(0, grid.n, nans)
                nan_count += nans
                if unit.mig is None:
                    unit.util = np.rint(act * 100.0)
                    unit.util[where] = np.nan
                else:
                    gr[where] = np.nan
                unit.gr = gr
            power = model.idle_w + (model.tdp_w - model.idle_w) * np.minimum(load, 1.0)
            power = np.maximum(power + rng.normal(0.0, model.tdp_w * 0.01, grid.n), model.idle_w * 0.8)
            gpu.power_w = np.round(power, 3)
            e0 = np.floor(energy_rng.uniform(2e11, 2e12))
            steps = gpu.power_w * float(grid.interval_ms)
            gpu.cum_mj = e0 + np.concatenate(([0.0], np.cumsum(steps)[:-1]))
    if spec.traps.nan_util > 0 and nan_count == 0:
        # Promised at least once: a NaN reading on a busy whole GPU (or MIG instance).
        for unit in (u for n in nodes for u in n.units):
            arr = unit.util if unit.mig is None else unit.gr
            held = np.flatnonzero(arr > 0)
            if len(held):
                arr[int(held[len(held) // 2])] = np.nan
                break
    for node in nodes:
        for unit in node.units:
            unit.util.setflags(write=False)
            unit.gr.setflags(write=False)


# ---------------------------------------------------------------- series


def _sample_times(
    spec: FleetSpec, rng: Rng, node: NodeState, target: Target, grid: Grid, window: tuple[int, int] | None
) -> tuple[I64, I64]:
    """Sample times of one target (ms) and their slot indices (only those in ``window``, if given)."""
    k = np.arange(grid.n, dtype=np.int64)
    t = (k + grid.k0) * grid.interval_ms + target.phase_ms
    if spec.jitter_ms:
        t = t + rng.integers(0, spec.jitter_ms + 1, grid.n)
    lo, hi = window or (grid.start_ms, grid.end_ms)
    keep = (t >= max(lo, grid.start_ms)) & (t < min(hi, grid.end_ms))
    for a, b in node.down:
        keep &= (t < a) | (t >= b)
    ts: I64 = t[keep]
    ks: I64 = k[keep]
    return ts, ks


def _ro(a: npt.NDArray[np.generic]) -> None:
    a.setflags(write=False)


def emit(
    spec: FleetSpec, rng: Rng, nodes: list[NodeState], grid: Grid, window: tuple[int, int] | None = None
) -> list[Series]:
    """The series of every target; with ``window`` = [start, end) only the samples in it."""
    label = spec.job_label
    out: list[Series] = []
    for node in nodes:
        for target in node.targets:
            ts, ks = _sample_times(spec, rng, node, target, grid, window)
            _ro(ts)
            up = len(ts) if node.upgrade_ms is None else int(np.searchsorted(ts, node.upgrade_ms))
            energy: dict[int, F64] = {}
            for gpu in node.gpus:
                e = gpu.energy(ts)
                _ro(e)
                energy[gpu.info.gpu] = e
            for gpu in node.gpus:
                for unit in gpu.units:
                    values: dict[str, F64] = {}
                    if unit.mig is None:
                        values[UTIL] = unit.util[ks]
                        if spec.whole_gpu_gr_active:
                            values[GR_ACTIVE] = unit.gr[ks]
                    else:
                        values[GR_ACTIVE] = unit.gr[ks]
                    values[ENERGY] = energy[gpu.info.gpu]
                    for v in values.values():
                        _ro(v)
                    bounds = np.searchsorted(ts, unit.starts[1:])
                    edges = [0, *(int(b) for b in bounds), len(ts)]
                    ranges: dict[tuple[str | None, str], list[tuple[int, int]]] = {}
                    for i, held in enumerate(unit.jobs):
                        lo, hi = edges[i], edges[i + 1]
                        if lo >= hi:
                            continue
                        names: tuple[str | None, ...] = held or (("0",) if node.zero_idle else (None,))
                        parts = [(lo, min(hi, up), "Hostname"), (max(lo, up), hi, "hostname")]
                        for name in names:
                            for a, b, host_key in parts:
                                if a < b:
                                    ranges.setdefault((name, host_key), []).append((a, b))
                    for (name, host_key), spans in ranges.items():
                        labels = _labels(node, unit, host_key, label, name, target)
                        if len(spans) == 1:
                            a, b = spans[0]
                            t_sel = ts[a:b]
                            picked = {m: v[a:b] for m, v in values.items()}
                        else:
                            idx = np.concatenate([np.arange(a, b) for a, b in spans])
                            t_sel = ts[idx]
                            _ro(t_sel)
                            picked = {m: v[idx] for m, v in values.items()}
                            for v in picked.values():
                                _ro(v)
                        for metric, v in picked.items():
                            out.append(Series({"__name__": metric, **labels}, t_sel, v))
    return out


def _labels(
    node: NodeState, unit: UnitState, host_key: str, job_label: str, job: str | None, target: Target | None
) -> dict[str, str]:
    g = unit.gpu
    labels = {
        "gpu": str(g.gpu),
        "UUID": g.uuid,
        "pci_bus_id": g.pci_bus_id,
        "device": f"nvidia{g.gpu}",
        "modelName": g.model,
    }
    if unit.mig is not None:
        labels["GPU_I_PROFILE"] = unit.mig.profile
        labels["GPU_I_ID"] = str(unit.mig.gpu_i_id)
    labels[host_key] = node.info.hostname
    labels["DCGM_FI_DRIVER_VERSION"] = node.driver
    if job is not None:
        labels[job_label] = job
    if target is not None:
        labels["job"] = target.job
        labels["instance"] = target.instance
        if target.replica is not None:
            labels["replica"] = target.replica
    return labels


def exporter_labels(node: NodeState, unit: UnitState, host_key: str, job_label: str, job: str | None) -> dict[str, str]:
    """Labels as the exporter prints them (no Prometheus target labels)."""
    return _labels(node, unit, host_key, job_label, job, None)
