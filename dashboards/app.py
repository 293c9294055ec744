"""The gpumeter dashboards: the one Streamlit entrypoint (``gpumeter dashboard`` runs it).

Each run: read the configuration named by ``GPUMETER_DASHBOARD_CONFIG`` (set by the CLI for
this process; with the audit passphrase, the only environment this package reads), take
one reference time, resume the tab's session (:mod:`dashboards.sessions`: it ends when
idle, signed out, or its user is removed or has a new password; it follows a changed
role), and register with ``st.navigation`` exactly the pages that role may open — a
signed-out session has only the sign-in page. Pages live in ``screens/`` and only draw; their data
comes from :mod:`dashboards.views`.

The folder is deliberately not called ``pages/``: Streamlit treats a ``pages/`` folder
beside the entrypoint as its old multipage layout, which runs a page script requested by
URL *without* the entrypoint, and so without the navigation that keeps a role to its pages.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from dashboards import sessions, ui, views
from dashboards.roles import ICONS, TITLES, Role, Viewer, pages_for
from dashboards.settings import CONFIG_ENV, PASSPHRASE_ENV, Site, open_site
from gpumeter.config import load_config
from gpumeter.errors import ConfigError, GpumeterError

SCREENS = Path(__file__).resolve().parent / "screens"


def _logging() -> None:
    """Sign-in lines go to stderr, once per process (this script runs on every rerun)."""
    logger = logging.getLogger("gpumeter.dashboards")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _site() -> Site:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"{CONFIG_ENV} is not set; start the dashboards with `gpumeter dashboard`")
    return open_site(load_config(Path(path)), passphrase=os.environ.get(PASSPHRASE_ENV) or None)


def _sign_out() -> None:
    st.session_state.pop(ui.VIEWER_KEY, None)
    session = st.session_state.pop(ui.SESSION_KEY, None)
    if isinstance(session, sessions.Session):
        sessions.end(session)  # a download function still bound to it is refused from now on
        if session.viewer.via == "oidc":
            st.logout()


def _resume(site: Site, now: datetime) -> Viewer | None:
    """The tab's viewer for this run, or None (the session is gone; the sign-in page says why)."""
    session = st.session_state.get(ui.SESSION_KEY)
    if not isinstance(session, sessions.Session):
        return None
    result = sessions.resume(site.access, session, now=now, idle_s=site.settings.session_idle_s)
    if result.viewer is not None:
        return result.viewer
    st.session_state.pop(ui.SESSION_KEY, None)
    notice = sessions.message(result.reason, site.settings.session_idle_s)
    if notice:
        st.session_state[ui.NOTICE_KEY] = notice
    if session.viewer.via == "oidc":
        st.logout()  # else the provider's identity cookie would sign the tab straight back in
    return None


def main() -> None:
    st.set_page_config(page_title="gpumeter", page_icon=":material/memory:", layout="wide")
    _logging()
    now = datetime.now(UTC)
    try:
        site = _site()
    except GpumeterError as exc:
        st.error(exc.explain())
        st.stop()
    with site.access.session():  # this run's reads share one short read-only connection
        _run(site, now)


def _run(site: Site, now: datetime) -> None:
    try:
        views.version(site)  # the store is there and migrated, or one line says what to do
        viewer = _resume(site, now)
    except GpumeterError as exc:
        st.error(exc.explain())
        st.stop()
    st.session_state[ui.SITE_KEY] = site
    st.session_state[ui.NOW_KEY] = now
    if viewer is None:
        st.session_state.pop(ui.VIEWER_KEY, None)
        st.navigation([st.Page(SCREENS / "sign_in.py", title="Sign in", icon=":material/login:")]).run()
        return
    st.session_state[ui.VIEWER_KEY] = viewer
    pages = [
        st.Page(SCREENS / f"{page.value}.py", title=TITLES[page], icon=ICONS[page], url_path=page.value)
        for page in pages_for(viewer)
    ]
    navigation = st.navigation(pages)
    with st.sidebar:
        if viewer.role is Role.TENANT:
            role = f"tenant {viewer.tenant}"
        else:
            role = viewer.role.value + (f", tenant {viewer.tenant}" if viewer.tenant else "")
        st.caption(f"Signed in as **{viewer.name}** ({role})")
        st.button("Sign out", on_click=_sign_out, icon=":material/logout:")
        st.caption(f"Times in UTC. {site.config.audit.origin}")
    navigation.run()


if __name__ == "__main__":
    main()
