"""Job placement on GPUs: a small list scheduler, run per node (pure, seeded).

Each group of units (the whole GPUs of a node, or one MIG GPU's instances) gets jobs one
after another: the unit that frees first takes the next job, a job may take several
units of the group (it then waits for all of them), and idle gaps or back-to-back starts
follow the :class:`JobMix`. Jobs already running when the period starts are kept (their
start lies before it), jobs that end before it are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class JobMix:
    """How long jobs run and how long GPUs sit idle between them (hours)."""

    min_hours: float = 1.0
    median_hours: float = 6.0
    max_hours: float = 72.0
    idle_hours_mean: float = 2.0
    max_idle_hours: float = 24.0
    back_to_back: float = 0.35  # probability the next job starts as the last one ends
    multi_gpu: float = 0.4  # probability a job on whole GPUs takes more than one

    def __post_init__(self) -> None:
        if not 0 < self.min_hours <= self.median_hours <= self.max_hours:
            raise ValueError("JobMix needs 0 < min_hours <= median_hours <= max_hours")
        if self.idle_hours_mean < 0 or self.max_idle_hours < 0:
            raise ValueError("JobMix idle hours must not be negative")


@dataclass
class Placement:
    """One job on a set of units of one node; ``job_id`` is given once all are placed."""

    node: int
    units: tuple[int, ...]  # indices into the node's unit list
    start_ms: int
    end_ms: int
    activity: float  # mean engine activity, 0..1
    overlay: bool = False  # shares its GPU with the job placed there (time-slicing)
    job_id: str = ""


def _duration_ms(rng: np.random.Generator, mix: JobMix) -> int:
    sigma = 0.9 if mix.max_hours > mix.min_hours else 0.0
    hours = float(np.clip(rng.lognormal(math.log(mix.median_hours), sigma), mix.min_hours, mix.max_hours))
    return round(hours * 3600) * 1000


def _gap_ms(rng: np.random.Generator, mix: JobMix) -> int:
    if rng.random() < mix.back_to_back or mix.idle_hours_mean == 0:
        return 0
    hours = min(float(rng.exponential(mix.idle_hours_mean)), mix.max_idle_hours)
    return max(60, round(hours * 3600)) * 1000


def _width(rng: np.random.Generator, n: int, mix: JobMix) -> int:
    if n == 1 or rng.random() >= mix.multi_gpu:
        return 1
    choices = [w for w in (2, 4, 8) if w < n] + [n]
    return int(rng.choice(choices))


def schedule_group(
    rng: np.random.Generator,
    *,
    node: int,
    units: list[int],
    start_ms: int,
    end_ms: int,
    mix: JobMix,
    together: bool = False,
) -> list[Placement]:
    """Jobs on ``units`` overlapping ``[start_ms, end_ms)``; ``together``: every job takes all."""
    n = len(units)
    # Seconds-resolution job boundaries; the first job on each unit began before the period.
    free = np.array(
        [start_ms - int(rng.uniform(0, mix.median_hours * 1.5) * 3600) * 1000 for _ in range(n)], dtype=np.int64
    )
    out: list[Placement] = []
    while True:
        first = int(np.argmin(free))
        t = int(free[first])
        if t >= end_ms:
            break
        width = n if together else _width(rng, n, mix)
        # The ``width`` units that free first (a stable sort puts ``first`` among them).
        chosen = sorted(int(i) for i in np.argsort(free, kind="stable")[:width])
        begin = max(t + _gap_ms(rng, mix), int(free[chosen].max()))
        end = begin + _duration_ms(rng, mix)
        free[chosen] = end
        if end > start_ms and begin < end_ms:
            out.append(Placement(node, tuple(units[i] for i in chosen), begin, end, float(rng.uniform(0.25, 0.98))))
    return out


def share_overlays(rng: np.random.Generator, base: Placement, *, min_ms: int = 600_000) -> list[Placement]:
    """One or two jobs that time-slice ``base``'s GPU for part of its run."""
    length = base.end_ms - base.start_ms
    out: list[Placement] = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        lead = int(rng.uniform(0.0, 0.4) * length) // 1000 * 1000
        tail = int(rng.uniform(0.0, 0.4) * length) // 1000 * 1000
        if length - lead - tail < min_ms:
            lead, tail = 0, 0
        out.append(
            Placement(
                base.node,
                base.units,
                base.start_ms + lead,
                base.end_ms - tail,
                float(rng.uniform(0.1, 0.5)),
                overlay=True,
            )
        )
    return out


def unit_intervals(placements: list[Placement]) -> tuple[list[int], list[tuple[str, ...]], list[float]]:
    """A unit's mapping-file history: interval starts, job ids held, summed activity.

    The first interval starts at -2**62 (idle before anything); consecutive intervals with
    the same jobs are merged; job ids keep the order their jobs started in.
    """
    points = sorted({p.start_ms for p in placements} | {p.end_ms for p in placements})
    ordered = sorted(placements, key=lambda p: (p.start_ms, p.overlay, p.job_id))
    starts: list[int] = [-(2**62)]
    jobs: list[tuple[str, ...]] = [()]
    act: list[float] = [0.0]
    for a in points:
        live = [p for p in ordered if p.start_ms <= a < p.end_ms]
        held = tuple(dict.fromkeys(p.job_id for p in live))
        if held == jobs[-1]:
            continue
        starts.append(a)
        jobs.append(held)
        act.append(min(0.99, sum(p.activity for p in live)))
    return starts, jobs, act
