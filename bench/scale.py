"""Scale benchmark: ``collect`` over 7 days of 256, 1,024 and 2,048 GPUs on VictoriaMetrics.

For each fleet size the simulator streams the fleet into Debian's ``victoria-metrics`` a
day at a time through its import API (no file on disk; the fleet's samples are never all
in memory), then, against that server:

  (a) ``collect`` of the 7 days (chunks of 24 h) in a child process, so that its peak RSS
      is its own — seconds, seconds per 1,000 GPU-hours, peak RSS, backend CPU seconds;
  (c) the floor: the same aggregate PromQL alone (same queries, same concurrency, answers
      read but not parsed), with its backend CPU seconds;
  (s) one serve cycle at the end of the week: the newest hour plus the 6 h late re-check
      (a 7-hour collect into the store (a) filled, so the re-checked hours are unchanged).

(a) and (c) alternate, best of ``--repeat`` each (the machine is shared). From the
per-GPU-hour cost it projects an 18,000-GPU fleet. Results go to bench/RESULTS.md.

    .venv/bin/python -m bench.scale [--gpus 256 1024 2048] [--days 7] [--workers 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.metering import floor
from bench.results import write_section
from bench.sampler import Sampler
from gpumeter.config import load_config
from metering.run import collect
from metering.windows import HOUR_MS, Span
from simulator import Fleet, bench_fleet, series_between, vm_import, write_inventory
from testing import servers
from testing.stores import new_store

DAY_MS = 24 * HOUR_MS
CYCLE_HOURS = 7  # serve's cycle: the newest hour and the 6 h late window


@dataclass
class Row:
    gpus: int
    series: int
    samples: int
    load_s: float
    collect_s: list[float]
    floor_s: list[float]
    rss_mb: float
    collect_cpu_s: float
    floor_cpu_s: float
    client_cpu_s: float
    cycle_s: float
    cycle_cpu_s: float
    gpu_windows: int
    raw_gpu_windows: int
    handover_gpu_windows: int
    days: int = 7
    profile: list[tuple[str, float]] = field(default_factory=list)  # (a)'s busy thread-time by place

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.days * 24.0

    @property
    def per_1000(self) -> float:
        return min(self.collect_s) / self.gpu_hours * 1000


def _pid_of(marker: str) -> int:
    """The PID of the process whose command line contains ``marker`` (the server we started)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return int(entry.name)
            except OSError:
                continue
    raise RuntimeError(f"no process with {marker!r} in its command line")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child(
    cfg_path: Path, span: Span, workers: int, chunk_hours: int, fresh: bool, profile: bool = False
) -> dict[str, Any]:
    """Run ``collect`` in a child process; its report, with its peak RSS in MB (``rss_mb``)
    and, with ``profile``, where its threads spent their time (:mod:`bench.sampler`)."""
    argv = [
        sys.executable,
        "-m",
        "bench.scale",
        "child",
        str(cfg_path),
        str(span.start_ms),
        str(span.end_ms),
        str(workers),
        str(chunk_hours),
        "fresh" if fresh else "keep",
        "profile" if profile else "plain",
    ]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, check=True)  # our own interpreter and module
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _peak_rss_mb() -> float:
    """This process's peak resident set since it started (VmHWM; exec resets it, fork does not)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_main(argv: list[str]) -> None:
    cfg_path, start, end, workers, chunk_hours, mode, profiling = argv
    cfg = load_config(cfg_path)
    if mode == "fresh" and cfg.store.database.exists():
        cfg.store.database.unlink()
    con = new_store(cfg.store.database)
    sampler = Sampler()
    t0, c0 = time.perf_counter(), time.process_time()
    with sampler if profiling == "profile" else contextlib.nullcontext():
        rep = collect(con, cfg, Span(int(start), int(end)), workers=int(workers), chunk_hours=int(chunk_hours))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    con.close()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_s": cpu,
                "gpu_windows": rep.gpu_windows,
                "raw_gpu_windows": rep.raw_gpu_windows,
                "handover_gpu_windows": rep.handover_gpu_windows,
                "rows": rep.rows_written,
                "rss_mb": _peak_rss_mb(),
                "profile": sampler.report(),
            }
        )
    )


def load(url: str, gpus: int, days: int) -> tuple[Fleet, Span, int, int, float]:
    """Stream a bench fleet into VictoriaMetrics a day at a time; (fleet, metered span, samples, series, seconds)."""
    t0 = time.perf_counter()
    fleet = bench_fleet(seed=1, days=days + 1 / 24, gpus=gpus, with_series=False)
    samples = 0
    keys: set[str] = set()
    for lo in range(fleet.spec.start_ms, fleet.spec.end_ms, DAY_MS):
        part = series_between(fleet, lo, min(lo + DAY_MS, fleet.spec.end_ms))
        samples += sum(len(s.ts_ms) for s in part)
        keys.update(s.key() for s in part)
        vm_import(url, part)
        print(f"  {gpus} GPUs: {samples:,} samples imported", flush=True)
        del part
    start = fleet.spec.start_ms + HOUR_MS  # one hour of history before the metered week
    return fleet, Span(start, start + days * DAY_MS), samples, len(keys), time.perf_counter() - t0


def bench_one(gpus: int, days: int, workers: int, repeat: int, work: Path, profile: bool = False) -> Row:
    root = work / f"gpus-{gpus}"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    with servers.victoria(root) as url:
        vm = _pid_of(f"-storageDataPath={root / 'vmdata'}")
        fleet, span, samples, n_series, load_s = load(url, gpus, days)
        cfg_path = write_inventory(fleet, root / "site", prometheus_url=url)
        del fleet
        print(f"{gpus} GPUs: {n_series:,} series, {samples:,} samples loaded in {load_s:.0f} s", flush=True)
        floor(url, cfg_path, span, 24)  # warm the server the same way for both
        collects: list[float] = []
        floors: list[float] = []
        rss = cpu_a = cpu_c = client = 0.0
        report: dict[str, float] = {}
        for _ in range(repeat):
            c0 = _cpu_s(vm)
            floors.append(floor(url, cfg_path, span, 24))
            cpu_c = _cpu_s(vm) - c0
            c0 = _cpu_s(vm)
            report = _child(cfg_path, span, workers, 24, fresh=True)
            rss = max(rss, report["rss_mb"])
            cpu_a = _cpu_s(vm) - c0
            collects.append(report["seconds"])
            client = report["cpu_s"]
            print(
                f"  (c) floor {floors[-1]:.1f} s ({cpu_c:.1f} backend CPU s); (a) collect {collects[-1]:.1f} s "
                f"({cpu_a:.1f} backend CPU s, {client:.1f} client CPU s, peak RSS {rss:.0f} MB)",
                flush=True,
            )
        c0 = _cpu_s(vm)
        cycle = Span(span.end_ms - CYCLE_HOURS * HOUR_MS, span.end_ms)
        cyc = _child(cfg_path, cycle, workers, 24, fresh=False)
        cycle_cpu = _cpu_s(vm) - c0
        print(f"  (s) one serve cycle ({CYCLE_HOURS} h): {cyc['seconds']:.1f} s, {cycle_cpu:.1f} backend CPU s")
        # the profile comes from a run of its own, so that sampling never touches the timings above
        where = _child(cfg_path, span, workers, 24, fresh=True, profile=True)["profile"] if profile else []
    shutil.rmtree(root / "vmdata", ignore_errors=True)
    return Row(
        gpus=gpus,
        series=n_series,
        samples=samples,
        load_s=load_s,
        collect_s=collects,
        floor_s=floors,
        rss_mb=rss,
        collect_cpu_s=cpu_a,
        floor_cpu_s=cpu_c,
        client_cpu_s=client,
        cycle_s=cyc["seconds"],
        cycle_cpu_s=cycle_cpu,
        gpu_windows=int(report["gpu_windows"]),
        raw_gpu_windows=int(report["raw_gpu_windows"]),
        handover_gpu_windows=int(report["handover_gpu_windows"]),
        days=days,
        profile=[(str(k), float(v)) for k, v in where],
    )


def table(rows: list[Row]) -> str:
    lines = [
        "| GPUs | days | series | samples | (a) collect | s per 1,000 GPU-h | × first row | peak RSS "
        "| backend CPU (a) | client CPU (a) | (c) floor | backend CPU (c) | (a)/(c) | serve cycle (7 h) "
        "| GPU-windows: hand-overs / raw |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        a, c = min(r.collect_s), min(r.floor_s)
        lines.append(
            f"| {r.gpus:,} | {r.days} | {r.series:,} | {r.samples / 1e6:.0f} M | {a:.1f} s | {r.per_1000:.3f} s | "
            f"{r.per_1000 / rows[0].per_1000:.2f} | "
            f"{r.rss_mb:,.0f} MB | {r.collect_cpu_s:.1f} s | {r.client_cpu_s:.1f} s | {c:.1f} s | "
            f"{r.floor_cpu_s:.1f} s | {a / c:.2f} | {r.cycle_s:.1f} s | "
            f"{r.handover_gpu_windows:,} / {r.raw_gpu_windows:,} of {r.gpu_windows:,} |"
        )
    return "\n".join(lines)


TARGET_GPUS = 18_000
LATE_HOURS = 6  # [telemetry] late_window's default
BUDGET_S = 5 * 60  # an hour stored within 15 min of closing: 10 min settle + 5 min to meter it


def projection(rows: list[Row]) -> str:
    """Flatness of the cost per GPU-hour and the 18,000-GPU projection, from the measured slope."""
    first, big = rows[0], rows[-1]
    spread = max(abs(r.per_1000 / first.per_1000 - 1) for r in rows)
    # least-squares slope of collect seconds over GPU-hours (the fixed part is the intercept)
    xs, ys = [r.gpu_hours for r in rows], [min(r.collect_s) for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / (sum((x - mx) ** 2 for x in xs) or 1.0)
    scale = TARGET_GPUS / big.gpus
    cycle_s = big.cycle_s * scale  # one serve cycle: the newest hour and the 6 h late window
    cycle_backend = big.cycle_cpu_s * scale
    gpu_h_cycle = TARGET_GPUS * (1 + LATE_HOURS)
    backend_per_gh = big.collect_cpu_s / big.gpu_hours
    client_per_gh = big.client_cpu_s / big.gpu_hours
    month_h = 730
    backend_month = max(cycle_backend, backend_per_gh * gpu_h_cycle) * month_h / 3600
    client_month = client_per_gh * gpu_h_cycle * month_h / 3600
    backend_cores = max(1, -(-max(cycle_backend, backend_per_gh * gpu_h_cycle) // BUDGET_S))
    client_cores = client_per_gh * gpu_h_cycle / BUDGET_S
    workers = max(1, -(-client_cores // 0.8))  # a worker keeps about 0.8 of a core busy at most
    return f"""Cost per GPU-hour: {", ".join(f"{r.per_1000:.3f} s per 1,000 GPU-h at {r.gpus:,}" for r in rows)}
(the largest deviation from the {first.gpus:,}-GPU figure is {spread:.0%}; target ±25 %). Slope of
collect time over GPU-hours: {slope * 1000:.3f} s per 1,000 GPU-hours.

**Projection to {TARGET_GPUS:,} GPUs** (linear in GPUs from the {big.gpus:,}-GPU run, default
`late_window = "6h"`, so each hourly cycle meters {1 + LATE_HOURS} hours = {gpu_h_cycle:,} GPU-hours):

- one serve cycle on this 2-core machine: about {cycle_s:,.0f} s ({cycle_s / 60:.1f} min), with
  {cycle_backend:,.0f} backend CPU-seconds; by the {big.days}-day run's per-GPU-hour figures it needs
  {backend_per_gh * gpu_h_cycle:,.0f} backend and {client_per_gh * gpu_h_cycle:,.0f} gpumeter CPU-seconds;
- per month ({month_h} cycles): about {backend_month:,.1f} backend CPU-hours and {client_month:,.1f}
  gpumeter CPU-hours;
- lag under 15 minutes (10 min settle + at most {BUDGET_S // 60} min to meter the cycle): a backend
  with at least {backend_cores:.0f} CPU cores for queries (vmselect + vmstorage, or the Mimir/Thanos
  queriers) and `workers = {workers:.0f}`; the late re-check is 6/7 of the work, so `late_window = "2h"`
  would cut the cycle to 3/7 of it.
"""


def profile_text(rows: list[Row]) -> str:
    """Where (a)'s busy thread-time went, for each fleet profiled (``--profile``)."""
    out = []
    for r in rows:
        if r.profile:
            out.append(f"Where (a)'s busy thread-time goes at {r.gpus:,} GPUs (sampled every 5 ms, every thread):\n")
            out.append("| where | share |\n|---|---:|")
            out += [f"| `{k}` | {v:.0%} |" for k, v in r.profile]
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, nargs="+", default=[256, 1024, 2048])
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/scale"))
    ap.add_argument("--no-write", action="store_true", help="Print only; leave bench/RESULTS.md alone.")
    ap.add_argument("--profile", action="store_true", help="Also sample where collect's threads spend time.")
    ap.add_argument("--from-rows", type=Path, help="Write the section from a previous run's rows.json.")
    args = ap.parse_args()
    if args.from_rows:
        rows = [Row(**r) for r in json.loads(args.from_rows.read_text())]
    else:
        rows = []
        for gpus in args.gpus:
            rows.append(bench_one(gpus, args.days, args.workers, args.repeat, args.workdir, args.profile))
            print(table(rows), flush=True)
            (args.workdir / "rows.json").write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    print(projection(rows))
    print(profile_text(rows))
    if not args.no_write:
        command = (
            f"`nice .venv/bin/python -m bench.scale --gpus {' '.join(str(r.gpus) for r in rows)} "
            f"--days {rows[0].days} --workers {args.workers} --repeat {args.repeat}`"
        )
        write_section("scale", f"Command: {command}\n\n{table(rows)}\n\n{projection(rows)}\n{profile_text(rows)}")


if __name__ == "__main__":
    main()
