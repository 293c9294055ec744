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
from gpumeter.party import Party, compact_id

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
class BillingConfig:
    rates: Path
    supplier: Party  # [billing] supplier, less payment_terms_days
    output: Path
    payment_terms_days: int = 30  # [billing] supplier.payment_terms_days
    contracts: Path | None = None  # [billing] contracts (optional): reservations, minimum spend, credits


@dataclass(frozen=True)
class WitnessConfig:
    """One ``[audit] witnesses`` entry: a name for policies, its submission URL, its vkey."""

    name: str
    url: str
    vkey: str


@dataclass(frozen=True)
class AuditConfig:
    origin: str
    signing_key: Path
    allowed_countries: tuple[str, ...]
    witnesses: tuple[WitnessConfig, ...] = ()
    quorum: int = 0  # how many of ``witnesses`` must cosign (default: all of them)
    tsa_url: str | None = None  # an RFC 3161 time-stamping authority for each checkpoint
    tsa_cert: Path | None = None  # its pinned certificate (PEM) to check each token on receipt


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


_SUPPLIER_KEYS = tuple(k for k in Party.__dataclass_fields__ if k not in ("identifier", "einvoice"))  # customer only


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


_WITNESS_KEYS = frozenset(WitnessConfig.__dataclass_fields__)


def _http_url(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"https?://[^\s/?#]+[^\s]*", value) is not None


def _witnesses(aud: dict[str, Any], file: Path) -> tuple[tuple[WitnessConfig, ...], int]:
    """``[audit] witnesses`` and ``quorum``: unknown keys, duplicates and bad values refused."""
    raw = aud.get("witnesses", [])
    if not isinstance(raw, list):
        raise ConfigError("[audit] witnesses must be a list of { name, url, vkey } tables", file=file, value=raw)
    out: list[WitnessConfig] = []
    for n, item in enumerate(raw, start=1):
        where = f"[audit] witnesses entry {n}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a {{ name, url, vkey }} table", file=file, value=item)
        unknown = set(item) - _WITNESS_KEYS
        if unknown:
            raise ConfigError(f"{where} has unknown keys", file=file, value=sorted(unknown))
        missing = sorted(_WITNESS_KEYS - set(item))
        if missing:
            raise ConfigError(f"{where} lacks {', '.join(missing)}", file=file)
        name, url, vkey = item["name"], item["url"], item["vkey"]
        if not isinstance(name, str) or not re.fullmatch(r"[^\s]+", name) or name == "none":
            raise ConfigError(f"{where}: name must be one word (not 'none')", file=file, value=name)
        if not _http_url(url):
            raise ConfigError(f"{where}: url must be an http:// or https:// URL", file=file, value=url)
        if not isinstance(vkey, str) or vkey.count("+") < 2:
            raise ConfigError(f"{where}: vkey must be a <name>+<hex8>+<base64> string", file=file, value=vkey)
        if any(w.name == name for w in out):
            raise ConfigError("[audit] witnesses names a witness twice", file=file, value=name)
        out.append(WitnessConfig(name, url.rstrip("/"), vkey))
    quorum = aud.get("quorum", len(out))
    if isinstance(quorum, bool) or not isinstance(quorum, int) or not 0 <= quorum <= len(out):
        raise ConfigError(
            f"[audit] quorum must be a whole number from 0 to the {len(out)} witness(es) listed",
            file=file,
            value=quorum,
        )
    return tuple(out), quorum


def _tsa_url(aud: dict[str, Any], file: Path) -> str | None:
    tsa_url = aud.get("tsa_url")
    if tsa_url is not None and not _http_url(tsa_url):
        raise ConfigError("[audit] tsa_url must be an http:// or https:// URL", file=file, value=tsa_url)
    return tsa_url


def _tsa_cert(aud: dict[str, Any], file: Path) -> str | None:
    tsa_cert = aud.get("tsa_cert")
    if tsa_cert is not None and not isinstance(tsa_cert, str):
        raise ConfigError("[audit] tsa_cert must be a path to a PEM certificate", file=file, value=tsa_cert)
    return tsa_cert


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

    def rel_or_none(value: str | None) -> Path | None:
        return (base / value).resolve() if value is not None else None

    store = _table(doc, "store", file, problems)
    tel = _table(doc, "telemetry", file, problems)
    inv = _table(doc, "inventory", file, problems)
    bil = _table(doc, "billing", file, problems)
    aud = _table(doc, "audit", file, problems)
    supplier, payment_terms_days = checked(lambda t: _supplier(t.get("supplier", {}), file), bil)
    witnesses, quorum = checked(lambda t: _witnesses(t, file), aud)

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
            supplier=supplier,
            output=rel(bil, "output", "billing", "var/invoices"),
            payment_terms_days=payment_terms_days,
            contracts=rel_or_none(
                checked(lambda t: _str(t, "contracts", "billing", file) if "contracts" in t else None, bil)
            ),
        ),
        audit=AuditConfig(
            origin=string(aud, "origin", "audit", "gpumeter.example.eu/audit"),
            signing_key=rel(aud, "signing_key", "audit", "keys/audit.key"),
            allowed_countries=checked(lambda t: _strings(t, "allowed_countries", "audit", file, ["EU"]), aud),
            witnesses=witnesses,
            quorum=quorum,
            tsa_url=checked(lambda t: _tsa_url(t, file), aud),
            tsa_cert=rel_or_none(checked(lambda t: _tsa_cert(t, file), aud)),
        ),
        raw=doc,
    )
