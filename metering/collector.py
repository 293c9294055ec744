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
from metering.samples import ENERGY, Series, host_of, sample_frame, uuid_of
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
ENERGY_LOOKBACK_MS = (2 * HOUR_MS, 24 * HOUR_MS, 7 * 24 * HOUR_MS, 35 * 24 * HOUR_MS)  # beyond the slot before


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

    key: LabelKey
    labels: dict[str, str]
    count: dict[int, float]
    other: dict[int, float]


LabelKey = tuple[tuple[str, str], ...]


def _by_key(vectors: list[RangeVector]) -> dict[LabelKey, RangeVector]:
    """Results keyed by label set without ``__name__`` (``last_over_time`` keeps the name, others drop it)."""
    out = {}
    for v in vectors:
        labels = {k: x for k, x in v.labels.items() if k != "__name__"}
        out[tuple(sorted(labels.items()))] = RangeVector(labels, v.points)
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

    def aggregates(self, chunk: Span) -> tuple[list[_Agg], list[_Agg], dict[LabelKey, dict[int, float]], ChunkStats]:
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
            _Agg(k, v.labels, _shift(v.points), _shift(res["ev_sum"][k].points) if k in res["ev_sum"] else {})
            for k, v in res["ev_count"].items()
        ]
        en = [
            _Agg(k, v.labels, _shift(v.points), _shift(res["e_last"][k].points) if k in res["e_last"] else {})
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
                _columns(usage_rows, USAGE_SCHEMA),
                _columns(cover_rows, COVERAGE_SCHEMA),
                pl.DataFrame(schema=GAPS_SCHEMA),
            )
        ]
        if raw_needed:
            raw, nq = self._raw_windows(chunk, raw_needed, uuid_label)
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
        resets: dict[LabelKey, dict[int, float]],
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
            if any(resets.get(a.key, {}).get(w, 1.0) != 0.0 for a in energy):
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

    def _raw_windows(
        self, chunk: Span, needed: dict[int, set[str]], uuid_label: dict[str, str]
    ) -> tuple[MeterResult, int]:
        """Meter (window, GPU) pairs from raw samples: fetched per window in parallel, metered once."""
        tasks: list[tuple[int, list[str]]] = []
        for w, uuids in sorted(needed.items()):
            ordered = sorted(uuids)
            for i in range(0, len(ordered), RAW_BATCH):
                tasks.append((w, ordered[i : i + RAW_BATCH]))
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            fetched = list(pool.map(lambda t: self._fetch_raw(t[0], t[1], uuid_label), tasks))
        series = [s for part, _ in fetched for s in part]
        queries = sum(n for _, n in fetched)
        frame = sample_frame(series, job_label=self.s.job_label, idle_job_ids=self.s.idle_job_ids)
        result = meter(
            frame,
            start_ms=chunk.start_ms,
            end_ms=chunk.end_ms,
            interval_ms=self.s.interval_ms,
            mig_slices=self.s.mig_slices,
        )
        # Samples fetched for one pair (the slot before a window, say) must not speak for
        # another (window, GPU): keep exactly the pairs that were asked for.
        pairs = pl.DataFrame(
            [(w, u) for w, us in needed.items() for u in us],
            schema={"window_ms": pl.Int64, "uuid": pl.String},
            orient="row",
        )
        return (
            MeterResult(
                result.usage.join(pairs, on=["window_ms", "uuid"], how="semi"),
                result.coverage.join(pairs, on=["window_ms", "uuid"], how="semi"),
                result.gaps.join(pairs, on=["window_ms", "uuid"], how="semi"),
            ),
            queries,
        )

    def _fetch_raw(self, w: int, uuids: list[str], uuid_label: dict[str, str]) -> tuple[list[Series], int]:
        """Raw samples of ``uuids`` in window ``w`` and the slot before it (the energy reference)."""
        series: list[Series] = []
        queries = 0
        lo = w - self.s.interval_ms
        for label, group in _group_by_label(uuids, uuid_label).items():
            series += self.client.raw_series(raw_selector(label, group), lo, w + HOUR_MS)
            queries += 1
        # No energy sample in the slot before the window (an outage across the boundary):
        # look further back for the last one, as far as ENERGY_LOOKBACK_MS reaches.
        has_ref = {uuid_of(x.labels) for x in series if x.metric == ENERGY and int(x.ts_ms.min()) < w}
        has_energy = {uuid_of(x.labels) for x in series if x.metric == ENERGY}
        missing = sorted(has_energy - has_ref)
        for lookback in ENERGY_LOOKBACK_MS:
            if not missing:
                break
            start = w - lookback
            found = [
                x
                for label, group in _group_by_label(missing, uuid_label).items()
                for x in self.client.raw_series(raw_selector(label, group, (ENERGY,)), start, lo)
            ]
            queries += len(_group_by_label(missing, uuid_label))
            series += _last_slot_only(found, self.s.interval_ms)
            got = {uuid_of(x.labels) for x in found}
            missing = [u for u in missing if u not in got]
            lo = start
        return series, queries


def _last_slot_only(series: list[Series], interval_ms: int) -> list[Series]:
    """Of each GPU's energy samples, those in its last slot (the reference for the next increase)."""
    last: dict[str, int] = {}
    for x in series:
        u = uuid_of(x.labels)
        last[u] = max(last.get(u, -(2**62)), int(x.ts_ms.max()) // interval_ms)
    out = []
    for x in series:
        keep = x.ts_ms // interval_ms == last[uuid_of(x.labels)]
        if keep.any():
            out.append(Series(x.labels, x.ts_ms[keep], x.values[keep]))
    return out


def _columns(rows: list[tuple[object, ...]], schema: pl.Schema) -> pl.DataFrame:
    """A frame from row tuples, built column by column (much faster than row-wise for lists)."""
    names = list(schema)
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return pl.DataFrame({n: pl.Series(n, list(c), dtype=schema[n]) for n, c in zip(names, cols, strict=True)})


def _group_by_label(uuids: Iterable[str], uuid_label: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for u in uuids:
        out[uuid_label.get(u, "UUID")].append(u)
    return out


def _concat(parts: list[MeterResult]) -> MeterResult:
    return MeterResult(
        pl.concat([p.usage.select(list(USAGE_SCHEMA)) for p in parts])
        .cast(USAGE_SCHEMA)
        .sort(["window_ms", "job_id", "uuid", "gpu_i_id"]),
        pl.concat([p.coverage.select(list(COVERAGE_SCHEMA)) for p in parts]).sort(["window_ms", "uuid"]),
        pl.concat([p.gaps.select(list(GAPS_SCHEMA)) for p in parts]).sort(["window_ms", "uuid", "gap_start_ms"]),
    )
