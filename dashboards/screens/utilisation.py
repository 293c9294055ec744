"""Utilisation: GPU-hours held vs busy per site, model and tenant; idle waste; energy; gaps."""

from __future__ import annotations

import streamlit as st

from dashboards import charts, ui, utilisation, views
from dashboards.roles import Page

ctx = ui.context(Page.UTILISATION)
site = ctx.site
st.title("Utilisation")
st.caption(
    "Held: GPU time a job held (shared GPUs split 1/N). Busy: held time weighted by utilisation. "
    "Idle = held - busy: paid-for capacity doing nothing. Calendar months in UTC."
)

with ui.shown_errors():
    month = ui.month_picker("Month", views.months(site, ctx.now), views.latest_month(site, ctx.now), key="util-month")
    data = views.utilisation_data(site, month)

t = utilisation.totals(data.selected)
a, b, c, d = st.columns(4)
a.metric("GPU-hours held", ui.fmt_hours(t["held_gpu_hours"]))
b.metric("GPU-hours busy", ui.fmt_hours(t["busy_gpu_hours"]))
c.metric("Held but idle", f"{ui.fmt_hours(t['idle_gpu_hours'])} h ({t['idle_share']:.0%})")
d.metric("Energy", f"{t['energy_kwh']:,.1f} kWh")

if not data.selected.height:
    st.info(f"No metered usage in {month}.")
else:
    tabs = st.tabs(["By site", "By GPU model", "By tenant", "By country"])
    for tab, by in zip(tabs, utilisation.BREAKDOWNS, strict=True):
        with tab:
            frame = utilisation.breakdown(data.selected, by)
            st.altair_chart(charts.held_vs_busy(frame, by, f"Held vs busy GPU-hours by {by.replace('_', ' ')}"))
            ui.table(frame, f"utilisation {month} by {by}", key=f"util-{by}")

    st.subheader("Energy per tenant")
    energy = utilisation.breakdown(data.selected, "tenant").select("tenant", "energy_kwh", "held_gpu_hours")
    st.altair_chart(charts.energy(energy, "tenant", f"Energy attributed to each tenant, {month}"))
    ui.table(energy, f"energy {month} per tenant", key="util-energy")

if data.trend.height:
    st.subheader("Month by month")
    trend = utilisation.breakdown(data.trend, "month")
    st.altair_chart(charts.held_vs_busy(trend, "month", "Held vs busy GPU-hours per month"))
    ui.table(trend, "utilisation per month", key="util-trend")

st.subheader(f"Telemetry coverage gaps, {month}")
if not data.gaps.height:
    st.success("No coverage gap: every GPU scraped before and after sent every sample.")
else:
    st.caption("Stretches where a GPU that was scraped before and after sent no sample; they are not billed.")
    ui.table(utilisation.gaps_per_host(data.gaps), f"gaps {month} per host", key="gaps-hosts")
    with st.expander(f"All {data.gaps.height} gaps"):
        ui.table(data.gaps, f"gaps {month}", key="gaps-all")
