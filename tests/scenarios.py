"""Hand-built DCGM series for every trap docs/metering.md names, each in its own time range.

Every scenario is a list of :class:`Series` exactly as dcgm-exporter and Prometheus would
hold them, plus the span it covers. The Prometheus and VictoriaMetrics fixtures load all of
them at once; tests meter one scenario's span and compare with the oracle and with numbers
a person can check by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from metering.samples import ENERGY, GR_ACTIVE, UTIL, Series

S = 15_000  # scrape interval, ms
HOUR = 3_600_000
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
A30 = "NVIDIA A30"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class Scenario:
    name: str
    start_ms: int
    end_ms: int
    series: list[Series]


def gpu_labels(
    uuid: str,
    *,
    model: str = H100,
    host: str = "fr-par-gpu01",
    host_label: str = "Hostname",
    gpu: str = "0",
    target_job: str = "dcgm",
    gi: str | None = None,
    profile: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    lab = {
        "gpu": gpu,
        "UUID": uuid,
        "pci_bus_id": f"00000000:{10 + int(gpu):02X}:00.0",
        "device": f"nvidia{gpu}",
        "modelName": model,
        host_label: host,
        "DCGM_FI_DRIVER_VERSION": "580.105.08",
        "job": target_job,
        "instance": f"{host}:9400",
    }
    if gi is not None:
        lab["GPU_I_ID"] = gi
        lab["GPU_I_PROFILE"] = profile or "1g.10gb"
    if extra:
        lab.update(extra)
    return lab


def series(metric: str, labels: dict[str, str], job: str | None, ts: list[int], values: list[float]) -> Series:
    lab = {"__name__": metric, **labels}
    if job is not None:
        lab["hpc_job"] = job
    return Series(lab, np.asarray(ts, dtype=np.int64), np.asarray(values, dtype=np.float64))


def grid(start: int, end: int, phase: int = 0) -> list[int]:
    """Scrape times every S from ``start + phase`` up to ``end`` (exclusive)."""
    return list(range(start + phase, end, S))


def whole_gpu(
    labels: dict[str, str],
    ts: list[int],
    job_at: Callable[[int], str | None],
    *,
    util: Callable[[int], float] = lambda t: 50.0,
    energy_at: Callable[[int], float] | None = None,
) -> list[Series]:
    """GPU_UTIL and energy series of one whole GPU; the job label may change over time."""
    energy_at = energy_at or (lambda t: float((t // S) * 4_500_000 % 10**12))
    by_job: dict[str | None, list[int]] = {}
    for t in ts:
        by_job.setdefault(job_at(t), []).append(t)
    out = []
    for job, tss in by_job.items():
        out.append(series(UTIL, labels, job, tss, [util(t) for t in tss]))
        out.append(series(ENERGY, labels, job, tss, [energy_at(t) for t in tss]))
    return out


def scenario_boundaries() -> Scenario:
    """Samples exactly on slot and hour edges; an idle GPU; NaN; one job changing hands at :30."""
    a, b = ms("2026-10-01T00:00:00"), ms("2026-10-01T03:00:00")
    ts = grid(a - HOUR, b + HOUR)  # one extra hour each side, on the epoch grid
    out: list[Series] = []
    out += whole_gpu(gpu_labels("GPU-b0000000-0000-0000-0000-000000000001"), ts, lambda t: "job-edge-1")
    # hands over from job A to job B at exactly 01:30:00
    out += whole_gpu(
        gpu_labels("GPU-b0000000-0000-0000-0000-000000000002", gpu="1"),
        ts,
        lambda t: "job-edge-A" if t < ms("2026-10-01T01:30:00") else "job-edge-B",
        util=lambda t: float((t // S) % 101),
    )
    # idle: no label on one GPU, "0" on another
    out += whole_gpu(gpu_labels("GPU-b0000000-0000-0000-0000-000000000003", gpu="2"), ts, lambda t: None)
    out += whole_gpu(gpu_labels("GPU-b0000000-0000-0000-0000-000000000004", gpu="3"), ts, lambda t: "0")
    # NaN utilisation now and then: held, not busy
    out += whole_gpu(
        gpu_labels("GPU-b0000000-0000-0000-0000-000000000005", gpu="4"),
        ts,
        lambda t: "job-nan",
        util=lambda t: float("nan") if (t // S) % 17 == 0 else 80.0,
    )
    return Scenario("boundaries", a, b, out)


def scenario_duplicates() -> Scenario:
    """A second scrape job (3 s later) and an HA replica pair (7 s apart) on the same GPUs."""
    a, b = ms("2026-10-02T00:00:00"), ms("2026-10-02T03:00:00")
    out: list[Series] = []
    lab = gpu_labels("GPU-d0000000-0000-0000-0000-000000000001", host="de-fra-gpu01")
    for target, phase in (("dcgm", 2_000), ("dcgm-annotations", 5_000)):
        out += whole_gpu({**lab, "job": target}, grid(a - HOUR, b + HOUR, phase), lambda t: "job-dup")
    lab2 = gpu_labels("GPU-d0000000-0000-0000-0000-000000000002", gpu="1", host="de-fra-gpu01")
    for replica, phase in (("a", 1_000), ("b", 8_000)):
        out += whole_gpu(
            {**lab2, "replica": replica},
            grid(a - HOUR, b + HOUR, phase),
            lambda t: "job-ha",
            util=lambda t: float((t // 1000) % 97),
        )
    return Scenario("duplicates", a, b, out)


def scenario_outage_reset() -> Scenario:
    """An exporter outage of 20 minutes, then a restart whose energy counter starts again low."""
    a, b = ms("2026-10-03T00:00:00"), ms("2026-10-03T03:00:00")
    down, up = ms("2026-10-03T01:10:00"), ms("2026-10-03T01:30:00")
    ts = [t for t in grid(a - HOUR, b + HOUR, 4_000) if not (down <= t < up)]

    def energy(t: int) -> float:
        n = (t - (a - HOUR)) // S
        return float(10**9 + n * 3_000_000) if t < down else float(5_000 + ((t - up) // S) * 2_000_000)

    out = whole_gpu(
        gpu_labels("GPU-e0000000-0000-0000-0000-000000000001", host="nl-ams-gpu01"),
        ts,
        lambda t: "job-outage",
        energy_at=energy,
    )
    return Scenario("outage_reset", a, b, out)


def scenario_rename_escape() -> Scenario:
    """An exporter upgrade renaming Hostname to hostname at 01:20:07; job ids needing escapes."""
    a, b = ms("2026-10-04T00:00:00"), ms("2026-10-04T03:00:00")
    switch = ms("2026-10-04T01:20:07")
    out: list[Series] = []
    ts = grid(a - HOUR, b + HOUR, 6_000)
    old = gpu_labels("GPU-f0000000-0000-0000-0000-000000000001", host="fi-hel-gpu01")
    new = gpu_labels("GPU-f0000000-0000-0000-0000-000000000001", host="fi-hel-gpu01", host_label="hostname")
    out += whole_gpu(old, [t for t in ts if t < switch], lambda t: "job-rename")
    # the new exporter's first scrape comes 2 s after the old one's last, in the same slot
    out += whole_gpu(new, [t + 2_000 for t in ts if t >= switch - S], lambda t: "job-rename")
    weird = 'we"ird\\job name/é'
    out += whole_gpu(
        gpu_labels("GPU-f0000000-0000-0000-0000-000000000002", gpu="1", host="fi-hel-gpu01"), ts, lambda t: weird
    )
    return Scenario("rename_escape", a, b, out)


def scenario_mig_shared() -> Scenario:
    """A MIG A100 (3g + 2g + 1g + 1g instances), a MIG A30 (2g + 2g), and one GPU shared by two jobs."""
    a, b = ms("2026-10-05T00:00:00"), ms("2026-10-05T03:00:00")
    ts = grid(a - HOUR, b + HOUR, 3_000)
    out: list[Series] = []
    energy = {t: float(7 * 10**8 + (t // S) * 5_600_000 % 10**11) for t in ts}
    for uuid, model, host, instances in (
        (
            "GPU-a1000000-0000-0000-0000-000000000001",
            A100,
            "it-mil-gpu01",
            [
                ("1", "3g.40gb", "job-mig-3g"),
                ("2", "2g.20gb", "job-mig-2g"),
                ("3", "1g.10gb", None),
                ("4", "1g.10gb", "job-mig-1g"),
            ],
        ),
        (
            "GPU-a3000000-0000-0000-0000-000000000001",
            A30,
            "it-mil-gpu02",
            [("1", "2g.12gb", "job-a30-x"), ("2", "2g.12gb", "job-a30-y")],
        ),
    ):
        for gi, profile, job in instances:
            lab = gpu_labels(uuid, model=model, host=host, gi=gi, profile=profile)
            tss = ts if job != "job-mig-1g" else [t for t in ts if t >= ms("2026-10-05T01:45:00")]
            out.append(series(GR_ACTIVE, lab, job, tss, [0.25 + (t // S) % 50 / 100 for t in tss]))
            out.append(series(ENERGY, lab, job, tss, [energy[t] for t in tss]))
    # shared GPU: the mapping file lists two jobs -> two identical copies of every series
    lab = gpu_labels("GPU-5a000000-0000-0000-0000-000000000001", gpu="1", host="it-mil-gpu01")
    for job in ("job-share-1", "job-share-2"):
        out.append(series(UTIL, lab, job, ts, [60.0] * len(ts)))
        out.append(series(ENERGY, lab, job, ts, [energy[t] for t in ts]))
    return Scenario("mig_shared", a, b, out)


def scenario_month_edge() -> Scenario:
    """A job running across midnight UTC from October into November."""
    a, b = ms("2026-10-31T22:00:00"), ms("2026-11-01T02:00:00")
    ts = grid(a - HOUR, b + HOUR)
    out = whole_gpu(
        gpu_labels("GPU-c0000000-0000-0000-0000-000000000001", host="fr-par-gpu02"), ts, lambda t: "job-month"
    )
    return Scenario("month_edge", a, b, out)


def scenario_handovers() -> Scenario:
    """Jobs changing hands inside an hour: settled from aggregates only when one scrape loop
    carries the GPU and the runs are clean (metering.handover); every other shape is raw."""
    a, b = ms("2026-10-06T00:00:00"), ms("2026-10-06T03:00:00")
    ts = grid(a - HOUR, b + HOUR, 3_000)
    out: list[Series] = []

    def lab(n: int) -> dict[str, str]:
        return gpu_labels(f"GPU-6a000000-0000-0000-0000-00000000000{n}", gpu=str(n), host="fi-hel-gpu01")

    def at(hhmmss: str) -> int:
        return ms(f"2026-10-06T{hhmmss}")

    # 1: job A, then no job for twenty minutes, then job B, inside 00:00-01:00 (a handover)
    out += whole_gpu(
        lab(1), ts, lambda t: "job-hand-A" if t < at("00:20:00") else None if t < at("00:40:00") else "job-hand-B"
    )
    # 2: A, B from 01:20 to 01:40, then A again: A's readings surround B's (raw)
    out += whole_gpu(lab(2), ts, lambda t: "job-hand-B" if at("01:20:00") <= t < at("01:40:00") else "job-hand-A")
    # 3: the counter resets when B takes over at 00:30 (raw)
    out += whole_gpu(
        lab(3),
        ts,
        lambda t: "job-hand-A" if t < at("00:30:00") else "job-hand-B",
        energy_at=lambda t: float(7 * 10**11 + t // S * 900_000) if t < at("00:30:00") else float(t // S % 10_000),
    )
    # 4: B joins A at 00:30 and they share the GPU from then on (raw)
    shared = lab(4)
    out += whole_gpu(shared, ts, lambda t: "job-hand-A")
    out += whole_gpu(shared, [t for t in ts if t >= at("00:30:00")], lambda t: "job-hand-B")
    # 5: an HA pair whose replicas take turns: replica a (A) until 01:30:05, replica b (B)
    # from then, 7 s later in each slot, missing 01:45: the slot of 01:30 holds both, the
    # slot of 01:45 neither, and the counts still add up to an hour (raw: two loops)
    ha = lab(5)
    ts_a = [t for t in grid(a - HOUR, b + HOUR, 1_000) if t < at("01:30:05")]
    ts_b = [
        t for t in grid(a - HOUR, b + HOUR, 8_000) if t >= at("01:30:05") and not at("01:45:00") <= t < at("01:45:15")
    ]
    power = lambda t: float(10**11 + (t - a) * 300)  # noqa: E731  # 300 W: each reading its own value
    out += whole_gpu({**ha, "replica": "a"}, ts_a, lambda t: "job-hand-A", energy_at=power)
    out += whole_gpu({**ha, "replica": "b"}, ts_b, lambda t: "job-hand-B", energy_at=power)
    # 6: B takes over exactly at 01:00:00; A's last reading is in the slot before (a handover)
    out += whole_gpu(lab(6), ts, lambda t: "job-hand-A" if t < at("01:00:00") else "job-hand-B")
    return Scenario("handovers", a, b, out)


ALL: list[Callable[[], Scenario]] = [
    scenario_boundaries,
    scenario_duplicates,
    scenario_outage_reset,
    scenario_rename_escape,
    scenario_mig_shared,
    scenario_month_edge,
    scenario_handovers,
]


def all_scenarios() -> dict[str, Scenario]:
    return {s.name: s for s in (f() for f in ALL)}
