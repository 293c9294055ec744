"""My account (the tenant role): one tenant's usage, budget, invoices, sovereignty and bundle.

Everything here comes from :mod:`dashboards.account` through :mod:`dashboards.views`, read
with the signed-in user's tenant bound into each query; the page never picks a tenant.
"""

from __future__ import annotations

import streamlit as st

from dashboards import ui, views
from dashboards.account import USAGE_BY, usage_by
from dashboards.errors import AccessDenied
from dashboards.roles import Page, verify_export

ctx = ui.context(Page.ACCOUNT)
site, viewer = ctx.site, ctx.viewer
tenant = viewer.tenant
if tenant is None:  # the role cannot exist without one (roles.Viewer); said, never guessed
    raise AccessDenied(f"{viewer.name} is not bound to a tenant")

st.title("My account")
with ui.shown_errors():
    months, latest = views.account_months(site, tenant, ctx.now)
    month = ui.month_picker("Month", months, latest, key="account-month")
    data = views.account_data(site, tenant, month)

st.caption(
    f"{data.tenant.legal_name} (tenant {tenant}, VAT {data.tenant.vat_id}). EUR excluding VAT unless a column "
    "says otherwise; months are calendar months in UTC."
)

held = float(data.usage.get_column("gpu_hours").sum()) if data.usage.height else 0.0
a, b, c, d = st.columns(4)
a.metric("GPU-hours held", ui.fmt_hours(held))
b.metric("Jobs", f"{data.usage.get_column('job_id').n_unique() if data.usage.height else 0}")
c.metric(f"Usage priced, {month}", "n/a" if data.priced is None else ui.fmt_eur(data.priced))
d.metric("Documents issued", f"{data.documents.height}")

st.subheader(f"Usage, {month}")
if not data.usage.height:
    st.info(f"No metered usage in {month}.")
else:
    st.caption("Held: GPU time your jobs held (a shared GPU counts 1/N). Busy: held time weighted by utilisation.")
    tabs = st.tabs(["By project", "By job", "By GPU model"])
    for tab, by in zip(tabs, USAGE_BY, strict=True):
        with tab:
            ui.table(usage_by(data.usage, by), f"usage {month} by {by}", key=f"account-usage-{by}")
    with st.expander("Every job-month row"):
        ui.table(data.usage, f"usage {month}", key="account-usage-rows")

st.subheader("Reserved capacity and credits")
if data.contracts.reservations is None and data.contracts.credits is None:
    st.info("No reserved capacity and no credits under contract.")
if data.contracts.reservations is not None:
    if data.contracts.reservations.height:
        ui.table(data.contracts.reservations.drop("tenant"), f"reserved capacity {month}", key="account-reserved")
    else:
        st.info(f"Reserved capacity of {month}: not invoiced yet.")
if data.contracts.credits is not None:
    ui.table(data.contracts.credits, "credits left", key="account-credits")

st.subheader("Budget and alerts")
if data.budget is None:
    st.info("No monthly budget is set for your account.")
else:
    thresholds = ", ".join(f"{t}%" for t in data.budget.thresholds)
    share = f" ({data.priced / data.budget.monthly:.0%} of it)" if data.priced is not None else ""
    st.markdown(
        f"Monthly budget **{ui.fmt_eur(data.budget.monthly)}**, alerts at {thresholds}. "
        f"Usage of {month} priced so far: **{'n/a' if data.priced is None else ui.fmt_eur(data.priced)}**{share}."
    )
if data.priced_error:
    st.warning(f"This month's usage cannot be priced yet: {data.priced_error}")
if data.alerts.height:
    ui.table(data.alerts.drop("tenant"), f"budget alerts {month}", key="account-alerts")
elif data.budget is not None:
    st.success(f"No budget threshold reached in {month}.")

st.subheader("Invoices and credit notes")
if not data.documents.height:
    st.info("No invoice has been issued to you yet.")
else:
    ui.table(data.documents.drop("tenant"), "invoices and credit notes", key="account-documents")
    numbers = data.documents.get_column("number").to_list()
    number = st.selectbox("Document", numbers, key="account-document")
    if number:
        with ui.shown_errors():
            files = views.account_files(site, tenant, str(number))
        for column, file in zip(st.columns(len(files)), files, strict=True):
            column.download_button(
                f"Download {file.file_name}",
                data=file.data,
                file_name=file.file_name,
                mime=file.media_type,
                key=f"account-file-{file.file_name}",
                on_click="ignore",
                help=file.what,
                icon=":material/download:",
            )

judged = data.sovereignty
st.subheader(f"Sovereignty, {month}")
st.caption(
    f"Boundary {judged.policy} ({', '.join(site.config.audit.allowed_countries)}): a job is inside when every host "
    "telemetry showed it on and every data location it declares is in an allowed country."
)
if not judged.job_count:
    st.info(f"No metered job in {month}.")
else:
    e, f = st.columns(2)
    e.metric("Jobs inside", f"{judged.jobs_inside} of {judged.job_count}")
    f.metric("Findings", f"{judged.violations.height}")
    if judged.violations.height:
        st.caption(
            "One row per finding: the host and its country (nodes.csv in force), the first and last metered hour "
            "the job ran there, its GPU-seconds there, and the job's declared data locations."
        )
        ui.table(judged.violations, f"sovereignty findings {month}", key="account-violations")
    else:
        st.success("Every job of the month ran and kept its data inside the boundary.")
    ui.table(judged.jobs, f"sovereignty verdicts {month}", key="account-verdicts")

st.subheader("Auditor bundle")
st.caption(
    f"Your entries of the signed audit log for {month}, with inclusion proofs, the sovereignty report and your "
    "documents; anyone can check it offline with `gpumeter audit verify bundle.zip`. Each download is recorded."
)
with ui.shown_errors():
    verify_export(viewer, tenant)
ui.bundle_button(site, viewer, month, tenant, label="Build and download my bundle", key="account-bundle")
