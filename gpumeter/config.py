"""gpumeter.toml, parsed once into frozen dataclasses.

Every path in the file is relative to the file itself. Only the CLI and the Streamlit
entrypoint read the environment; the passphrase of the audit key is passed in, never read
here.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gpumeter.errors import ConfigError, Problems, read_text, strict

T = TypeVar("T")

DEFAULT_CONFIG = Path("gpumeter.toml")

_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def parse_duration_ms(text: str, *, file: Path | None = None, key: str = "") -> int:
    """'15s' -> 15000. Prometheus-style single-unit durations only."""
    m = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not m or int(m.group(1)) == 0:
        raise ConfigError(f"{key} must be a duration such as '15s'", file=file, value=text)
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


@dataclass(frozen=True)
class StoreConfig:
    database: Path


@dataclass(frozen=True)
class TelemetryConfig:
    prometheus_url: str
    scrape_interval_ms: int
    job_label: str
    idle_job_ids: tuple[str, ...]
    timeout_s: float = 120.0
    retries: int = 4

    @property
    def scrape_interval_s(self) -> int:
        return self.scrape_interval_ms // 1000


@dataclass(frozen=True)
class InventoryConfig:
    nodes: Path
    storage: Path
    jobs: Path
    tenants: Path


@dataclass(frozen=True)
class Supplier:
    legal_name: str
    country: str
    vat_id: str
    address: str = ""
    city: str = ""
    postcode: str = ""
    siren: str = ""
    legal_form: str = ""
    share_capital: str = ""
    rcs: str = ""
    email: str = ""
    iban: str = ""
    payment_terms_days: int = 30


@dataclass(frozen=True)
class BillingConfig:
    rates: Path
    supplier: Supplier
    output: Path


@dataclass(frozen=True)
class AuditConfig:
    origin: str
    signing_key: Path
    allowed_countries: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    path: Path
    store: StoreConfig
    telemetry: TelemetryConfig
    inventory: InventoryConfig
    billing: BillingConfig
    audit: AuditConfig
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def _table(doc: dict[str, Any], name: str, file: Path, problems: Problems) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        problems.add(ConfigError(f"[{name}] must be a table", file=file, value=value))
        return {}
    return value


def _str(tbl: dict[str, Any], key: str, section: str, file: Path, default: str | None = None) -> str:
    value = tbl.get(key, default)
    if value is None:
        raise ConfigError(f"[{section}] {key} is required", file=file)
    if not isinstance(value, str):
        raise ConfigError(f"[{section}] {key} must be a string", file=file, value=value)
    return value


def _strings(tbl: dict[str, Any], key: str, section: str, file: Path, default: list[str]) -> tuple[str, ...]:
    value = tbl.get(key, default)
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ConfigError(f"[{section}] {key} must be a list of strings", file=file, value=value)
    return tuple(value)


def _job_label(tel: dict[str, Any], file: Path) -> str:
    job_label = _str(tel, "job_label", "telemetry", file, "hpc_job")
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", job_label):
        raise ConfigError("[telemetry] job_label is not a Prometheus label name", file=file, value=job_label)
    return job_label


def _interval_ms(tel: dict[str, Any], file: Path) -> int:
    interval_ms = parse_duration_ms(
        _str(tel, "scrape_interval", "telemetry", file, "15s"), file=file, key="[telemetry] scrape_interval"
    )
    if interval_ms % 1000:
        raise ConfigError("[telemetry] scrape_interval must be whole seconds", file=file, value=interval_ms)
    if 3_600_000 % interval_ms:
        raise ConfigError("[telemetry] scrape_interval must divide one hour", file=file, value=interval_ms)
    return interval_ms


def _supplier(bil: dict[str, Any], file: Path) -> Supplier:
    sup = bil.get("supplier", {})
    if not isinstance(sup, dict):
        raise ConfigError("[billing] supplier must be a table", file=file, value=sup)
    known = set(Supplier.__dataclass_fields__)
    unknown = set(sup) - known
    if unknown:
        raise ConfigError("[billing] supplier has unknown keys", file=file, value=sorted(unknown))
    for key in ("legal_name", "country", "vat_id"):
        _str(sup, key, "billing.supplier", file, "")
    # A site that only meters may leave the supplier out; billing refuses to issue without it.
    return Supplier(**{"legal_name": "", "country": "", "vat_id": "", **sup})


def _timeout_s(tel: dict[str, Any], file: Path) -> float:
    timeout = tel.get("timeout_s", 120.0)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError("[telemetry] timeout_s must be a positive number", file=file, value=timeout)
    return float(timeout)


def _retries(tel: dict[str, Any], file: Path) -> int:
    retries = tel.get("retries", 4)
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError("[telemetry] retries must be a non-negative integer", file=file, value=retries)
    return retries


def load_config(path: str | Path = DEFAULT_CONFIG, problems: Problems | None = None) -> Config:
    """Read and check gpumeter.toml; relative paths resolve against its folder.

    An unreadable file or invalid TOML always raises. Every bad value goes to
    ``problems`` (default: raise the first); a kept problem leaves that key's default.
    """
    problems = strict(problems)
    file = Path(path)
    text = read_text(file, "configuration", ConfigError)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from exc
    base = file.resolve().parent

    Table = dict[str, Any]

    def checked(read: Callable[[Table], T], tbl: Table) -> T:
        """``read(tbl)``; once its problem is reported (when kept), the default: ``read({})``."""
        with problems.guard():
            return read(tbl)
        return read({})

    def string(tbl: Table, key: str, section: str, default: str) -> str:
        return checked(lambda t: _str(t, key, section, file, default), tbl)

    def rel(tbl: Table, key: str, section: str, default: str) -> Path:
        return (base / string(tbl, key, section, default)).resolve()

    store = _table(doc, "store", file, problems)
    tel = _table(doc, "telemetry", file, problems)
    inv = _table(doc, "inventory", file, problems)
    bil = _table(doc, "billing", file, problems)
    aud = _table(doc, "audit", file, problems)

    return Config(
        path=file.resolve(),
        store=StoreConfig(database=rel(store, "database", "store", "var/gpumeter.duckdb")),
        telemetry=TelemetryConfig(
            prometheus_url=string(tel, "prometheus_url", "telemetry", "http://127.0.0.1:9090"),
            scrape_interval_ms=checked(lambda t: _interval_ms(t, file), tel),
            job_label=checked(lambda t: _job_label(t, file), tel),
            idle_job_ids=checked(lambda t: _strings(t, "idle_job_ids", "telemetry", file, ["", "0"]), tel),
            timeout_s=checked(lambda t: _timeout_s(t, file), tel),
            retries=checked(lambda t: _retries(t, file), tel),
        ),
        inventory=InventoryConfig(
            nodes=rel(inv, "nodes", "inventory", "nodes.csv"),
            storage=rel(inv, "storage", "inventory", "storage.csv"),
            jobs=rel(inv, "jobs", "inventory", "jobs.csv"),
            tenants=rel(inv, "tenants", "inventory", "tenants.csv"),
        ),
        billing=BillingConfig(
            rates=rel(bil, "rates", "billing", "rates.toml"),
            supplier=checked(lambda t: _supplier(t, file), bil),
            output=rel(bil, "output", "billing", "var/invoices"),
        ),
        audit=AuditConfig(
            origin=string(aud, "origin", "audit", "gpumeter.example.eu/audit"),
            signing_key=rel(aud, "signing_key", "audit", "keys/audit.key"),
            allowed_countries=checked(lambda t: _strings(t, "allowed_countries", "audit", file, ["EU"]), aud),
        ),
        raw=doc,
    )
