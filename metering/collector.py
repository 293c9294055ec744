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

A whole GPU handed from one job to another inside the hour by a single scrape loop is
settled from the same aggregates plus the energy minimum (:mod:`metering.handover`).
Everything else — several series carrying one GPU (a second scrape job, an HA pair, a
renamed host label, a shared GPU), an outage, a counter reset, NaN, a MIG instance
changing hands — is settled from raw samples of just those GPUs and windows, with
:func:`metering.semantics.meter`, the reference definition. The one thing the aggregate path
takes from Prometheus on trust is that a scrape loop never puts two samples of one series
in one scrape interval; a series with more samples than the window has slots goes to the
raw path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from metering.handover import settle_handovers
from metering.mig import default_mig_slices, profile_slices
from metering.promql import ALL_GPUS, over_energy, over_evidence, raw_selector
from metering.samples import ENERGY, Series, host_of, sample_frame, uuid_of
from metering.semantics import (
    COVERAGE_SCHEMA,
    GAPS_SCHEMA,
    NS_PER_MS,
    USAGE_SCHEMA,
    MeterResult,
    meter,
    usage_key,
    whole_windows,
)
from metering.windows import HOUR_MS, Span

RAW_BATCH = 48  # GPUs per raw-sample query
ENERGY_LOOKBACK_MS = (2 * HOUR_MS, 24 * HOUR_MS, 7 * 24 * HOUR_MS, 35 * 24 * HOUR_MS)  # beyond the slot before


class MetricsClient(Protocol):
    """What the collector asks of a telemetry backend.

    :class:`metering.prom.PromClient` answers over the Prometheus HTTP API; the demo's
    ``simulator.SimulatedBackend`` answers in process from simulated series.
    """

    def backend_name(self) -> str:
        """Recorded with every collected window (e.g. ``prometheus-open``)."""
        ...

    def range_ms(self, width_ms: int) -> int:
        """The selector duration that, with ``offset 1ms`` at an aligned t, covers exactly [t-width, t)."""
        ...

    def range_frame(
        self, query: str, start_ms: int, end_ms: int, step_s: int
    ) -> tuple[list[dict[str, str]], pl.DataFrame]:
        """A range query as (labels per series, frame of idx i32, t_ms i64, value f64)."""
        ...

    def raw_series(self, selector: str, start_ms: int, end_ms: int) -> list[Series]:
        """Every raw sample of ``selector`` with ``start_ms <= ts < end_ms``."""
        ...


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
    handover_gpu_windows: int = 0  # settled by metering.handover
    raw_queries: int = 0
    aggregate_queries: int = 0
    jobs_seen: set[str] = field(default_factory=set)


LabelKey = tuple[tuple[str, str], ...]
_META_SCHEMA = pl.Schema(
    {
        "kid": pl.Int64(),
        "loop": pl.String(),
        "uuid": pl.String(),
        "uuid_label": pl.String(),
        "gpu_i_id": pl.String(),
        "profile": pl.String(),
        "model": pl.String(),
        "host": pl.String(),
        "job": pl.String(),
    }
)
_EV_SCHEMA = pl.Schema(
    {
        "kid": pl.Int64(),
        "loop": pl.String(),
        "uuid": pl.String(),
        "uuid_label": pl.String(),
        "gpu_i_id": pl.String(),
        "profile": pl.String(),
        "model": pl.String(),
        "host": pl.String(),
        "job": pl.String(),
        "window_ms": pl.Int64(),
        "count": pl.Float64(),
        "total": pl.Float64(),
    }
)
_EN_SCHEMA = pl.Schema(
    {
        "kid": pl.Int64(),
        "loop": pl.String(),
        "uuid": pl.String(),
        "window_ms": pl.Int64(),
        "count_ext": pl.Float64(),
        "last": pl.Float64(),
        "prev": pl.Float64(),
        "resets": pl.Float64(),
        "min_ext": pl.Float64(),
    }
)


class ChunkMeter:
    """Meters one chunk of windows: aggregates first, raw samples where they must."""

    def __init__(self, client: MetricsClient, settings: MeterSettings, *, workers: int = 4) -> None:
        self.client = client
        self.s = settings
        self.workers = workers

    def _job(self, labels: dict[str, str]) -> str | None:
        job = labels.get(self.s.job_label)
        return None if job is None or job in self.s.idle_job_ids else job

    def queries(self, chunk: Span, shard: tuple[str, ...] = ALL_GPUS) -> dict[str, tuple[str, int]]:
        """The aggregate queries of a chunk: name -> (PromQL, first evaluation time); each runs
        as a range query up to the chunk's end with a step of one hour."""
        c = self.client
        r_win = c.range_ms(HOUR_MS)
        r_ext = c.range_ms(HOUR_MS + self.s.interval_ms)  # the window and the slot before it
        first_end = chunk.start_ms + HOUR_MS
        return {
            "ev_count": (over_evidence("count_over_time", r_win, shard), first_end),
            "ev_sum": (over_evidence("sum_over_time", r_win, shard), first_end),
            "e_count": (over_energy("count_over_time", r_ext, shard), first_end),
            "e_last": (over_energy("last_over_time", r_win, shard), chunk.start_ms),
            "e_resets": (over_energy("resets", r_ext, shard), first_end),
            "e_min": (over_energy("min_over_time", r_ext, shard), first_end),
        }

    def aggregates(
        self, chunk: Span, shard: tuple[str, ...] = ALL_GPUS
    ) -> tuple[pl.DataFrame, pl.DataFrame, ChunkStats]:
        """Run the aggregate queries for a chunk (in parallel); one row per series x window.

        ``shard`` (from :func:`metering.promql.shard_branches`) limits them to one shard's GPUs.
        ``kid`` numbers a series' label set (without the metric name), ``loop`` is that set
        without the job label too (the series of one scrape loop share it).

        evidence: kid, loop, uuid, uuid_label, gpu_i_id, profile, model, host, job, window_ms, count, total
        energy:   kid, loop, uuid, window_ms, count_ext, last, prev, resets, min_ext
        """
        c = self.client
        last_end = chunk.end_ms
        queries = self.queries(chunk, shard)
        with ThreadPoolExecutor(max_workers=min(self.workers, len(queries))) as pool:
            futures = {
                name: pool.submit(c.range_frame, q, start, last_end, HOUR_MS // 1000)
                for name, (q, start) in queries.items()
            }
            res = {name: f.result() for name, f in futures.items()}
        stats = ChunkStats(aggregate_queries=len(queries))

        # One id per label set (without __name__: last_over_time keeps it, others drop it).
        ids: dict[LabelKey, int] = {}
        metas: list[tuple[object, ...]] = []

        def keyed(name: str, column: str) -> pl.DataFrame:
            labels, frame = res[name]
            kid = []
            for lab in labels:
                key = tuple(sorted((k, v) for k, v in lab.items() if k != "__name__"))
                if key not in ids:
                    ids[key] = len(ids)
                    metas.append(
                        (
                            ids[key],
                            repr(tuple(kv for kv in key if kv[0] != self.s.job_label)),
                            uuid_of(lab),
                            "UUID" if "UUID" in lab else "uuid",
                            lab.get("GPU_I_ID", ""),
                            lab.get("GPU_I_PROFILE") or None,
                            lab.get("modelName", ""),
                            host_of(lab),
                            self._job(lab),
                        )
                    )
                kid.append(ids[key])
            return frame.select(
                pl.Series("kid", kid, dtype=pl.Int64).gather(frame.get_column("idx"))
                if kid
                else pl.lit(0).alias("kid"),
                (pl.col("t_ms") - HOUR_MS).alias("window_ms"),
                pl.col("value").alias(column),
            ).filter(pl.lit(bool(kid)))

        counts = keyed("ev_count", "count").filter(pl.col("count") > 0)
        sums = keyed("ev_sum", "total")
        e_counts = keyed("e_count", "count_ext").filter(pl.col("count_ext") > 0)
        lasts = keyed("e_last", "last")
        resets = keyed("e_resets", "resets")
        mins = keyed("e_min", "min_ext")
        meta = pl.DataFrame(metas, schema=_META_SCHEMA, orient="row")
        ev = (
            counts.join(sums, on=["kid", "window_ms"], how="left")
            .join(meta, on="kid")
            .select(list(_EV_SCHEMA))
            .cast(_EV_SCHEMA)
        )
        en = (
            e_counts.join(lasts, on=["kid", "window_ms"], how="left")
            .join(
                lasts.select("kid", (pl.col("window_ms") + HOUR_MS).alias("window_ms"), pl.col("last").alias("prev")),
                on=["kid", "window_ms"],
                how="left",
            )
            .join(resets, on=["kid", "window_ms"], how="left")
            .join(mins, on=["kid", "window_ms"], how="left")
            .join(meta.select("kid", "loop", "uuid"), on="kid")
            .select(list(_EN_SCHEMA))
            .cast(_EN_SCHEMA)
        )
        return ev, en, stats

    def run(self, chunk: Span, shard: tuple[str, ...] = ALL_GPUS) -> tuple[MeterResult, ChunkStats]:
        """Meter one shard's GPUs over ``chunk``: aggregates, then raw samples where needed."""
        return self.finish(chunk, self.aggregates(chunk, shard))

    def finish(
        self, chunk: Span, aggregates: tuple[pl.DataFrame, pl.DataFrame, ChunkStats]
    ) -> tuple[MeterResult, ChunkStats]:
        """Settle a chunk from its aggregates, reading raw samples where they cannot."""
        ev, en, stats = aggregates
        ev = ev.filter(pl.col("window_ms").is_between(chunk.start_ms, chunk.end_ms, closed="left"))
        simple, settled = self.settle(ev, en)
        stats.gpu_windows = settled.height
        pending = settled.filter(~pl.col("simple")).select("window_ms", "uuid")
        handed, handovers = settle_handovers(
            ev, en, pending, slots=self.s.slots_per_window, interval_ms=self.s.interval_ms
        )
        pending = pending.join(handovers, on=["window_ms", "uuid"], how="anti")
        stats.handover_gpu_windows = handovers.height
        stats.raw_gpu_windows = pending.height
        parts = [simple, handed]
        for part in parts:
            stats.jobs_seen.update(part.usage.get_column("job_id").unique().to_list())
        if pending.height:
            uuid_label = dict(ev.select("uuid", "uuid_label").unique(subset="uuid").iter_rows())
            needed: dict[int, set[str]] = defaultdict(set)
            for w, u in pending.iter_rows():
                needed[w].add(u)
            raw, nq = self._raw_windows(chunk, needed, uuid_label)
            stats.raw_queries += nq
            stats.jobs_seen.update(raw.usage.get_column("job_id").unique().to_list())
            parts.append(raw)
        return merge_results(parts), stats

    def settle(self, ev: pl.DataFrame, en: pl.DataFrame) -> tuple[MeterResult, pl.DataFrame]:
        """Usage of every (GPU, window) the aggregates determine exactly; and which ones they do.

        Exact when (a) each MIG instance (or the whole GPU) has exactly one evidence series,
        with a sample in every slot of the window and a finite sum, and (b) every energy
        series of the GPU has a sample in every slot of the window and in the slot before
        (``count_ext``), no reset there, and they agree on the last value in the window and
        the last value before it. Then held time is the slot count, busy time the sum, and
        the GPU's energy last - previous, all of it to the holders (N/S on MIG instances).
        """
        spw = self.s.slots_per_window
        S = self.s.interval_ms
        slot_ns = S * NS_PER_MS
        gpu = ev.group_by(["window_ms", "uuid"]).agg(
            (
                (pl.len() == pl.col("gpu_i_id").n_unique())
                & (pl.col("count") == spw).all()
                & pl.col("total").is_not_null().all()
                & pl.col("total").is_finite().all()
            ).alias("ev_ok"),
            pl.col("host").min().alias("hostname"),
            pl.col("model").min().alias("gpu_model"),
        )
        energy = en.group_by(["window_ms", "uuid"]).agg(
            (
                (pl.col("count_ext") == spw + 1).all()
                & (pl.col("resets") == 0).all()
                & pl.col("last").is_not_null().all()
                & pl.col("prev").is_not_null().all()
                & (pl.col("last").n_unique() == 1)
                & (pl.col("prev").n_unique() == 1)
            ).alias("en_ok"),
            pl.col("last").first(),
            pl.col("prev").first(),
        )
        settled = gpu.join(energy, on=["window_ms", "uuid"], how="left").with_columns(
            (
                pl.col("ev_ok")
                & (
                    pl.col("en_ok").is_null()
                    | (
                        pl.col("en_ok")
                        & pl.col("last").is_finite()
                        & pl.col("prev").is_finite()
                        & (pl.col("last") >= pl.col("prev"))
                    )
                )
            ).alias("simple"),
            pl.when(pl.col("en_ok").is_null())
            .then(0)
            .otherwise(((pl.col("last") - pl.col("prev")) * 1000).round(0))
            .cast(pl.Int64)
            .alias("delta_uj"),
        )
        ok = settled.filter(pl.col("simple"))
        held = ev.join(ok.select("window_ms", "uuid", "delta_uj"), on=["window_ms", "uuid"]).filter(
            pl.col("job").is_not_null()
        )
        models = held.select("model").unique().get_column("model").to_list()
        profiles = held.select("profile").unique().get_column("profile").to_list()
        den = {m: self.s.mig_slices(m) for m in models}
        k = {p: profile_slices(p) for p in profiles if p is not None}
        whole = pl.col("gpu_i_id") == ""
        mig_k = pl.col("profile").replace_strict(k, default=None, return_dtype=pl.Int64)
        mig_den = pl.col("model").replace_strict(den, default=7, return_dtype=pl.Int64)
        usage = held.select(
            *usage_key(),
            pl.lit(spw * slot_ns, dtype=pl.Int64).alias("gpu_ns"),
            pl.when(whole)
            .then(pl.col("total") / 100.0 * slot_ns)
            .otherwise(pl.col("total") * slot_ns)
            .round(0)
            .cast(pl.Int64)
            .alias("busy_ns"),
            pl.when(whole | mig_k.is_null())
            .then(pl.col("delta_uj"))
            .otherwise((2 * pl.col("delta_uj") * mig_k + mig_den) // (2 * mig_den))
            .alias("energy_uj"),
        )
        return whole_windows(usage, ok, interval_ms=S, slots=spw), settled

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


def _group_by_label(uuids: Iterable[str], uuid_label: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for u in uuids:
        out[uuid_label.get(u, "UUID")].append(u)
    return out


def merge_results(parts: list[MeterResult]) -> MeterResult:
    """One result from parts over disjoint GPUs (or windows), in the canonical row order."""
    return MeterResult(
        pl.concat([p.usage.select(list(USAGE_SCHEMA)) for p in parts])
        .cast(USAGE_SCHEMA)
        .sort(["window_ms", "job_id", "uuid", "gpu_i_id"]),
        pl.concat([p.coverage.select(list(COVERAGE_SCHEMA)) for p in parts]).sort(["window_ms", "uuid"]),
        pl.concat([p.gaps.select(list(GAPS_SCHEMA)) for p in parts]).sort(["window_ms", "uuid", "gap_start_ms"]),
    )
