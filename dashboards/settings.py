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

Everything is optional. The signing-key passphrase (for exports) is handed in by the
entrypoint, which alone reads the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dashboards.reader import StoreAccess
from gpumeter.config import Config, parse_duration_ms
from gpumeter.errors import ConfigError

#: The environment the entrypoint reads (set by ``gpumeter dashboard`` for its child).
CONFIG_ENV = "GPUMETER_DASHBOARD_CONFIG"
PASSPHRASE_ENV = "GPUMETER_AUDIT_PASSPHRASE"  # noqa: S105 - the name of the variable, not a secret

_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")
_KEYS: dict[str, type | tuple[type, ...]] = {
    "oidc": bool,
    "oidc_provider": str,
    "oidc_claim": str,
    "read_wait_s": (int, float),
    "write_wait_s": (int, float),
    "version_ttl_s": (int, float),
    "session_idle": str,
    "trusted_proxy_header": str,
}


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
    """Parse ``[dashboard]``; an unknown key or a bad value names the file and the key."""
    raw = config.raw.get("dashboard", {})
    if not isinstance(raw, dict):
        raise ConfigError("[dashboard] must be a table", file=config.path, value=raw)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        kind = _KEYS.get(key)
        if kind is None:
            raise ConfigError(
                f"[dashboard] has an unknown key (keys: {', '.join(sorted(_KEYS))})", file=config.path, value=key
            )
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise ConfigError(f"[dashboard] {key} has the wrong type", file=config.path, value=value)
        values[key] = value
        if key == "session_idle" and isinstance(value, str):
            del values[key]
            idle_ms = parse_duration_ms(value, file=config.path, key="[dashboard] session_idle")
            values["session_idle_s"] = idle_ms / 1000
        if key == "trusted_proxy_header" and isinstance(value, str) and value and not _HEADER.fullmatch(value):
            raise ConfigError(
                "[dashboard] trusted_proxy_header must be an HTTP header name", file=config.path, value=value
            )
        if isinstance(value, int | float) and key.endswith("_s"):
            seconds = float(value)
            if seconds < 0:
                raise ConfigError(f"[dashboard] {key} must not be negative", file=config.path, value=value)
            values[key] = seconds
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
