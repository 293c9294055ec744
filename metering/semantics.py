"""The metering rules (docs/metering.md), applied to raw samples (pure; no I/O).

This is the definition the PromQL path must agree with: the collector uses it directly
wherever it had to fetch raw samples, the demo uses it on simulated samples, and the tests
hold the server-side path equal to it.

Rules:
- slot k = [k*interval, (k+1)*interval), epoch-aligned; a (GPU UUID, MIG instance, job)
  holds a slot when at least one evidence sample carrying the job falls in it, however many
  series carry it. Evidence: ``DCGM_FI_DEV_GPU_UTIL`` on a whole GPU,
  ``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` on a MIG instance.
- N jobs holding the same (UUID, instance) in a slot get 1/N each of its time, busy time and
  energy.
- busy: GPU_UTIL/100 (or GR_ENGINE_ACTIVE) of the slot's earliest sample; NaN is held, not
  busy.
- energy: per physical GPU one sample per slot (the earliest across its series); the
  increase from the previous such sample (a drop is a reset: the new value is the increase)
  belongs to the later sample's slot and goes to the holders there; a MIG instance of
  M slices (:func:`metering.mig.profile_slices`: ``Mg.*`` or ``Nc.Mg.*``) gets M/S of it,
  S being the model's compute slices (ADR 0007; the share invoices price).

Units: held and busy time in integer nanoseconds, energy in integer microjoules. Shares are
summed exactly (integers over a common denominator) and rounded once per row, half up.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce

import polars as pl

from metering.mig import default_mig_slices, profile_slices
from metering.samples import ENERGY, GR_ACTIVE, UTIL
from metering.windows import HOUR_MS

NS_PER_MS = 1_000_000

USAGE_SCHEMA: pl.Schema = pl.Schema(
    {
        "window_ms": pl.Int64(),
        "job_id": pl.String(),
        "uuid": pl.String(),
        "gpu_i_id": pl.String(),
        "mig_profile": pl.String(),
        "gpu_model": pl.String(),
        "hosts": pl.List(pl.String()),
        "gpu_ns": pl.Int64(),
        "busy_ns": pl.Int64(),
        "energy_uj": pl.Int64(),
    }
)
USAGE_KEY = ["window_ms", "job_id", "uuid", "gpu_i_id"]

COVERAGE_SCHEMA: pl.Schema = pl.Schema(
    {
        "window_ms": pl.Int64(),
        "uuid": pl.String(),
        "hostname": pl.String(),
        "gpu_model": pl.String(),
        "first_slot_ms": pl.Int64(),
        "last_slot_ms": pl.Int64(),
        "slots_present": pl.Int64(),
    }
)
GAPS_SCHEMA: pl.Schema = pl.Schema(
    {
        "window_ms": pl.Int64(),
        "uuid": pl.String(),
        "gap_start_ms": pl.Int64(),
        "gap_end_ms": pl.Int64(),
    }
)


@dataclass(frozen=True)
class MeterResult:
    usage: pl.DataFrame
    coverage: pl.DataFrame
    gaps: pl.DataFrame


def usage_key() -> list[str | pl.Expr]:
    """The key columns of a usage row, from a frame of aggregates (job, model, profile, host)."""
    return [
        "window_ms",
        pl.col("job").alias("job_id"),
        "uuid",
        "gpu_i_id",
        pl.col("profile").alias("mig_profile"),
        pl.col("model").alias("gpu_model"),
        pl.concat_list("host").alias("hosts"),
    ]


def whole_windows(usage: pl.DataFrame, held: pl.DataFrame, *, interval_ms: int, slots: int) -> MeterResult:
    """The result of (GPU, window)s settled from aggregates: every slot present, no gaps.

    ``held`` has one row per settled (``window_ms``, ``uuid``) with ``hostname`` and ``gpu_model``.
    """
    coverage = held.select(
        "window_ms",
        "uuid",
        "hostname",
        "gpu_model",
        pl.col("window_ms").alias("first_slot_ms"),
        (pl.col("window_ms") + HOUR_MS - interval_ms).alias("last_slot_ms"),
        pl.lit(slots, dtype=pl.Int64).alias("slots_present"),
    )
    return MeterResult(usage.cast(USAGE_SCHEMA), coverage.cast(COVERAGE_SCHEMA), pl.DataFrame(schema=GAPS_SCHEMA))


def _lcm(values: list[int]) -> int:
    return reduce(math.lcm, values, 1)


def round_half_up_div(num: pl.Expr, den: int) -> pl.Expr:
    """round(num / den), halves up, in integers (num >= 0)."""
    return (num * 2 + den) // (2 * den)


def evidence(frame: pl.DataFrame) -> pl.DataFrame:
    """The samples that show a GPU (or MIG instance) present: GPU_UTIL whole, GR_ENGINE_ACTIVE on MIG."""
    return frame.filter(
        ((pl.col("metric") == UTIL) & (pl.col("gpu_i_id") == ""))
        | ((pl.col("metric") == GR_ACTIVE) & (pl.col("gpu_i_id") != ""))
    )


def meter(
    frame: pl.DataFrame,
    *,
    start_ms: int,
    end_ms: int,
    interval_ms: int,
    mig_slices: Callable[[str], int] = default_mig_slices,
) -> MeterResult:
    """Usage rows, coverage and in-window gaps for [start_ms, end_ms).

    ``frame`` is a canonical sample frame (:mod:`metering.samples`). Energy samples before
    ``start_ms`` are used only as the reference for the first increase.
    """
    S = interval_ms
    slot_ns = S * NS_PER_MS
    ev = (
        evidence(frame)
        .filter((pl.col("ts_ms") >= start_ms) & (pl.col("ts_ms") < end_ms))
        .with_columns((pl.col("ts_ms") // S).alias("slot"))
    )
    ev = ev.with_columns(((pl.col("slot") * S) - (pl.col("slot") * S) % HOUR_MS).alias("window_ms"))

    coverage, gaps = _coverage(ev, S)

    held_raw = ev.filter(pl.col("job").is_not_null())
    # One row per held slot: the earliest sample across every series that carries it.
    earliest = ["ts_ms", "series"]
    held = held_raw.group_by(["uuid", "gpu_i_id", "job", "slot"]).agg(
        pl.col("window_ms").first(),
        pl.col("metric").sort_by(earliest).first(),
        pl.col("value").sort_by(earliest).first(),
        pl.col("model").first(),
        pl.col("profile").first(),
    )
    held = held.with_columns(pl.len().over(["uuid", "gpu_i_id", "slot"]).alias("n"))
    n_values = held.get_column("n").unique().to_list() if held.height else [1]
    L = _lcm([int(v) for v in n_values])

    ratio = pl.when(pl.col("metric") == UTIL).then(pl.col("value") / 100.0).otherwise(pl.col("value"))
    ratio = pl.when(pl.col("value").is_nan()).then(0.0).otherwise(ratio)
    held = held.with_columns(
        (pl.lit(slot_ns * L, dtype=pl.Int64) // pl.col("n")).alias("gpu_part"),
        (ratio * slot_ns / pl.col("n")).alias("busy_part"),
    )

    energy = _energy_shares(frame, held, start_ms=start_ms, end_ms=end_ms, S=S, mig_slices=mig_slices)

    hosts = (
        held_raw.select(["window_ms", "uuid", "gpu_i_id", "job", "host"])
        .unique()
        .group_by(["window_ms", "uuid", "gpu_i_id", "job"])
        .agg(pl.col("host").sort().alias("hosts"))
    )
    usage = (
        held.group_by(["window_ms", "uuid", "gpu_i_id", "job"])
        .agg(
            pl.col("gpu_part").sum().alias("gpu_sum"),
            pl.col("busy_part").sum().alias("busy_f"),
            pl.col("model").min().alias("gpu_model"),
            pl.col("profile").min().alias("mig_profile"),
        )
        .with_columns(
            round_half_up_div(pl.col("gpu_sum"), L).alias("gpu_ns"),
            pl.col("busy_f").round(0).cast(pl.Int64).alias("busy_ns"),
        )
        .join(hosts, on=["window_ms", "uuid", "gpu_i_id", "job"], how="left")
        .join(energy, on=["window_ms", "uuid", "gpu_i_id", "job"], how="left")
        .with_columns(pl.col("energy_uj").fill_null(0), pl.col("job").alias("job_id"))
        .select(list(USAGE_SCHEMA))
        .cast(USAGE_SCHEMA)
        .sort(USAGE_KEY)
    )
    return MeterResult(usage, coverage, gaps)


def _energy_shares(
    frame: pl.DataFrame,
    held: pl.DataFrame,
    *,
    start_ms: int,
    end_ms: int,
    S: int,
    mig_slices: Callable[[str], int],
) -> pl.DataFrame:
    """Energy (µJ) per (window, uuid, instance, job) from per-GPU counter increases."""
    empty = pl.DataFrame(
        schema={
            "window_ms": pl.Int64,
            "uuid": pl.String,
            "gpu_i_id": pl.String,
            "job": pl.String,
            "energy_uj": pl.Int64,
        }
    )
    en = frame.filter((pl.col("metric") == ENERGY) & (pl.col("ts_ms") < end_ms))
    if en.height == 0 or held.height == 0:
        return empty
    per_slot = (
        en.with_columns((pl.col("ts_ms") // S).alias("slot"))
        .group_by(["uuid", "slot"])
        .agg(pl.col("value").sort_by(["ts_ms", "series"]).first().alias("v"))
        .sort(["uuid", "slot"])
        .with_columns(pl.col("v").shift(1).over("uuid").alias("prev"))
        .filter(pl.col("slot") * S >= start_ms)
        .filter(pl.col("prev").is_not_null() & pl.col("v").is_not_nan() & pl.col("prev").is_not_nan())
        .with_columns(
            pl.when(pl.col("v") < pl.col("prev"))
            .then(pl.col("v"))
            .otherwise(pl.col("v") - pl.col("prev"))
            .mul(1000.0)
            .round(0)
            .cast(pl.Int64)
            .alias("inc_uj")
        )
        .select(["uuid", "slot", "inc_uj"])
    )
    joined = held.select(["uuid", "gpu_i_id", "job", "slot", "window_ms", "n", "model", "profile"]).join(
        per_slot, on=["uuid", "slot"], how="inner"
    )
    if joined.height == 0:
        return empty
    # share = (1/n) for a whole GPU; (k/S)/n for a MIG instance of profile kg.*
    models = joined.select(["model", "profile", "gpu_i_id"]).unique()
    rows = []
    for model, profile, gi in models.iter_rows():
        k = profile_slices(profile) if gi != "" else None
        if k is None:
            rows.append((model, profile, gi, 1, 1))
        else:
            rows.append((model, profile, gi, k, mig_slices(model)))
    fractions = pl.DataFrame(
        rows,
        schema={"model": pl.String, "profile": pl.String, "gpu_i_id": pl.String, "num": pl.Int64, "den": pl.Int64},
        orient="row",
    )
    joined = joined.join(fractions, on=["model", "profile", "gpu_i_id"], how="left", nulls_equal=True)
    joined = joined.with_columns((pl.col("den") * pl.col("n")).alias("den"))
    LE = _lcm([int(v) for v in joined.get_column("den").unique().to_list()])
    return (
        joined.with_columns((pl.col("inc_uj") * pl.col("num") * (LE // pl.col("den"))).alias("e_part"))
        .group_by(["window_ms", "uuid", "gpu_i_id", "job"])
        .agg(pl.col("e_part").sum())
        .with_columns(round_half_up_div(pl.col("e_part"), LE).alias("energy_uj"))
        .select(["window_ms", "uuid", "gpu_i_id", "job", "energy_uj"])
    )


def _coverage(ev: pl.DataFrame, S: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per (window, GPU): slots with any evidence sample; and the gaps between them."""
    if ev.height == 0:
        return pl.DataFrame(schema=COVERAGE_SCHEMA), pl.DataFrame(schema=GAPS_SCHEMA)
    slots = ev.select(["window_ms", "uuid", "slot"]).unique().sort(["uuid", "slot"])
    meta = ev.group_by(["window_ms", "uuid"]).agg(
        pl.col("host").mode().min().alias("hostname"), pl.col("model").min().alias("gpu_model")
    )
    coverage = (
        slots.group_by(["window_ms", "uuid"])
        .agg(
            (pl.col("slot").min() * S).alias("first_slot_ms"),
            (pl.col("slot").max() * S).alias("last_slot_ms"),
            pl.len().cast(pl.Int64).alias("slots_present"),
        )
        .join(meta, on=["window_ms", "uuid"])
        .select(list(COVERAGE_SCHEMA))
        .sort(["window_ms", "uuid"])
    )
    gaps = (
        slots.with_columns(pl.col("slot").shift(1).over(["uuid", "window_ms"]).alias("prev"))
        .filter(pl.col("prev").is_not_null() & (pl.col("slot") - pl.col("prev") > 1))
        .select(
            "window_ms",
            "uuid",
            ((pl.col("prev") + 1) * S).alias("gap_start_ms"),
            (pl.col("slot") * S).alias("gap_end_ms"),
        )
        .sort(["window_ms", "uuid", "gap_start_ms"])
    )
    return coverage, gaps
