"""Sign in: a name and password form, or OpenID Connect when ``[dashboard] oidc = true``."""

from __future__ import annotations

import streamlit as st

from dashboards import auth, ui

site, now = ui.site_and_now()
st.title("gpumeter")
st.caption(f"Metering, invoicing and sovereignty audit of {site.config.audit.origin}")
notice = st.session_state.get(ui.NOTICE_KEY)
if isinstance(notice, str):
    st.info(notice)

if site.settings.oidc:
    if not st.user.is_logged_in:
        st.button(
            "Sign in with your identity provider",
            on_click=st.login,
            args=(site.settings.oidc_provider or None,) if site.settings.oidc_provider else (),
            type="primary",
        )
    else:
        claims = st.user.to_dict()
        refused = st.session_state.get("oidc-refused")  # record a refusal once, not on every rerun
        if not (isinstance(refused, tuple) and refused[0] == claims):
            with ui.shown_errors():
                result = auth.sign_in_oidc(
                    site.access, claims, site.settings.oidc_claim, client=ui.client_address(site), now=now
                )
            if result.viewer is not None:
                ui.start_session(result.viewer, now)
                st.rerun()
            refused = st.session_state["oidc-refused"] = (claims, result.message)
        st.error(refused[1])
        st.button("Sign out", on_click=st.logout)
else:
    with st.form("sign-in"):
        name = st.text_input("User name", key="sign-in-name")
        password = st.text_input("Password", type="password", key="sign-in-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        with ui.shown_errors():
            result = auth.sign_in(site.access, name, password, client=ui.client_address(site), now=now)
        if result.viewer is not None:
            ui.start_session(result.viewer, now)
            st.rerun()
        st.error(result.message)
