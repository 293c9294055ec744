"""Hours in which a whole GPU changes hands inside one scrape loop, settled from aggregates.

The common reason an hour is not "simple" (one evidence series holding every slot) is a
job starting or ending inside it: the exporter's job label changes, so the GPU's samples
are split over a series per job. When all of those series come from **one scrape loop**
(their label sets differ only in the job label), the aggregates still determine the hour
exactly, under the ADR 0001 assumption that a loop scrapes once per interval:

* every scrape writes one sample to each of its series, evidence and energy alike, so an
  evidence series and the energy series with the same labels hold the same slots;
* the energy counter only rises between resets, so if the series' value ranges over the
  window and the slot before it, ``[min, max]``, are pairwise disjoint and none of them
  resets, each series' samples form one unbroken run in time, in the order of their
  values; and no slot carries two series (a shared GPU writes the same reading to both
  jobs' series, so their ranges would meet);
* with the evidence counts summing to the slots of the hour and the energy counts to one
  more, every slot has exactly one sample, and the extra one, in the slot before the hour,
  belongs to the first run.

Then a job holds as many slots as its evidence series has samples, busy time is its sum,
and its energy is its run's last reading minus the reading before the run: the previous
run's last, or for the first run its own reading in the slot before. This is what
:func:`metering.semantics.meter` computes from the raw samples of such an hour. Anything
else (MIG instances, series from several loops, a range that overlaps, a reset, NaN, a
missing slot) is left to the raw path.
"""

from __future__ import annotations

import polars as pl

from metering.semantics import NS_PER_MS, MeterResult, usage_key, whole_windows

KEY = ["window_ms", "uuid"]


def settle_handovers(
    ev: pl.DataFrame, en: pl.DataFrame, candidates: pl.DataFrame, *, slots: int, interval_ms: int
) -> tuple[MeterResult, pl.DataFrame]:
    """Usage of the (window, GPU) pairs in ``candidates`` that are single-loop handovers; and which those are.

    ``ev`` and ``en`` are :meth:`metering.collector.ChunkMeter.aggregates`' frames (one row
    per series and window, ``kid`` naming the label set without the metric name, ``loop``
    the label set without the job label either).
    """
    slot_ns = interval_ms * NS_PER_MS
    evidence = ev.join(candidates, on=KEY, how="semi")
    energy = en.join(candidates, on=KEY, how="semi")
    runs = (
        energy.join(
            evidence.select(*KEY, "kid", "count", "total", "gpu_i_id", "job", "host", "model", "profile"),
            on=[*KEY, "kid"],
            how="left",
        )
        .with_columns(
            pl.col("count").fill_null(0),
            # the run's last reading: its last in the window, or its only one (in the slot before)
            pl.when(pl.col("count") > 0).then(pl.col("last")).otherwise(pl.col("min_ext")).alias("max_ext"),
        )
        .sort([*KEY, "min_ext"])
        .with_columns(pl.col("max_ext").shift(1).over(KEY).alias("before"))
    )
    matched = runs.filter(pl.col("count") > 0).group_by(KEY).len("matched")
    per_gpu = evidence.group_by(KEY).agg(
        pl.len().alias("ev_series"),
        (pl.col("gpu_i_id") == "").all().alias("whole"),
        pl.col("total").is_finite().all().alias("finite_sums"),
        pl.col("count").sum().alias("ev_count"),
        pl.col("host").min().alias("hostname"),
        pl.col("model").min().alias("gpu_model"),
    )
    verdict = (
        runs.group_by(KEY, maintain_order=True)
        .agg(
            (pl.col("loop").n_unique() == 1).alias("one_loop"),
            (pl.col("resets") == 0).all().alias("no_reset"),
            pl.col("min_ext").is_finite().all().alias("finite_min"),
            pl.col("max_ext").is_finite().all().alias("finite_max"),
            (pl.col("count_ext") - pl.col("count")).is_in([0.0, 1.0]).all().alias("one_extra_at_most"),
            ((pl.col("count_ext") - pl.col("count")).first() == 1).alias("first_has_slot_before"),
            pl.col("count_ext").sum().alias("en_count"),
            # runs in value order, each ending below the next one's first reading
            (pl.col("before").is_null() | (pl.col("before") < pl.col("min_ext"))).all().alias("ordered"),
        )
        .join(per_gpu, on=KEY)
        .join(matched, on=KEY, how="left")
        .filter(
            pl.col("whole")
            & pl.col("one_loop")
            & pl.col("no_reset")
            & pl.col("finite_min")
            & pl.col("finite_max")
            & pl.col("finite_sums")
            & pl.col("one_extra_at_most")
            & pl.col("first_has_slot_before")
            & pl.col("ordered")
            & (pl.col("matched") == pl.col("ev_series"))
            & (pl.col("ev_count") == slots)
            & (pl.col("en_count") == slots + 1)
        )
    )
    ok = verdict.select(*KEY, "hostname", "gpu_model")
    held = runs.join(ok.select(KEY), on=KEY, how="semi").filter((pl.col("count") > 0) & pl.col("job").is_not_null())
    usage = held.select(
        *usage_key(),
        (pl.col("count") * slot_ns).cast(pl.Int64).alias("gpu_ns"),
        (pl.col("total") / 100.0 * slot_ns).round(0).cast(pl.Int64).alias("busy_ns"),
        ((pl.col("max_ext") - pl.col("before").fill_null(pl.col("min_ext"))) * 1000)
        .round(0)
        .cast(pl.Int64)
        .alias("energy_uj"),
    )
    return whole_windows(usage, ok, interval_ms=interval_ms, slots=slots), ok.select(KEY)
