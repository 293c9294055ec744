"""A signed-in browser tab: who, since when, last active — and the check each use makes.

A :class:`Session` lives in the tab's Streamlit session state. It ends when

* the user signs out;
* nothing happened for ``[dashboard] session_idle`` (default ``"30m"``): every page run
  is activity, and so is a bundle download;
* the user is removed, or their password changed after the session began (``gpumeter
  users add NAME --replace`` is how a password is reset, so a reset ends every session of
  the old password);

and while it lasts it follows the user's role and tenant as the store has them: each page
run re-reads the user (:func:`resume`). A privileged action that runs outside a page run
— the Auditor page's deferred bundle download, which Streamlit calls in another thread
when the button is clicked — calls :func:`verify` with the viewer the page was drawn for:
the store's user must still be exactly that viewer, in a live session, at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dashboards.auth import find_user
from dashboards.errors import AccessDenied
from dashboards.reader import StoreAccess
from dashboards.roles import Viewer


@dataclass
class Session:
    """Mutable on purpose: a page run and a download's thread see the same one."""

    viewer: Viewer
    signed_in_at: datetime
    last_active_at: datetime
    ended: str | None = None  # why it ended (a SessionCheck reason)


@dataclass(frozen=True)
class SessionCheck:
    viewer: Viewer | None  # the store's viewer now, when the session goes on
    reason: str | None  # None | signed_out | idle | removed | password_changed

    @property
    def passed(self) -> bool:
        return self.viewer is not None


def start(viewer: Viewer, now: datetime) -> Session:
    return Session(viewer, now, now)


def idle_text(idle_s: float) -> str:
    minutes = idle_s / 60
    if minutes >= 1 and minutes == int(minutes):
        return f"{int(minutes)} minute{'s' if minutes != 1 else ''}"
    return f"{idle_s:g} seconds"


def message(reason: str | None, idle_s: float) -> str | None:
    """What the sign-in page says about a session that ended (None: nothing)."""
    if reason == "idle":
        return f"Your session ended after {idle_text(idle_s)} without activity; sign in again."
    if reason == "password_changed":
        return "Your password was changed; sign in again."
    return None


def check(access: StoreAccess, session: Session, *, now: datetime, idle_s: float) -> SessionCheck:
    """Whether ``session`` goes on at ``now``, and as which viewer (reads the store)."""
    if session.ended is not None:
        return SessionCheck(None, session.ended)
    if now - session.last_active_at > timedelta(seconds=idle_s):
        return SessionCheck(None, "idle")
    user = find_user(access, session.viewer.name)
    if user is None:
        return SessionCheck(None, "removed")
    if user.password_changed_at > session.signed_in_at:
        return SessionCheck(None, "password_changed")
    return SessionCheck(Viewer(user.name, user.role, user.tenant, session.viewer.via), None)


def _use(session: Session, result: SessionCheck, now: datetime) -> SessionCheck:
    if result.viewer is None:
        session.ended = result.reason
    else:
        session.viewer = result.viewer
        session.last_active_at = max(session.last_active_at, now)
    return result


def resume(access: StoreAccess, session: Session, *, now: datetime, idle_s: float) -> SessionCheck:
    """A page run: :func:`check`, then note the activity (or that the session ended)."""
    return _use(session, check(access, session, now=now, idle_s=idle_s), now)


def end(session: Session) -> None:
    session.ended = "signed_out"


def verify(access: StoreAccess, session: Session, drawn: Viewer, *, now: datetime, idle_s: float) -> Viewer:
    """The viewer for a privileged action at ``now``: the session goes on and the store's
    user is still ``drawn`` (same name, role and tenant); else :class:`AccessDenied`."""
    result = _use(session, check(access, session, now=now, idle_s=idle_s), now)
    if result.viewer is None:
        raise AccessDenied(f"the session of {drawn.name} has ended ({result.reason})")
    if result.viewer != drawn:
        raise AccessDenied(f"{drawn.name}'s role or tenant changed since the page was drawn; reload it")
    return result.viewer
