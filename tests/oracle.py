"""A plain, slow, obviously-correct reading of the metering rules (docs/metering.md).

Written apart from ``metering.semantics`` (dicts and exact Fractions instead of polars
frames) so that tests can hold both the polars rules and the PromQL path against it.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from metering.samples import ENERGY, GR_ACTIVE, UTIL, Series

HOUR = 3_600_000


@dataclass(frozen=True)
class Row:
    gpu_ns: int
    busy_ns: int
    energy_uj: int
    hosts: tuple[str, ...]
    model: str
    profile: str | None


Key = tuple[int, str, str, str]  # window_ms, job, uuid, gpu_i_id


def _half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _slices(profile: str | None) -> int | None:
    if not profile:
        return None
    m = re.search(r"(?:^|\.)(\d+)g\.", profile)
    return int(m.group(1)) if m else None


def reference(
    series: Iterable[Series],
    *,
    start_ms: int,
    end_ms: int,
    interval_ms: int,
    job_label: str = "hpc_job",
    idle: tuple[str, ...] = ("", "0"),
    mig_slices: Callable[[str], int] = lambda m: 4 if "A30" in m else 7,
) -> dict[Key, Row]:
    S = interval_ms
    slot_ns = S * 1_000_000
    # (uuid, gi, slot) -> job -> (ts, key, metric, value); hosts, model, profile on the side
    holds: dict[tuple[str, str, int], dict[str, tuple[int, str, str, float]]] = defaultdict(dict)
    hosts: dict[Key, set[str]] = defaultdict(set)
    meta: dict[tuple[str, str], tuple[str, str | None]] = {}
    energy: dict[str, dict[int, tuple[int, str, float]]] = defaultdict(dict)
    for s in series:
        lab = dict(s.labels)
        name = lab["__name__"]
        uuid = lab.get("UUID") or lab.get("uuid") or ""
        gi = lab.get("GPU_I_ID", "")
        host = lab.get("hostname") or lab.get("Hostname") or ""
        job = lab.get(job_label)
        if job in idle:
            job = None
        key = ",".join(f"{k}={v}" for k, v in sorted(lab.items()))
        for ts, v in zip(s.ts_ms.tolist(), s.values.tolist(), strict=True):
            slot = ts // S
            if name == ENERGY and ts < end_ms:
                cur = energy[uuid].get(slot)
                if cur is None or (ts, key) < (cur[0], cur[1]):
                    energy[uuid][slot] = (ts, key, v)
            evidence = (name == UTIL and gi == "") or (name == GR_ACTIVE and gi != "")
            if not evidence or job is None or not (start_ms <= ts < end_ms):
                continue
            w = (slot * S) // HOUR * HOUR
            cur2 = holds[(uuid, gi, slot)].get(job)
            if cur2 is None or (ts, key) < (cur2[0], cur2[1]):
                holds[(uuid, gi, slot)][job] = (ts, key, name, v)
            hosts[(w, job, uuid, gi)].add(host)
            meta.setdefault((uuid, gi), (lab.get("modelName", ""), lab.get("GPU_I_PROFILE") or None))

    gpu: dict[Key, Fraction] = defaultdict(Fraction)
    busy: dict[Key, Fraction] = defaultdict(Fraction)
    en: dict[Key, Fraction] = defaultdict(Fraction)
    for (uuid, gi, slot), jobs in holds.items():
        n = len(jobs)
        w = (slot * S) // HOUR * HOUR
        for job, (_, _, name, v) in jobs.items():
            k = (w, job, uuid, gi)
            gpu[k] += Fraction(slot_ns, n)
            if not math.isnan(v):
                ratio = Fraction(v) / 100 if name == UTIL else Fraction(v)
                busy[k] += ratio * slot_ns / n
    for uuid, per_slot in energy.items():
        prev: float | None = None
        for slot in sorted(per_slot):
            v = per_slot[slot][2]
            if prev is not None and slot * S >= start_ms and not math.isnan(v) and not math.isnan(prev):
                inc = Fraction(v) if v < prev else Fraction(v) - Fraction(prev)
                inc_uj = inc * 1000
                for gi_job_holders in [(gi, jobs) for (u, gi, sl), jobs in holds.items() if u == uuid and sl == slot]:
                    gi, jobs = gi_job_holders
                    model, profile = meta[(uuid, gi)]
                    k_sl = _slices(profile) if gi != "" else None
                    frac = Fraction(1) if k_sl is None else Fraction(k_sl, mig_slices(model))
                    for job in jobs:
                        en[((slot * S) // HOUR * HOUR, job, uuid, gi)] += inc_uj * frac / len(jobs)
            prev = v
    out: dict[Key, Row] = {}
    for k in gpu:
        model, profile = meta[(k[2], k[3])]
        out[k] = Row(_half_up(gpu[k]), round(busy[k]), _half_up(en[k]), tuple(sorted(hosts[k])), model, profile)
    return out


def from_frame(rows: Iterable[tuple[object, ...]]) -> dict[Key, Row]:
    """Usage rows (window_ms, job_id, uuid, gpu_i_id, mig_profile, gpu_model, hosts, gpu_ns, busy_ns, energy_uj)."""
    out: dict[Key, Row] = {}
    for w, job, uuid, gi, profile, model, hosts, g, b, e in rows:
        out[(int(w), str(job), str(uuid), str(gi))] = Row(  # type: ignore[call-overload]
            int(g),
            int(b),
            int(e),
            tuple(hosts),
            str(model),
            profile,  # type: ignore[arg-type]
        )
    return out


def assert_same(got: dict[Key, Row], want: dict[Key, Row], *, busy_tolerance_ns: int = 1) -> None:
    """Equal keys, held time and energy exactly, busy time within float summation noise."""
    assert sorted(got) == sorted(want), (
        f"rows differ: only got {sorted(set(got) - set(want))[:5]}, only want {sorted(set(want) - set(got))[:5]}"
    )
    for k in want:
        g, w = got[k], want[k]
        assert (g.gpu_ns, g.energy_uj, g.hosts, g.model, g.profile) == (
            w.gpu_ns,
            w.energy_uj,
            w.hosts,
            w.model,
            w.profile,
        ), (k, g, w)
        assert abs(g.busy_ns - w.busy_ns) <= busy_tolerance_ns, (k, g.busy_ns, w.busy_ns)


def without_nan(series: list[Series]) -> list[Series]:
    """The series as VictoriaMetrics holds them: it drops NaN samples at ingestion."""
    out = []
    for s in series:
        keep = ~np.isnan(s.values)
        if keep.any():
            out.append(Series(s.labels, s.ts_ms[keep], s.values[keep]))
    return out


def stored_rows(con):  # type: ignore[no-untyped-def]
    """The store's usage rows in :func:`from_frame`'s column order."""
    return con.execute(
        "SELECT epoch_ms(window_start), job_id, uuid, gpu_i_id, mig_profile, gpu_model, hosts, "
        "gpu_ns, busy_ns, energy_uj FROM usage ORDER BY ALL"
    ).fetchall()
