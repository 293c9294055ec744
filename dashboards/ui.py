"""What every page does the same way: its context, month pickers, tables with CSV, errors.

The entrypoint puts the site, the signed-in viewer and the run's reference time in
session state before it runs a page; pages take them from :func:`context`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Literal

import polars as pl
import streamlit as st

from dashboards import exports, ratelimit, sessions
from dashboards.errors import AccessDenied
from dashboards.roles import Page, Viewer, may_open
from dashboards.settings import Site
from gpumeter.csvcells import text_columns
from gpumeter.errors import GpumeterError

SITE_KEY = "gpumeter.site"
VIEWER_KEY = "gpumeter.viewer"  # this run's viewer, as the store has it (set by the entrypoint)
SESSION_KEY = "gpumeter.session"  # the tab's sessions.Session
NOW_KEY = "gpumeter.now"
NOTICE_KEY = "gpumeter.notice"  # why the last session ended, for the sign-in page


@dataclass(frozen=True)
class PageContext:
    site: Site
    viewer: Viewer
    now: datetime


def context(page: Page) -> PageContext:
    """The site, viewer and reference time of this run; refuses a page the role may not open."""
    site = st.session_state.get(SITE_KEY)
    viewer = st.session_state.get(VIEWER_KEY)
    now = st.session_state.get(NOW_KEY)
    if not isinstance(site, Site) or not isinstance(viewer, Viewer) or not isinstance(now, datetime):
        st.error("Sign in first.")
        st.stop()
    if not may_open(viewer, page):
        raise AccessDenied(f"the {viewer.role.value} role cannot open this page")
    return PageContext(site, viewer, now)


@contextmanager
def shown_errors() -> Iterator[None]:
    """A gpumeter error becomes one red line on the page, never a traceback."""
    try:
        yield
    except GpumeterError as exc:
        st.error(exc.explain())
        st.stop()


def month_picker(label: str, months: list[str], default: str | None, key: str) -> str:
    options = months or ([default] if default else [])
    index = options.index(default) if default in options else 0
    choice = st.selectbox(label, options, index=index, key=key)
    return str(choice)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "table"


def csv_bytes(frame: pl.DataFrame) -> bytes:
    """CSV with lists joined by ';', times in ISO 8601 (UTC), Decimals exact, and text cells
    that a spreadsheet would run as formulas prefixed with ``'`` (:mod:`gpumeter.csvcells`)."""
    out = text_columns(frame.with_columns(pl.col(pl.List(pl.String)).list.join(";")))
    return out.write_csv(datetime_format="%Y-%m-%dT%H:%M:%S%.f%:z").encode("utf-8")


def column_formats(frame: pl.DataFrame) -> dict[str, Any]:
    """How each column is shown (the values stay as they are: formats are display only)."""
    formats: dict[str, Any] = {}
    for name, dtype in frame.schema.items():
        if name.endswith("_share"):
            formats[name] = st.column_config.NumberColumn(format="percent")
        elif (isinstance(dtype, pl.Decimal) and dtype.scale == 2) or dtype == pl.Float64:  # euros; hours, kWh
            formats[name] = st.column_config.NumberColumn(format="%.2f")
        elif dtype == pl.Date:
            formats[name] = st.column_config.DateColumn(format="YYYY-MM-DD")
        elif isinstance(dtype, pl.Datetime):
            formats[name] = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", timezone="UTC")
    return formats


def table(frame: pl.DataFrame, name: str, *, key: str, height: int | Literal["auto"] = "auto") -> None:
    """A sortable table and a button that downloads exactly its rows as CSV."""
    st.dataframe(frame, hide_index=True, height=height, column_config=column_formats(frame))
    st.download_button(
        f"Download {name} (CSV)",
        data=csv_bytes(frame),
        file_name=f"{_slug(name)}.csv",
        mime="text/csv",
        key=f"csv-{key}",
        on_click="ignore",
        icon=":material/download:",
    )


def fmt_eur(amount: object) -> str:
    return f"EUR {amount:,.2f}"


def fmt_hours(hours: float) -> str:
    return f"{hours:,.1f}"


def site_and_now() -> tuple[Site, datetime]:
    """For the sign-in page, which has no viewer yet."""
    site = st.session_state.get(SITE_KEY)
    now = st.session_state.get(NOW_KEY)
    if not isinstance(site, Site) or not isinstance(now, datetime):
        st.error("Open the dashboards through `gpumeter dashboard`.")
        st.stop()
    return site, now


def client_address(site: Site) -> str:
    """The client's address: the socket's ('local' on loopback, where Streamlit hides it), or
    the one the reverse proxy named by ``[dashboard] trusted_proxy_header`` put there."""
    header = site.settings.trusted_proxy_header
    lines = st.context.headers.get_all(header) if header else []  # several lines read as one list
    headers = {header: ", ".join(lines)} if lines else {}
    return ratelimit.client_address(st.context.ip_address, headers, header)


def start_session(viewer: Viewer, now: datetime) -> None:
    """A successful sign-in: the tab's session begins (the entrypoint checks it every run)."""
    st.session_state[SESSION_KEY] = sessions.start(viewer, now)
    st.session_state.pop(NOTICE_KEY, None)


def bundle_button(site: Site, viewer: Viewer, month: str, tenant: str | None, *, label: str, key: str) -> None:
    """A download that builds the auditor bundle of ``month`` (``tenant``'s, or the whole log)
    when clicked; the session and the viewer are checked again at that moment
    (:func:`dashboards.exports.bundle_bytes`). Disabled, with the reason, when this server
    cannot sign."""
    ready = exports.check_signing(site.config, site.passphrase)
    if not ready.passed:
        st.warning(f"Bundles cannot be made here: {ready.reason}")
    st.download_button(
        label,
        data=partial(exports.bundle_bytes, site, st.session_state[SESSION_KEY], viewer, month, tenant),
        file_name=exports.bundle_name(month, tenant),
        mime="application/zip",
        key=key,
        on_click="ignore",
        type="primary",
        icon=":material/download:",
        disabled=not ready.passed,
    )
