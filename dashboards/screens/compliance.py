"""Compliance: GPU time and jobs inside the sovereignty boundary, each violation's evidence,
and the audit log against its latest signed checkpoint."""

from __future__ import annotations

import streamlit as st

from dashboards import ui, views
from dashboards.roles import Page

ctx = ui.context(Page.COMPLIANCE)
site = ctx.site
st.title("Compliance")

with ui.shown_errors():
    month = ui.month_picker(
        "Month", views.months(site, ctx.now), views.latest_month(site, ctx.now), key="compliance-month"
    )
    data = views.compliance_data(site, month)

judged = data.boundary
st.caption(
    f"Boundary {judged.policy} ({', '.join(site.config.audit.allowed_countries)}): a job is inside when every host "
    "telemetry showed it on and every data location it declares is in an allowed country."
)
a, b, c = st.columns(3)
a.metric(
    "GPU-seconds inside",
    "n/a" if judged.share_gpu_seconds is None else f"{judged.share_gpu_seconds:.2%}",
    help=f"{judged.gpu_seconds_inside:,.0f} of {judged.gpu_seconds:,.0f} GPU-seconds",
)
b.metric(
    "Jobs inside",
    "n/a" if judged.share_jobs is None else f"{judged.share_jobs:.2%}",
    help=f"{judged.jobs_inside} of {judged.job_count} jobs",
)
c.metric("Findings", f"{judged.violations.height}")

st.subheader(f"Violations, {month}")
if not judged.job_count:
    st.info(f"No metered job in {month}.")
elif not judged.violations.height:
    st.success("Every job of the month ran and kept its data inside the boundary.")
else:
    st.caption(
        "One row per finding: the host and its country (nodes.csv in force), the first and last metered hour the "
        "job ran there, its GPU-seconds there, and the job's declared data locations."
    )
    ui.table(judged.violations, f"violations {month}", key="violations")
with st.expander(f"All {judged.job_count} jobs of {month}"):
    ui.table(judged.jobs, f"jobs {month}", key="jobs")

st.subheader("Audit log")
log = data.log
if log.checkpoint is None:
    st.warning(f"The log ({log.entries} entries) has no signed checkpoint yet (`gpumeter audit checkpoint`).")
else:
    cp = log.checkpoint
    st.markdown(
        f"Latest signed checkpoint **#{cp.id}**: {cp.size} entries, signed {cp.signed_at:%Y-%m-%d %H:%M:%S} UTC, "
        f"root `{cp.root_hex}`"
    )
    with st.expander("Signed note"):
        st.code(cp.note, language=None)
if log.check is None:
    st.warning(f"The local log could not be checked: {log.problem}")
elif log.verified:
    st.success(
        f"The local log verifies: its {log.check.size} entries recompute to checkpoint "
        f"#{log.check.checkpoint_id} and every earlier one."
    )
elif log.findings:
    st.error(f"The local log does NOT verify against its checkpoints ({len(log.findings)} findings).")
    for finding in log.findings:
        st.markdown(f"- {finding}")
else:
    st.info(f"The stored tree of all {log.check.size} entries recomputes; there is no checkpoint to hold it to yet.")
if log.keys:
    st.markdown("Log keys (oldest first):")
    st.dataframe(
        [
            {"fingerprint": k.fingerprint, "vkey": k.vkey, "added": k.added, "retired": k.retired, "current": k.current}
            for k in log.keys
        ],
        hide_index=True,
    )
