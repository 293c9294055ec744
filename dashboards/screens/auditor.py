"""Auditor: pick a month and a tenant, build and download the bundle (each download is logged)."""

from __future__ import annotations

from functools import partial

import streamlit as st

from dashboards import exports, ui, views
from dashboards.roles import Page, export_tenants, verify_export

ctx = ui.context(Page.AUDITOR)
site, viewer = ctx.site, ctx.viewer
st.title("Auditor bundles")
st.caption(
    "A bundle holds the month's signed checkpoint, log entries with inclusion proofs, the sovereignty report and "
    "the documents the entries vouch for; check it offline with `gpumeter audit verify bundle.zip`."
)

with ui.shown_errors():
    months = views.months(site, ctx.now)
    month = ui.month_picker("Month", months, views.latest_month(site, ctx.now), key="auditor-month")
    data = views.auditor_data(site, month, ctx.now)
    scopes = export_tenants(viewer, data.tenants)
    tenant = st.selectbox(
        "Scope",
        scopes,
        format_func=lambda t: "the whole log" if t is None else f"tenant {t}",
        key="auditor-tenant",
        disabled=len(scopes) == 1,
    )
    verify_export(viewer, tenant)

ready = exports.check_signing(site.config, site.passphrase)
if not ready.passed:
    st.warning(f"Bundles cannot be made here: {ready.reason}")
st.download_button(
    "Build and download bundle",
    data=partial(exports.bundle_bytes, site, st.session_state[ui.SESSION_KEY], viewer, month, tenant),
    file_name=exports.bundle_name(month, tenant),
    mime="application/zip",
    key="auditor-download",
    on_click="ignore",
    type="primary",
    icon=":material/download:",
    disabled=not ready.passed,
)
st.caption(
    f"Each download is built afresh and recorded in the audit log as an `export` entry by dashboard:{viewer.name}."
)

st.subheader(f"Bundles made for {month}")
made = exports.visible_exports(data.exports, viewer)
if not made.height:
    st.info("None yet.")
else:
    ui.table(made, f"exports {month}", key="exports")
