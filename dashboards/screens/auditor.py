"""Auditor: pick a month and a tenant, build and download the bundle (each download is logged).

The page says what an auditor must pin to trust a bundle: the log key (or a tlog-policy of
it and the witnesses), shown here only to compare with the one obtained elsewhere, and
the witnesses, whose keys come from the witnesses themselves."""

from __future__ import annotations

import streamlit as st

from audit import cosign
from dashboards import exports, ui, views
from dashboards.compliance import key_ring
from dashboards.roles import Page, export_tenants, verify_export

ctx = ui.context(Page.AUDITOR)
site, viewer = ctx.site, ctx.viewer
st.title("Auditor bundles")
st.caption(
    "A bundle holds the month's signed checkpoint with the witnesses' cosignatures, log entries with inclusion "
    "proofs, the sovereignty report and the documents the entries vouch for. Check it offline with "
    "`gpumeter audit verify bundle.zip`, pinning the log's verifier key as you obtained it from the operator "
    "(its fingerprint is on every invoice) with `--key <vkey>`, or a C2SP tlog-policy of that key and the "
    "witnesses with `--policy FILE` — never the copies inside the bundle (`keys/`, `policy.txt`), which a forger "
    "would replace too (without a pin, verify refuses with exit status 4)."
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
    current = [k for k in key_ring(site.config.audit.signing_key, site.config.audit.origin) if k.current]
    stated = cosign.trust_policy(site.config) if current else None

bundle = exports.bundle_name(month, tenant)
if current:
    st.markdown("The log's current verifier key, to compare with the one you were given:")
    st.code(f"gpumeter audit verify {bundle} --key '{current[0].vkey}'", language="bash")
if stated is not None and stated.witnesses:
    k = site.config.audit.quorum
    needed = (
        f"{stated.describe_quorum()} cosigned it" if k else "its log key signed it (quorum 0: no cosignature needed)"
    )
    st.markdown(
        f"**Witnesses.** A checkpoint counts only when {needed}. Each witness, run by someone other than the "
        "operator, cosigns only a log that stays append-only, so the log cannot show you one history and others "
        "another. Get each witness's key from the witness itself, not from this page or the bundle:\n\n"
        + "\n".join(f"- **{w.name}** `{w.verifier.vkey}`" + (f" at {w.url}" if w.url else "") for w in stated.witnesses)
    )
    witnesses = " ".join(f"--witness '{w.verifier.vkey}'" for w in stated.witnesses)
    st.code(f"gpumeter audit verify {bundle} --key '{current[0].vkey}' {witnesses} --quorum {k}", language="bash")
    st.markdown(
        "The same as a tlog-policy file for `--policy`, as each bundle's `policy.txt` states it "
        "(compare every key in it with yours):"
    )
    st.code(cosign.policy_text(site.config), language="text")
elif current:
    st.info(
        "No witnesses are configured ([audit] witnesses): only the operator vouches for the checkpoints, "
        "so nothing outside it would notice a log shown differently to different auditors."
    )
if site.config.audit.tsa_url:
    st.caption(
        f"Checkpoints are time-stamped by {site.config.audit.tsa_url} (RFC 3161): pin that authority's certificate "
        "with `--tsa-cert` to check `checkpoint.tsr`."
    )
else:
    st.caption("No time-stamping authority is configured ([audit] tsa_url): times are the operator's clock.")

ui.bundle_button(site, viewer, month, tenant, label="Build and download bundle", key="auditor-download")
st.caption(
    f"Each download is built afresh and recorded in the audit log as an `export` entry by dashboard:{viewer.name}."
)

st.subheader(f"Bundles made for {month}")
made = exports.visible_exports(data.exports, viewer)
if not made.height:
    st.info("None yet.")
else:
    if shortfall := exports.witness_shortfall(made, site.config):
        st.warning(shortfall)
    ui.table(made.drop("witness_failures"), f"exports {month}", key="exports")
