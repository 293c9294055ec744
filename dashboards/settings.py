"""``[dashboard]`` of gpumeter.toml, and the site a dashboard process serves.

::

    [dashboard]
    oidc = false              # true: sign in through st.login (OpenID Connect) instead of passwords
    oidc_provider = ""        # the provider under [auth.<name>] in .streamlit/secrets.toml ("" = [auth])
    oidc_claim = "email"      # the identity claim that names the dashboard user
    read_wait_s = 30          # how long a page waits for a writer (collect) to let go of the store
    write_wait_s = 30         # the same for the dashboard's own writes (failed sign-ins, exports)
    version_ttl_s = 2         # how often the data's version is re-read (0: on every page run)
    session_idle = "30m"      # a session ends after this long without activity ("15m", "2h", …)
    trusted_proxy_header = "" # e.g. "X-Forwarded-For": the reverse proxy in front sets the client's address
                              # there; "" = the socket's address (set it only behind such a proxy)

Everything is optional; the keys and their types are checked when gpumeter.toml is read
(unknown keys and wrong types are refused there). The signing-key passphrase (for exports)
is handed in by the entrypoint, which alone reads the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dashboards.reader import StoreAccess
from gpumeter.config import Config, parse_duration_ms

#: The environment the entrypoint reads (set by ``gpumeter dashboard`` for its child).
CONFIG_ENV = "GPUMETER_DASHBOARD_CONFIG"
PASSPHRASE_ENV = "GPUMETER_AUDIT_PASSPHRASE"  # noqa: S105 - the name of the variable, not a secret

_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")


@dataclass(frozen=True)
class DashboardSettings:
    oidc: bool = False
    oidc_provider: str = ""
    oidc_claim: str = "email"
    read_wait_s: float = 30.0
    write_wait_s: float = 30.0
    version_ttl_s: float = 2.0
    session_idle_s: float = 1800.0
    trusted_proxy_header: str = ""


def dashboard_settings(config: Config) -> DashboardSettings:
    """``[dashboard]`` as settings. Its keys and their types are declared and checked with the
    rest of gpumeter.toml (``gpumeter.config.TABLES``); what is left here is their meaning."""
    raw: dict[str, Any] = config.raw.get("dashboard", {})
    values: dict[str, Any] = {k: v for k, v in raw.items() if k in DashboardSettings.__dataclass_fields__}
    if "session_idle" in raw:
        values["session_idle_s"] = parse_duration_ms(raw["session_idle"]) / 1000
    header = values.get("trusted_proxy_header", "")
    if header and not _HEADER.fullmatch(header):
        raise config.bad("dashboard", "trusted_proxy_header", "must be an HTTP header name", header)
    for key, value in values.items():
        if key.endswith("_s"):
            if value < 0:
                raise config.bad("dashboard", key, "must not be negative", value)
            values[key] = float(value)
    return DashboardSettings(**values)


@dataclass(frozen=True)
class Site:
    """One gpumeter site as a dashboard process serves it."""

    config: Config
    settings: DashboardSettings
    access: StoreAccess
    passphrase: str | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        """What cached results of this site are filed under: its database path."""
        return str(self.access.path)

    @property
    def interval_ms(self) -> int:
        return self.config.telemetry.scrape_interval_ms


def open_site(config: Config, *, passphrase: str | None = None) -> Site:
    settings = dashboard_settings(config)
    access = StoreAccess(
        Path(config.store.database), read_wait_s=settings.read_wait_s, write_wait_s=settings.write_wait_s
    )
    return Site(config, settings, access, passphrase)


def file_version(path: Path) -> str:
    """A cheap version of a small file the dashboards read (rates.toml, the key ring)."""
    try:
        st = path.stat()
    except OSError:
        return "absent"
    return f"{st.st_mtime_ns}:{st.st_size}"
