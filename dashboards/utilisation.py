"""The Utilisation page's data: GPU-hours held vs busy, idle waste, energy, coverage gaps.

One aggregate per month (:func:`rollup`, ``sql/queries/dash_usage_rollup.sql``) holds
held and busy nanoseconds and microjoules per tenant x site x country x GPU model x MIG
profile, in exact integers. Breakdowns per site, model or tenant and the month-by-month
trend are sums of those frames, so a page reads the usage table once per month, and a
month whose windows did not change since is taken from the cache.

Hours and kWh leave here as floats for charts and tables: they are measurements shown to
people, never amounts anyone is billed (billing prices the exact nanoseconds).
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import polars as pl

from gpumeter import store
from metering import report
from metering.windows import from_ms, month_span

NS_PER_HOUR = 3_600_000_000_000
UJ_PER_KWH = 3_600_000_000_000
NO_TENANT = "(not in jobs.csv)"
UNKNOWN_SITE = "(host not in nodes.csv)"
BREAKDOWNS = ("site", "gpu_model", "tenant", "country")

ROLLUP_SCHEMA = pl.Schema(
    {
        "month": pl.String(),
        "tenant": pl.String(),
        "site": pl.String(),
        "country": pl.String(),
        "gpu_model": pl.String(),
        "mig_profile": pl.String(),
        "gpu_ns": pl.Decimal(38, 0),
        "busy_ns": pl.Decimal(38, 0),
        "energy_uj": pl.Decimal(38, 0),
        "jobs": pl.Int64(),
    }
)


def _span_params(month: str) -> dict[str, object]:
    span = month_span(month)
    return {"start": from_ms(span.start_ms), "end_": from_ms(span.end_ms)}


def rollup(con: duckdb.DuckDBPyConnection, month: str) -> pl.DataFrame:
    """The month's usage per tenant x site x country x model x MIG profile (exact integers)."""
    frame = store.frame(con, "dash_usage_rollup", _span_params(month))
    return frame.with_columns(pl.lit(month).alias("month")).select(list(ROLLUP_SCHEMA)).cast(ROLLUP_SCHEMA)


def combine(frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
    parts = [f for f in frames if f.height]
    return pl.concat(parts) if parts else pl.DataFrame(schema=ROLLUP_SCHEMA)


def _measures(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        (pl.col("gpu_ns").cast(pl.Float64) / NS_PER_HOUR).alias("held_gpu_hours"),
        (pl.col("busy_ns").cast(pl.Float64) / NS_PER_HOUR).alias("busy_gpu_hours"),
        (pl.col("energy_uj").cast(pl.Float64) / UJ_PER_KWH).alias("energy_kwh"),
    ).with_columns(
        (pl.col("held_gpu_hours") - pl.col("busy_gpu_hours")).alias("idle_gpu_hours"),
        pl.when(pl.col("held_gpu_hours") > 0)
        .then(1 - pl.col("busy_gpu_hours") / pl.col("held_gpu_hours"))
        .otherwise(None)
        .alias("idle_share"),
    )


def labelled(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col("tenant").fill_null(NO_TENANT),
        pl.when(pl.col("site") == "").then(pl.lit(UNKNOWN_SITE)).otherwise(pl.col("site")).alias("site"),
    )


def breakdown(frame: pl.DataFrame, by: str) -> pl.DataFrame:
    """Held, busy and idle GPU-hours, idle share and kWh per value of ``by``."""
    if by not in (*BREAKDOWNS, "month"):
        raise ValueError(f"utilisation is broken down by {BREAKDOWNS} or month, not {by!r}")
    summed = (
        labelled(frame)
        .group_by(by)
        .agg(pl.col("gpu_ns").sum(), pl.col("busy_ns").sum(), pl.col("energy_uj").sum(), pl.col("jobs").sum())
        .sort(by)
    )
    return _measures(summed).select(
        by, "held_gpu_hours", "busy_gpu_hours", "idle_gpu_hours", "idle_share", "energy_kwh", "jobs"
    )


def totals(frame: pl.DataFrame) -> dict[str, float]:
    """Held, busy, idle GPU-hours, idle share and kWh over the whole frame."""
    names = ("held_gpu_hours", "busy_gpu_hours", "idle_gpu_hours", "idle_share", "energy_kwh")
    if not frame.height:
        return dict.fromkeys(names, 0.0)
    one = _measures(frame.select(pl.col("gpu_ns").sum(), pl.col("busy_ns").sum(), pl.col("energy_uj").sum()))
    row = one.row(0, named=True)
    return {k: float(row[k] or 0.0) for k in names}


def gaps(con: duckdb.DuckDBPyConnection, month: str, interval_ms: int) -> pl.DataFrame:
    """Telemetry coverage gaps overlapping the month, with their length in minutes."""
    frame = report.gaps(con, month, interval_ms)
    return frame.with_columns(((pl.col("end") - pl.col("start")).dt.total_seconds() / 60).alias("minutes"))


def gaps_per_host(frame: pl.DataFrame) -> pl.DataFrame:
    return (
        frame.group_by("hostname")
        .agg(pl.len().alias("gaps"), pl.col("uuid").n_unique().alias("gpus"), pl.col("minutes").sum().alias("minutes"))
        .sort("minutes", descending=True)
    )
