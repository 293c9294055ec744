"""Metering benchmark: a 256-GPU fleet over 7 days at 15 s in a real Prometheus 2.42.

Measured in one run, against the same server and data:
  (a) ``collect``: gpumeter's metering of the range into a fresh DuckDB store;
  (b) the naive baseline: pull every raw sample with range-selector queries (chunked by
      time, the obvious way) and aggregate on the client with the same rules;
  (c) the floor: the bare evaluation of the aggregate PromQL queries (a) issues, with the
      same concurrency, results discarded unparsed.
Reports (b)/(a) (target >= 10) and (a)/(c) (target <= 1.5) and checks (a) == (b).

    .venv/bin/python -m bench.metering [--gpus 256] [--days 7] [--workdir bench/out/metering]
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

from bench.results import write_section
from gpumeter import store
from gpumeter.config import load_config
from metering.collector import ChunkMeter
from metering.prom import PromClient
from metering.run import collect, settings_from
from metering.samples import ENERGY, GR_ACTIVE, UTIL, sample_frame
from metering.semantics import meter
from metering.windows import HOUR_MS, Span
from simulator import backfill, bench_fleet, write_inventory
from testing import servers


def naive(url: str, cfg_path: Path, span: Span, chunk_hours: int) -> tuple[list[tuple[Any, ...]], int]:
    """Every raw sample over range selectors, chunk by chunk; metered on the client."""
    cfg = load_config(cfg_path)
    s = settings_from(cfg)
    rows: list[tuple[Any, ...]] = []
    samples = 0
    with PromClient(url, timeout_s=600) as client:
        for chunk in span.chunks(chunk_hours):
            # the previous hour too: energy needs the sample before the chunk
            series = client.raw_series(
                f'{{__name__=~"{UTIL}|{GR_ACTIVE}|{ENERGY}"}}', chunk.start_ms - HOUR_MS, chunk.end_ms
            )
            samples += sum(len(x.ts_ms) for x in series)
            frame = sample_frame(series, job_label=s.job_label, idle_job_ids=s.idle_job_ids)
            res = meter(
                frame, start_ms=chunk.start_ms, end_ms=chunk.end_ms, interval_ms=s.interval_ms, mig_slices=s.mig_slices
            )
            rows += res.usage.rows()
    return sorted(rows), samples


def floor(url: str, cfg_path: Path, span: Span, chunk_hours: int) -> float:
    """Wall time of the aggregate queries alone (same queries, same concurrency, no parsing)."""
    cfg = load_config(cfg_path)
    chunk_meter = ChunkMeter(PromClient(url), settings_from(cfg))
    session = requests.Session()
    t0 = time.perf_counter()
    for chunk in span.chunks(chunk_hours):
        qs = list(chunk_meter.queries(chunk).values())

        def get(q: tuple[str, int], end: int = chunk.end_ms) -> int:
            r = session.get(
                f"{url}/api/v1/query_range",
                params={"query": q[0], "start": str(q[1] // 1000), "end": str(end // 1000), "step": "3600"},
                timeout=600,
            )
            r.raise_for_status()
            return len(r.content)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(get, qs))
    return time.perf_counter() - t0


def _exact(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Everything but busy time (compared within 1 ns: float sums) with hosts sorted."""
    return [(*r[:6], sorted(r[6]), r[7], r[9]) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=256)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/metering"))
    ap.add_argument("--chunk-hours", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=3, help="Runs of (a) and (c), alternating; best of each.")
    ap.add_argument("--no-write", action="store_true", help="Do not update bench/RESULTS.md.")
    args = ap.parse_args()
    work: Path = args.workdir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    # one hour of history before the metered week, as a real collect always has
    fleet = bench_fleet(seed=1, days=args.days + 1 / 24, gpus=args.gpus)
    n_samples = sum(len(s.ts_ms) for s in fleet.series)
    print(
        f"fleet: {args.gpus} GPUs, {args.days} days, {len(fleet.series)} series, {n_samples:,} samples "
        f"({time.perf_counter() - t0:.1f}s)",
        flush=True,
    )
    t0 = time.perf_counter()
    backfill(fleet.series, work / "tsdb", work / "om")
    print(f"backfilled with promtool ({time.perf_counter() - t0:.1f}s)", flush=True)
    start = fleet.spec.start + timedelta(hours=1)
    span = Span.of(start, start + timedelta(days=args.days))
    with servers.prometheus_on(work / "tsdb", work) as url:
        cfg_path = write_inventory(fleet, work / "site", prometheus_url=url)
        cfg = load_config(cfg_path)
        # warm the server's page cache the same way for every contender
        floor(url, cfg_path, span, args.chunk_hours)
        # (a) and (c) alternate, best of three each: the machine is shared and noisy
        t_as: list[float] = []
        t_cs: list[float] = []
        for _ in range(args.repeat):
            t_cs.append(floor(url, cfg_path, span, args.chunk_hours))
            db = work / "site" / "var" / "gpumeter.duckdb"
            if db.exists():
                db.unlink()
            con = store.connect(cfg.store.database)
            store.migrate(con)
            t0 = time.perf_counter()
            rep = collect(con, cfg, span, chunk_hours=args.chunk_hours)
            t_as.append(time.perf_counter() - t0)
            got = sorted(
                (int(w.timestamp() * 1000), j, u, g, p, m, list(h), a, b, e)
                for w, j, u, g, p, m, h, a, b, e in con.execute("SELECT * FROM usage").fetchall()
            )
            con.close()
        t_a, t_c = min(t_as), min(t_cs)
        print(f"(c) aggregate queries alone: {', '.join(f'{t:.2f}' for t in t_cs)}s", flush=True)
        print(
            f"(a) collect: {', '.join(f'{t:.2f}' for t in t_as)}s; {rep.gpu_windows} GPU-windows, "
            f"{rep.raw_gpu_windows} from raw samples, "
            f"{rep.aggregate_queries} aggregate + {rep.raw_queries} raw queries",
            flush=True,
        )

        t0 = time.perf_counter()
        want, pulled = naive(url, cfg_path, span, args.chunk_hours)
        t_b = time.perf_counter() - t0
        print(f"(b) naive raw pull + client aggregation: {t_b:.2f}s ({pulled:,} samples pulled)", flush=True)
    same = _exact(got) == _exact(want)
    busy_ok = len(got) == len(want) and all(abs(x[8] - y[8]) <= 1 for x, y in zip(got, want, strict=True))
    print(f"(a) and (b) agree: {same and busy_ok} ({len(got)} usage rows)")
    ratio_ba, ratio_ac = t_b / t_a, t_a / t_c
    print(f"(b)/(a) = {ratio_ba:.1f}  (target >= 10)\n(a)/(c) = {ratio_ac:.2f} (target <= 1.5)")
    if not args.no_write:
        write_section(
            "metering",
            f"""Command: `.venv/bin/python -m bench.metering --gpus {args.gpus} --days {args.days}`
(2 cores, Prometheus 2.42 from Debian, backfilled with promtool; chunks of {args.chunk_hours} h;
all three contenders in one run).

Fleet: {args.gpus} GPUs, {args.days} days at 15 s, {len(fleet.series):,} series, {n_samples:,} samples.

| contender | seconds |
|---|---|
| (a) `gpumeter collect` (aggregates, raw samples only where series overlap), best of {args.repeat} | {t_a:.2f} |
| (b) naive: every raw sample over range selectors, aggregated on the client | {t_b:.2f} |
| (c) floor: the aggregate PromQL queries alone, results unparsed, best of {args.repeat} | {t_c:.2f} |

- **(b)/(a) = {ratio_ba:.1f}** (target ≥ 10)
- **(a)/(c) = {ratio_ac:.2f}** (target ≤ 1.5)
- (a) settled {rep.gpu_windows - rep.raw_gpu_windows:,} of {rep.gpu_windows:,} GPU-windows from aggregates and
  {rep.raw_gpu_windows:,} from raw samples ({rep.raw_queries} raw queries); (a) and (b) gave the same
  {len(got):,} usage rows: {same and busy_ok}.
""",
        )


if __name__ == "__main__":
    main()
