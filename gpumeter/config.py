"""gpumeter.toml, parsed once into frozen dataclasses.

Every path in the file is relative to the file itself. Only the CLI and the Streamlit
entrypoint read the environment; the passphrase of the audit key is passed in, never read
here.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpumeter.errors import ConfigError
from gpumeter.party import Party, compact_id

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
class BillingConfig:
    rates: Path
    supplier: Party  # [billing] supplier, less payment_terms_days
    output: Path
    payment_terms_days: int = 30  # [billing] supplier.payment_terms_days
    contracts: Path | None = None  # [billing] contracts (optional): reservations, minimum spend, credits


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


def _table(doc: dict[str, Any], name: str, file: Path) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table", file=file, value=value)
    return value


def _str(tbl: dict[str, Any], key: str, section: str, file: Path, default: str | None = None) -> str:
    value = tbl.get(key, default)
    if value is None:
        raise ConfigError(f"[{section}] {key} is required", file=file)
    if not isinstance(value, str):
        raise ConfigError(f"[{section}] {key} must be a string", file=file, value=value)
    return value


_SUPPLIER_KEYS = tuple(k for k in Party.__dataclass_fields__ if k != "identifier")


def _supplier(sup: object, file: Path) -> tuple[Party, int]:
    """``[billing] supplier``: the supplier as a :class:`Party`, and its payment terms in days.

    A site that only meters may leave the supplier out; billing refuses to issue without it.
    """
    if not isinstance(sup, dict):
        raise ConfigError("[billing] supplier must be a table", file=file, value=sup)
    unknown = set(sup) - {*_SUPPLIER_KEYS, "payment_terms_days"}
    if unknown:
        raise ConfigError("[billing] supplier has unknown keys", file=file, value=sorted(unknown))
    values = {key: _str(sup, key, "billing.supplier", file, "") for key in _SUPPLIER_KEYS}
    days = sup.get("payment_terms_days", 30)
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ConfigError("[billing] supplier payment_terms_days must be a whole number of days", file=file, value=days)
    values["vat_id"] = compact_id(values["vat_id"])
    values["siren"] = compact_id(values["siren"])
    return Party(**values), days


def load_config(path: str | Path = DEFAULT_CONFIG) -> Config:
    """Read and check gpumeter.toml; relative paths resolve against its folder."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration: {exc.strerror or exc}", file=file) from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from exc
    base = file.resolve().parent

    def rel(p: str) -> Path:
        return (base / p).resolve()

    store = _table(doc, "store", file)
    tel = _table(doc, "telemetry", file)
    inv = _table(doc, "inventory", file)
    bil = _table(doc, "billing", file)
    aud = _table(doc, "audit", file)

    idle = tel.get("idle_job_ids", ["", "0"])
    if not isinstance(idle, list) or not all(isinstance(x, str) for x in idle):
        raise ConfigError("[telemetry] idle_job_ids must be a list of strings", file=file, value=idle)
    job_label = _str(tel, "job_label", "telemetry", file, "hpc_job")
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", job_label):
        raise ConfigError("[telemetry] job_label is not a Prometheus label name", file=file, value=job_label)
    interval_ms = parse_duration_ms(
        _str(tel, "scrape_interval", "telemetry", file, "15s"), file=file, key="[telemetry] scrape_interval"
    )
    if interval_ms % 1000:
        raise ConfigError("[telemetry] scrape_interval must be whole seconds", file=file, value=interval_ms)
    if 3_600_000 % interval_ms:
        raise ConfigError("[telemetry] scrape_interval must divide one hour", file=file, value=interval_ms)

    supplier, payment_terms_days = _supplier(bil.get("supplier", {}), file)

    allowed = aud.get("allowed_countries", ["EU"])
    if not isinstance(allowed, list) or not all(isinstance(x, str) for x in allowed):
        raise ConfigError("[audit] allowed_countries must be a list of strings", file=file, value=allowed)

    timeout = tel.get("timeout_s", 120.0)
    retries = tel.get("retries", 4)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError("[telemetry] timeout_s must be a positive number", file=file, value=timeout)
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError("[telemetry] retries must be a non-negative integer", file=file, value=retries)

    return Config(
        path=file.resolve(),
        store=StoreConfig(database=rel(_str(store, "database", "store", file, "var/gpumeter.duckdb"))),
        telemetry=TelemetryConfig(
            prometheus_url=_str(tel, "prometheus_url", "telemetry", file, "http://127.0.0.1:9090"),
            scrape_interval_ms=interval_ms,
            job_label=job_label,
            idle_job_ids=tuple(idle),
            timeout_s=float(timeout),
            retries=retries,
        ),
        inventory=InventoryConfig(
            nodes=rel(_str(inv, "nodes", "inventory", file, "nodes.csv")),
            storage=rel(_str(inv, "storage", "inventory", file, "storage.csv")),
            jobs=rel(_str(inv, "jobs", "inventory", file, "jobs.csv")),
            tenants=rel(_str(inv, "tenants", "inventory", file, "tenants.csv")),
        ),
        billing=BillingConfig(
            rates=rel(_str(bil, "rates", "billing", file, "rates.toml")),
            supplier=supplier,
            output=rel(_str(bil, "output", "billing", file, "var/invoices")),
            payment_terms_days=payment_terms_days,
            contracts=rel(_str(bil, "contracts", "billing", file)) if "contracts" in bil else None,
        ),
        audit=AuditConfig(
            origin=_str(aud, "origin", "audit", file, "gpumeter.example.eu/audit"),
            signing_key=rel(_str(aud, "signing_key", "audit", file, "keys/audit.key")),
            allowed_countries=tuple(allowed),
        ),
        raw=doc,
    )
