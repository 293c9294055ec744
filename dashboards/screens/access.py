"""Access (admins): who may sign in with which role, and the latest refused sign-ins."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import ui, views
from dashboards.roles import Page, pages_for

ctx = ui.context(Page.ACCESS)
st.title("Access")
st.caption("Users are managed with `gpumeter users add|list|remove`; passwords are stored as argon2id hashes only.")

with ui.shown_errors():
    data = views.access_data(ctx.site)

users = pl.DataFrame(
    [
        {
            "name": u.name,
            "role": u.role.value,
            "tenant": u.tenant,
            "pages": ", ".join(p.value for p in pages_for(u.viewer())),
            "created_at": u.created_at,
            "last_login_at": u.last_login_at,
        }
        for u in data.users
    ],
    schema={
        "name": pl.String,
        "role": pl.String,
        "tenant": pl.String,
        "pages": pl.String,
        "created_at": pl.Datetime("us", "UTC"),
        "last_login_at": pl.Datetime("us", "UTC"),
    },
)
st.subheader("Users")
ui.table(users, "dashboard users", key="users")

st.subheader("Refused sign-ins")
st.caption("Attempts whose password was checked and failed, kept 30 days. The client is its address (an IPv6 /64).")
failures = pl.DataFrame(
    data.failures,
    schema={"failed_at": pl.Datetime("us", "UTC"), "name": pl.String, "client": pl.String, "reason": pl.String},
    orient="row",
)
if not failures.height:
    st.success("No refused sign-in.")
else:
    ui.table(failures, "refused sign-ins", key="failures")

turned_away = pl.DataFrame(
    [(r.at, r.name, r.client, r.reason) for r in data.turned_away],
    schema={"at": pl.Datetime("us", "UTC"), "name": pl.String, "client": pl.String, "reason": pl.String},
    orient="row",
)
if turned_away.height:
    st.subheader("Turned away without a check")
    st.caption(
        "Attempts refused by the backoff (or while the server was busy) since the dashboards started: "
        "kept in memory, the latest 200, never written to the store."
    )
    ui.table(turned_away, "sign-ins turned away", key="turned-away")
