"""``gpumeter collect``: meter [start, end) from Prometheus into the store.

Per chunk of hour windows (one day by default) the collector asks Prometheus for a few
aggregates per series and per window — sample counts and sums of the evidence metrics, and
the last value, count and resets of the energy counter — each ``f(sel[R] offset 1ms)``
evaluated with ``query_range`` at window ends (one point per hour, far below the 11,000-step
limit). From those it settles every (GPU, window) whose numbers they determine exactly:

* each MIG instance (or the whole GPU) is carried by exactly one evidence series with a
  sample in every slot of the window (so that series' sample count is its held slots, and
  nobody shares it), whose sum is finite (no NaN);
* every energy series of the GPU has a sample in every slot, one last value and no reset,
  and the previous window ended the same way (so the window's energy is last - previous
  last, and all of it belongs to the holders).

Everything else — a job starting or ending inside the hour, several series carrying one
GPU (a second scrape job, an HA pair, a renamed host label, a shared GPU), an outage, a
counter reset, NaN — is settled from raw samples of just those GPUs and windows, with
:func:`metering.semantics.meter`, the reference definition. The one thing the aggregate path
takes from Prometheus on trust is that a scrape loop never puts two samples of one series
in one scrape interval; a series with more samples than the window has slots goes to the
raw path.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from metering.prom import PromClient, RangeVector
from metering.promql import over_energy, over_evidence, raw_selector
from metering.samples import ENERGY, Series, host_of, sample_frame, series_key, uuid_of
from metering.semantics import (
    COVERAGE_SCHEMA,
    GAPS_SCHEMA,
    NS_PER_MS,
    USAGE_SCHEMA,
    MeterResult,
    default_mig_slices,
    meter,
    profile_slices,
)
from metering.windows import HOUR_MS, Span

RAW_BATCH = 48  # GPUs per raw-sample query
ENERGY_LOOKBACK_MS = (2 * HOUR_MS, 24 * HOUR_MS, 7 * 24 * HOUR_MS, 35 * 24 * HOUR_MS)


@dataclass(frozen=True)
class MeterSettings:
    interval_ms: int
    job_label: str
    idle_job_ids: tuple[str, ...]
    mig_slices: Callable[[str], int] = default_mig_slices

    @property
    def slots_per_window(self) -> int:
        return HOUR_MS // self.interval_ms


@dataclass
class ChunkStats:
    gpu_windows: int = 0
    raw_gpu_windows: int = 0
    raw_queries: int = 0
    aggregate_queries: int = 0
    jobs_seen: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Agg:
    """Aggregates of one series over consecutive windows (keyed by window start ms)."""

    labels: dict[str, str]
    count: dict[int, float]
    other: dict[int, float]


def _by_key(vectors: list[RangeVector]) -> dict[str, RangeVector]:
    """Results keyed by label set without ``__name__`` (``last_over_time`` keeps the name, others drop it)."""
    out = {}
    for v in vectors:
        labels = {k: x for k, x in v.labels.items() if k != "__name__"}
        out[series_key(labels)] = RangeVector(labels, v.points)
    return out


def _shift(points: dict[int, float]) -> dict[int, float]:
    """query_range points are stamped at window ends; key them by window start."""
    return {t - HOUR_MS: v for t, v in points.items()}


class ChunkMeter:
    """Meters one chunk of windows: aggregates first, raw samples where they must."""

    def __init__(self, client: PromClient, settings: MeterSettings, *, workers: int = 4) -> None:
        self.client = client
        self.s = settings
        self.workers = workers

    def _job(self, labels: dict[str, str]) -> str | None:
        job = labels.get(self.s.job_label)
        return None if job is None or job in self.s.idle_job_ids else job

    def aggregates(self, chunk: Span) -> tuple[list[_Agg], list[_Agg], dict[str, dict[int, float]], ChunkStats]:
        """Run the aggregate queries for a chunk (in parallel)."""
        c = self.client
        S = self.s.interval_ms
        r_win = c.range_ms(HOUR_MS)
        r_ext = c.range_ms(HOUR_MS + S)
        first_end, last_end = chunk.start_ms + HOUR_MS, chunk.end_ms
        queries = {
            "ev_count": (over_evidence("count_over_time", r_win), first_end),
            "ev_sum": (over_evidence("sum_over_time", r_win), first_end),
            "e_count": (over_energy("count_over_time", r_ext), first_end),
            "e_last": (over_energy("last_over_time", r_win), chunk.start_ms),
            "e_resets": (over_energy("resets", r_ext), first_end),
        }
        with ThreadPoolExecutor(max_workers=min(self.workers, len(queries))) as pool:
            futures = {
                name: pool.submit(c.range_query, q, start, last_end, HOUR_MS // 1000)
                for name, (q, start) in queries.items()
            }
            res = {name: _by_key(f.result()) for name, f in futures.items()}
        stats = ChunkStats(aggregate_queries=len(queries))
        ev = [
            _Agg(v.labels, _shift(v.points), _shift(res["ev_sum"][k].points) if k in res["ev_sum"] else {})
            for k, v in res["ev_count"].items()
        ]
        en = [
            _Agg(v.labels, _shift(v.points), _shift(res["e_last"][k].points) if k in res["e_last"] else {})
            for k, v in res["e_count"].items()
        ]
        resets = {k: _shift(v.points) for k, v in res["e_resets"].items()}
        return ev, en, resets, stats

    def run(self, chunk: Span) -> tuple[MeterResult, ChunkStats]:
        ev, en, resets, stats = self.aggregates(chunk)
        s = self.s
        spw = s.slots_per_window
        slot_ns = s.interval_ms * NS_PER_MS
        ev_by: dict[tuple[int, str], list[_Agg]] = defaultdict(list)
        en_by: dict[tuple[int, str], list[_Agg]] = defaultdict(list)
        uuid_label: dict[str, str] = {}
        for a in ev:
            u = uuid_of(a.labels)
            uuid_label.setdefault(u, "UUID" if "UUID" in a.labels else "uuid")
            for w, n in a.count.items():
                if n > 0 and chunk.start_ms <= w < chunk.end_ms:
                    ev_by[(w, u)].append(a)
        for a in en:
            u = uuid_of(a.labels)
            uuid_label.setdefault(u, "UUID" if "UUID" in a.labels else "uuid")
            for w, n in a.count.items():
                if n > 0:
                    en_by[(w, u)].append(a)

        usage_rows: list[tuple[object, ...]] = []
        cover_rows: list[tuple[object, ...]] = []
        raw_needed: dict[int, set[str]] = defaultdict(set)
        for (w, u), series in sorted(ev_by.items()):
            stats.gpu_windows += 1
            rows = self._settle(w, u, series, en_by, resets, spw, slot_ns)
            if rows is None:
                raw_needed[w].add(u)
                stats.raw_gpu_windows += 1
                continue
            usage_rows.extend(rows)
            hosts = sorted({host_of(a.labels) for a in series})
            cover_rows.append(
                (w, u, hosts[0], series[0].labels.get("modelName", ""), w, w + HOUR_MS - s.interval_ms, spw)
            )
            stats.jobs_seen.update(str(r[1]) for r in rows)

        parts = [
            MeterResult(
                pl.DataFrame(usage_rows, schema=USAGE_SCHEMA, orient="row"),
                pl.DataFrame(cover_rows, schema=COVERAGE_SCHEMA, orient="row"),
                pl.DataFrame(schema=GAPS_SCHEMA),
            )
        ]
        if raw_needed:
            raw, nq = self._raw_windows(raw_needed, uuid_label)
            stats.raw_queries += nq
            stats.jobs_seen.update(raw.usage.get_column("job_id").to_list())
            parts.append(raw)
        return _concat(parts), stats

    def _settle(
        self,
        w: int,
        u: str,
        series: list[_Agg],
        en_by: dict[tuple[int, str], list[_Agg]],
        resets: dict[str, dict[int, float]],
        spw: int,
        slot_ns: int,
    ) -> list[tuple[object, ...]] | None:
        """Usage rows of GPU ``u`` in window ``w`` from aggregates alone, or None if they can't say."""
        instances: set[str] = set()
        for a in series:
            gi = a.labels.get("GPU_I_ID", "")
            if gi in instances or a.count.get(w) != spw:
                return None
            total = a.other.get(w)
            if total is None or not math.isfinite(total):
                return None
            instances.add(gi)
        delta_uj = 0
        energy = en_by.get((w, u), [])
        if energy:
            # Every energy series of the GPU has a sample in each slot of the window and in
            # the slot just before it (counted over [w - interval, w + 1h)), no reset there,
            # and they all agree on the value before and the value last in the window.
            if any(a.count.get(w) != spw + 1 for a in energy):
                return None
            if any(resets.get(series_key(a.labels), {}).get(w, 1.0) != 0.0 for a in energy):
                return None
            lasts = {a.other.get(w) for a in energy}
            refs = {a.other.get(w - HOUR_MS) for a in energy}
            if len(lasts) != 1 or len(refs) != 1:
                return None
            last, ref = lasts.pop(), refs.pop()
            if last is None or ref is None or not (math.isfinite(last) and math.isfinite(ref)) or last < ref:
                return None
            delta_uj = round((last - ref) * 1000)
        rows: list[tuple[object, ...]] = []
        for a in series:
            job = self._job(a.labels)
            if job is None:
                continue
            gi = a.labels.get("GPU_I_ID", "")
            profile = a.labels.get("GPU_I_PROFILE") or None
            model = a.labels.get("modelName", "")
            total = a.other[w]
            if gi == "":
                busy = round(total / 100.0 * slot_ns)
                e_uj = delta_uj
            else:
                busy = round(total * slot_ns)
                k = profile_slices(profile)
                if k is None:
                    e_uj = delta_uj
                else:
                    den = self.s.mig_slices(model)
                    e_uj = (2 * delta_uj * k + den) // (2 * den)
            rows.append((w, job, u, gi, profile, model, [host_of(a.labels)], spw * slot_ns, busy, e_uj))
        return rows

    def _raw_windows(self, needed: dict[int, set[str]], uuid_label: dict[str, str]) -> tuple[MeterResult, int]:
        """Meter (window, GPU) pairs from raw samples, batched per window, fetched in parallel."""
        tasks: list[tuple[int, list[str]]] = []
        for w, uuids in sorted(needed.items()):
            ordered = sorted(uuids)
            for i in range(0, len(ordered), RAW_BATCH):
                tasks.append((w, ordered[i : i + RAW_BATCH]))
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            results = list(pool.map(lambda t: self._raw_one(t[0], t[1], uuid_label), tasks))
        return _concat([r for r, _ in results]), sum(n for _, n in results)

    def _raw_one(self, w: int, uuids: list[str], uuid_label: dict[str, str]) -> tuple[MeterResult, int]:
        by_label: dict[str, list[str]] = defaultdict(list)
        for u in uuids:
            by_label[uuid_label.get(u, "UUID")].append(u)
        series: list[Series] = []
        queries = 0
        for label, group in by_label.items():
            series += self.client.raw_series(raw_selector(label, group), w - HOUR_MS, w + HOUR_MS)
            queries += 1
        # Energy reference older than the previous hour (an outage across the boundary).
        has_ref = {uuid_of(x.labels) for x in series if x.metric == ENERGY and int(x.ts_ms.min()) < w}
        has_energy = {uuid_of(x.labels) for x in series if x.metric == ENERGY}
        missing = sorted(has_energy - has_ref)
        lo = w - HOUR_MS
        for lookback in ENERGY_LOOKBACK_MS[1:]:
            if not missing:
                break
            start = w - lookback
            found: list[Series] = []
            for label, group in _group_by_label(missing, uuid_label).items():
                found += self.client.raw_series(raw_selector(label, group, (ENERGY,)), start, lo)
                queries += 1
            series += found
            got = {uuid_of(x.labels) for x in found}
            missing = [u for u in missing if u not in got]
            lo = start
        frame = sample_frame(series, job_label=self.s.job_label, idle_job_ids=self.s.idle_job_ids)
        result = meter(
            frame, start_ms=w, end_ms=w + HOUR_MS, interval_ms=self.s.interval_ms, mig_slices=self.s.mig_slices
        )
        return result, queries


def _group_by_label(uuids: Iterable[str], uuid_label: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for u in uuids:
        out[uuid_label.get(u, "UUID")].append(u)
    return out


def _concat(parts: list[MeterResult]) -> MeterResult:
    return MeterResult(
        pl.concat([p.usage.select(list(USAGE_SCHEMA)) for p in parts])
        .cast(USAGE_SCHEMA)
        .sort(  # type: ignore[arg-type]
            ["window_ms", "job_id", "uuid", "gpu_i_id"]
        ),
        pl.concat([p.coverage.select(list(COVERAGE_SCHEMA)) for p in parts]).sort(["window_ms", "uuid"]),
        pl.concat([p.gaps.select(list(GAPS_SCHEMA)) for p in parts]).sort(["window_ms", "uuid", "gap_start_ms"]),
    )
