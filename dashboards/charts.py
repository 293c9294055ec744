"""Altair charts of the pages (pure: frames in, chart specs out).

Decimal euros become floats here and only here, for drawing: a bar needs a number, not a
legal amount. Tables next to each chart keep the exact Decimal values.
"""

from __future__ import annotations

import altair as alt
import polars as pl

HOURS_FORMAT = ",.1f"
EUR_FORMAT = ",.2f"


def _plot(frame: pl.DataFrame) -> pl.DataFrame:
    """Decimal columns as floats, for Vega-Lite."""
    return frame.with_columns(pl.col(pl.Decimal).cast(pl.Float64))


def held_vs_busy(frame: pl.DataFrame, by: str, title: str) -> alt.Chart:
    """Stacked bars: busy and idle GPU-hours (together: held) per value of ``by``."""
    data = _plot(frame).select(
        pl.col(by).cast(pl.String), pl.col("busy_gpu_hours").alias("busy"), pl.col("idle_gpu_hours").alias("held, idle")
    )
    long = data.unpivot(index=by, variable_name="state", value_name="gpu_hours")
    horizontal = by != "month"
    category = alt.X(f"{by}:N", title=None, sort=None) if not horizontal else alt.Y(f"{by}:N", title=None, sort="-x")
    value = (
        alt.X("gpu_hours:Q", title="GPU-hours", stack="zero", axis=alt.Axis(format=",.0f"))
        if horizontal
        else alt.Y("gpu_hours:Q", title="GPU-hours", stack="zero", axis=alt.Axis(format=",.0f"))
    )
    chart: alt.Chart = (
        alt.Chart(long, title=title)
        .mark_bar()
        .encode(
            category,
            value,
            color=alt.Color(
                "state:N",
                title="held GPU time",
                scale=alt.Scale(domain=["busy", "held, idle"], range=["#2b6cb0", "#f6ad55"]),
            ),
            tooltip=[alt.Tooltip(f"{by}:N"), alt.Tooltip("state:N"), alt.Tooltip("gpu_hours:Q", format=HOURS_FORMAT)],
        )
    )
    return chart


def amounts(frame: pl.DataFrame, by: str, value: str, title: str, *, axis_title: str = "EUR excl. VAT") -> alt.Chart:
    """Bars of one amount per value of ``by`` (months left to right, other dimensions sorted by size)."""
    data = _plot(frame).select(pl.col(by).cast(pl.String), pl.col(value))
    if by == "month":
        encoding = {"x": alt.X(f"{by}:N", title=None, sort=None), "y": alt.Y(f"{value}:Q", title=axis_title)}
    else:
        encoding = {"y": alt.Y(f"{by}:N", title=None, sort="-x"), "x": alt.X(f"{value}:Q", title=axis_title)}
    chart: alt.Chart = (
        alt.Chart(data, title=title)
        .mark_bar(color="#2f855a")
        .encode(**encoding, tooltip=[alt.Tooltip(f"{by}:N"), alt.Tooltip(f"{value}:Q", format=EUR_FORMAT)])
    )
    return chart


def energy(frame: pl.DataFrame, by: str, title: str) -> alt.Chart:
    return amounts(frame, by, "energy_kwh", title, axis_title="kWh")
