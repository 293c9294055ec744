"""Finance: revenue by month, tenant, GPU model and site; unbilled usage; invoices; credit notes."""

from __future__ import annotations

import streamlit as st

from dashboards import charts, finance, ui, views
from dashboards.roles import Page

ctx = ui.context(Page.FINANCE)
site = ctx.site
st.title("Finance")
st.caption("EUR excluding VAT unless a column says otherwise; months are calendar months in UTC.")

with ui.shown_errors():
    invoiced = views.invoiced_months(site)
    left, right = st.columns(2)
    with left:
        unbilled_month = ui.month_picker(
            "Unbilled usage of",
            views.months(site, ctx.now),
            views.latest_month(site, ctx.now),
            key="finance-unbilled-month",
        )
    with right:
        invoices_month = (
            ui.month_picker("Invoices issued for", invoiced, invoiced[0], key="finance-invoices-month")
            if invoiced
            else None
        )
    data = views.finance_data(site, invoices_month, unbilled_month)

total = data.revenue.get_column("amount").sum() if data.revenue.height else 0
a, b, c = st.columns(3)
a.metric("Revenue issued, all months", ui.fmt_eur(total))
b.metric(f"Unbilled so far, {unbilled_month}", ui.fmt_eur(data.unbilled.net))
c.metric("Credit notes issued", f"{data.credit_notes.height}")

st.subheader("Revenue")
if not data.revenue.height:
    st.info("No invoice has been issued yet (`gpumeter invoice --month YYYY-MM --finalize`).")
else:
    tabs = st.tabs(["By month", "By tenant", "By GPU model", "By site"])
    for tab, dimension in zip(tabs, finance.REVENUE_BY, strict=True):
        with tab:
            by = finance.revenue_by(data.revenue, dimension)
            st.altair_chart(charts.amounts(by, dimension, "net_eur", f"Net revenue by {dimension.replace('_', ' ')}"))
            ui.table(by, f"revenue by {dimension}", key=f"revenue-{dimension}")
    st.caption(
        "By site: a line priced per site counts for that site; any other line is split over the sites where "
        "the tenant's GPU time of that model ran that month, in proportion to GPU-seconds, to the cent."
    )

st.subheader(f"Unbilled usage, {unbilled_month}")
if data.unbilled.error:
    st.warning(f"This month cannot be priced yet: {data.unbilled.error}")
elif not data.unbilled.lines.height:
    st.info("Nothing left to invoice for this month.")
else:
    st.caption("What `gpumeter invoice --finalize` would issue now, priced by billing with rates.toml.")
    ui.table(data.unbilled.per_tenant(), f"unbilled {unbilled_month} per tenant", key="unbilled-tenants")
    with st.expander("Lines"):
        ui.table(data.unbilled.lines, f"unbilled {unbilled_month} lines", key="unbilled-lines")

st.subheader("Invoices and payment")
if invoices_month is None:
    st.info("No invoice has been issued yet.")
else:
    ui.table(data.invoices, f"documents {invoices_month}", key="invoices")
    numbers = data.invoices.get_column("number").to_list()
    number = st.selectbox("Invoice PDF", numbers, key="finance-pdf-number")
    if number:
        with ui.shown_errors():
            pdf = views.invoice_pdf(site, str(number))
        st.download_button(
            f"Download {pdf.file_name}",
            data=pdf.data,
            file_name=pdf.file_name,
            mime="application/pdf",
            key="finance-pdf",
            on_click="ignore",
            icon=":material/picture_as_pdf:",
        )

st.subheader("Credit notes")
if not data.credit_notes.height:
    st.info("No credit note has been issued.")
else:
    ui.table(data.credit_notes, "credit notes", key="credit-notes")
