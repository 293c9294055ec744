"""gpumeter.toml, parsed once into frozen dataclasses.

Every table and key the file may hold is declared once, in :data:`TABLES`, with its type;
:func:`load_config` refuses an unknown table, an unknown key or a wrong type before it reads
anything (an error naming the file, the line, the key and the value), then turns the values
into settings. By default the first refusal raises; ``gpumeter check`` keeps them all
(:class:`~gpumeter.errors.Problems`), each refused key reading as its default. Every path
in the file is relative to the file itself. Only the CLI and the Streamlit entrypoint read
the environment; the passphrase of the audit key is passed in, never read here.
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
from gpumeter.tomlschema import (
    BOOLEAN,
    NUMBER,
    STRING,
    STRING_TABLE,
    STRINGS,
    WHOLE,
    KeyPath,
    Kind,
    check,
    refuse,
    table,
    table_list,
)

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


def _is_duration(value: object) -> bool:
    try:
        parse_duration_ms(value)  # type: ignore[arg-type]  # a non-string is refused inside
    except ConfigError:
        return False
    return True


DURATION = Kind("a duration such as '15s'", _is_duration)
_ZERO_DURATION = re.compile(r"0+(ms|s|m|h)")
DURATION_OR_ZERO = Kind(
    "a duration such as '10m' (or '0m')",
    lambda value: _is_duration(value) or (isinstance(value, str) and bool(_ZERO_DURATION.fullmatch(value.strip()))),
)

_SUPPLIER_KEYS = tuple(k for k in Party.__dataclass_fields__ if k not in ("identifier", "einvoice"))  # customer only
_WITNESS = {"name": STRING, "url": STRING, "vkey": STRING}  # one [audit] witnesses entry: all three

#: Every table of gpumeter.toml and its keys: one line per key (docs/configuration.md
#: documents each). The modules that read a table (named beside it) check what its values
#: mean, never which keys it has or their types. "Reserved" keys are accepted and
#: type-checked for a feature that reads them; nothing does yet.
TABLES: dict[str, dict[str, Kind]] = {
    "store": {
        "database": STRING,
        "read_wait_s": NUMBER,
        "write_wait_s": NUMBER,
    },
    "telemetry": {
        "prometheus_url": STRING,
        "scrape_interval": DURATION,
        "job_label": STRING,
        "idle_job_ids": STRINGS,
        "timeout_s": NUMBER,
        "retries": WHOLE,
        "settle": DURATION_OR_ZERO,  # gpumeter serve
        "late_window": DURATION_OR_ZERO,  # gpumeter serve
        "workers": WHOLE,  # collect and serve: GPU shards queried in parallel
        "query_url": STRING,  # collect and serve through a query frontend
        "headers": STRING_TABLE,  # collect and serve (e.g. X-Scope-OrgID)
        "bearer_token_env": STRING,  # collect and serve (the variable's name, not the token)
    },
    "inventory": {
        "nodes": STRING,
        "storage": STRING,
        "jobs": STRING,
        "tenants": STRING,
    },
    "billing": {
        "rates": STRING,
        "output": STRING,
        "invoice_prefix": STRING,
        "credit_note_prefix": STRING,
        "contracts": STRING,  # invoice (contracts.toml: reservations, minimum spend, credits)
        "supplier": table(
            {
                **dict.fromkeys(_SUPPLIER_KEYS, STRING),
                "payment_terms_days": WHOLE,
            }
        ),
    },
    "audit": {
        "origin": STRING,
        "signing_key": STRING,
        "allowed_countries": STRINGS,
        "witnesses": table_list(_WITNESS, required=tuple(_WITNESS)),  # read with quorum by _witnesses
        "quorum": WHOLE,
        "tsa_url": STRING,
        "tsa_cert": STRING,
        "checkpoint_every": DURATION,  # gpumeter serve
    },
    "dashboard": {  # read by dashboards.settings
        "oidc": BOOLEAN,
        "oidc_provider": STRING,
        "oidc_claim": STRING,
        "read_wait_s": NUMBER,
        "write_wait_s": NUMBER,
        "version_ttl_s": NUMBER,
        "session_idle": DURATION,
        "trusted_proxy_header": STRING,
    },
    "alerts": {  # read by billing.alert_delivery
        "webhook_url": STRING,
        "source": STRING,
        "timeout_s": NUMBER,
        "attempts": WHOLE,
        "backoff_s": NUMBER,
    },
}


@dataclass(frozen=True)
class StoreConfig:
    database: Path
    read_wait_s: float = 30.0  # how long a reader waits for another process's lock
    write_wait_s: float = 60.0  # how long a writer (collect, invoice, stripe sync, …) waits


@dataclass(frozen=True)
class TelemetryConfig:
    prometheus_url: str
    scrape_interval_ms: int
    job_label: str
    idle_job_ids: tuple[str, ...]
    timeout_s: float = 120.0
    retries: int = 4
    settle_ms: int = 600_000  # [telemetry] settle: serve meters an hour this long after it closed
    late_window_ms: int = 6 * 3_600_000  # [telemetry] late_window: hours serve re-meters for late samples
    workers: int = 1  # [telemetry] workers: shards of GPUs metered in parallel
    query_url: str | None = None  # [telemetry] query_url: a query frontend queries go to instead
    headers: tuple[tuple[str, str], ...] = ()  # [telemetry] headers: sent with every query
    bearer_token_env: str | None = None  # [telemetry] bearer_token_env: the variable holding the token

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
    checkpoint_every_ms: int | None = None  # [audit] checkpoint_every: serve signs a checkpoint this often


@dataclass(frozen=True)
class Config:
    path: Path
    store: StoreConfig
    telemetry: TelemetryConfig
    inventory: InventoryConfig
    billing: BillingConfig
    audit: AuditConfig
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    text: str = field(default="", compare=False, repr=False)  # the file as read, for error lines

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def bad(self, table: str, key: str, message: str, value: object) -> ConfigError:
        """The error for what ``[table] key`` means (a module reading a table of :data:`TABLES`
        checks its values with it), naming this file, the key's line and the value."""
        return refuse((*table.split("."), key), message, value, file=self.path, text=self.text)


class _Reader:
    """Values of a checked document (types hold: :func:`gpumeter.tomlschema.check` ran), with
    errors about a value's meaning that name the file and the key's line."""

    def __init__(self, doc: dict[str, Any], file: Path, text: str) -> None:
        self.doc, self.file, self.text = doc, file, text

    def table(self, *path: str) -> dict[str, Any]:
        value: dict[str, Any] = self.doc
        for name in path:
            value = value.get(name, {})
        return value

    def get(self, path: str, key: str, default: Any) -> Any:
        return self.table(*path.split(".")).get(key, default)

    def bad(self, path: str, key: str, message: str, value: object) -> ConfigError:
        return self.refuse((*path.split("."), key), message, value)

    def refuse(self, at: KeyPath, message: str, value: object, line_at: KeyPath | None = None) -> ConfigError:
        return refuse(at, message, value, file=self.file, text=self.text, line_at=line_at)


def _supplier(r: _Reader) -> tuple[Party, int]:
    """``[billing] supplier``: the supplier as a :class:`Party`, and its payment terms in days.

    A site that only meters may leave the supplier out; billing refuses to issue without it.
    """
    sup = r.table("billing", "supplier")
    values = {key: sup.get(key, "") for key in _SUPPLIER_KEYS}
    days = sup.get("payment_terms_days", 30)
    if days < 0:
        raise r.bad("billing.supplier", "payment_terms_days", "must be a whole number of days", days)
    values["vat_id"] = compact_id(values["vat_id"])
    values["siren"] = compact_id(values["siren"])
    return Party(**values), days


def _seconds(r: _Reader, path: str, key: str, default: float, *, positive: bool = False) -> float:
    value = r.get(path, key, default)
    if value < 0 or (positive and value == 0):
        raise r.bad(path, key, "must be a positive number" if positive else "must not be negative", value)
    return float(value)


def _http_url(value: str) -> bool:
    return re.fullmatch(r"https?://[^\s/?#]+[^\s]*", value) is not None


def _witnesses(r: _Reader) -> tuple[tuple[WitnessConfig, ...], int]:
    """``[audit] witnesses`` and ``quorum``: names, URLs and vkeys of the right form, each name
    once, a quorum the witnesses can meet (their keys and types are declared in TABLES)."""
    out: list[WitnessConfig] = []
    for n, item in enumerate(r.get("audit", "witnesses", []), start=1):
        here: KeyPath = ("audit", "witnesses", n)
        name, url, vkey = item["name"], item["url"], item["vkey"]
        if not re.fullmatch(r"[^\s]+", name) or name == "none":
            raise r.refuse((*here, "name"), "must be one word (not 'none')", name)
        if not _http_url(url):
            raise r.refuse((*here, "url"), "must be an http:// or https:// URL", url)
        if vkey.count("+") < 2:
            raise r.refuse((*here, "vkey"), "must be a <name>+<hex8>+<base64> string", vkey)
        if any(w.name == name for w in out):
            raise r.refuse(("audit", "witnesses"), "names a witness twice", name, line_at=here)
        out.append(WitnessConfig(name, url.rstrip("/"), vkey))
    quorum = r.get("audit", "quorum", len(out))
    if not 0 <= quorum <= len(out):
        raise r.bad("audit", "quorum", f"must be a whole number from 0 to the {len(out)} witness(es) listed", quorum)
    return tuple(out), quorum


def _job_label(r: _Reader) -> str:
    job_label: str = r.get("telemetry", "job_label", "hpc_job")
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", job_label):
        raise r.bad("telemetry", "job_label", "is not a Prometheus label name", job_label)
    return job_label


def _interval_ms(r: _Reader) -> int:
    interval = r.get("telemetry", "scrape_interval", "15s")
    interval_ms = parse_duration_ms(interval)
    if interval_ms % 1000:
        raise r.bad("telemetry", "scrape_interval", "must be whole seconds", interval)
    if 3_600_000 % interval_ms:
        raise r.bad("telemetry", "scrape_interval", "must divide one hour", interval)
    return interval_ms


def _retries(r: _Reader) -> int:
    retries: int = r.get("telemetry", "retries", 4)
    if retries < 0:
        raise r.bad("telemetry", "retries", "must not be negative", retries)
    return retries


def _tsa_url(r: _Reader) -> str | None:
    tsa_url: str | None = r.get("audit", "tsa_url", None)
    if tsa_url is not None and not _http_url(tsa_url):
        raise r.bad("audit", "tsa_url", "must be an http:// or https:// URL", tsa_url)
    return tsa_url


def _duration(r: _Reader, path: str, key: str, default: str, *, zero: bool = False) -> int:
    """A duration key in ms; ``zero`` allows ``"0h"`` (and the like) for "none"."""
    text: str = r.get(path, key, default)
    if zero and _ZERO_DURATION.fullmatch(text.strip()):
        return 0
    return parse_duration_ms(text, file=r.file, key=f"[{path}] {key}")


# ---- the keys of ``serve`` and of sharded, authenticated queries

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def _late_window_ms(r: _Reader) -> int:
    late = _duration(r, "telemetry", "late_window", "6h", zero=True)
    if late % 3_600_000:
        raise r.bad("telemetry", "late_window", "must be whole hours", r.get("telemetry", "late_window", ""))
    return late


def _workers(r: _Reader) -> int:
    workers: int = r.get("telemetry", "workers", 1)
    if not 1 <= workers <= 256:
        raise r.bad("telemetry", "workers", "must be a whole number from 1 to 256", workers)
    return workers


def _query_url(r: _Reader) -> str | None:
    query_url: str | None = r.get("telemetry", "query_url", None)
    if query_url is not None and not _http_url(query_url):
        raise r.bad("telemetry", "query_url", "must be an http(s) URL", query_url)
    return query_url


def _headers(r: _Reader) -> tuple[tuple[str, str], ...]:
    headers: dict[str, str] = r.get("telemetry", "headers", {})
    for name in headers:
        if not _HEADER_NAME.match(name):
            raise r.bad("telemetry", "headers", "has a name that is not an HTTP header name", name)
        if name.lower() in ("authorization", "proxy-authorization", "cookie"):
            raise r.bad(
                "telemetry",
                "headers",
                f"must not carry {name}: secrets never go in this file "
                "(name the environment variable that holds the token in bearer_token_env)",
                name,
            )
    return tuple(sorted(headers.items()))


def _bearer_token_env(r: _Reader) -> str | None:
    token_env: str | None = r.get("telemetry", "bearer_token_env", None)
    if token_env is not None and not _ENV_NAME.match(token_env):
        raise r.bad("telemetry", "bearer_token_env", "must name an environment variable", token_env)
    return token_env


def _checkpoint_every_ms(r: _Reader) -> int | None:
    return None if r.get("audit", "checkpoint_every", None) is None else _duration(r, "audit", "checkpoint_every", "")


def load_config(path: str | Path = DEFAULT_CONFIG, problems: Problems | None = None) -> Config:
    """Read and check gpumeter.toml; relative paths resolve against its folder.

    An unreadable file or invalid TOML always raises. Every refused table, key or value goes
    to ``problems`` (default: raise the first); a kept problem leaves that key's default.
    """
    problems = strict(problems)
    file = Path(path)
    text = read_text(file, "configuration", ConfigError)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from exc
    r = _Reader(check(doc, TABLES, file=file, text=text, problems=problems), file, text)
    defaults = _Reader({}, file, text)
    base = file.resolve().parent

    def checked(read: Callable[[_Reader], T]) -> T:
        """``read`` of the file's values; once its problem is reported (when kept), of none: the default."""
        with problems.guard():
            return read(r)
        return read(defaults)

    def rel(table: str, key: str, default: str) -> Path:
        return (base / str(r.get(table, key, default))).resolve()

    supplier, payment_terms_days = checked(_supplier)
    witnesses, quorum = checked(_witnesses)
    tsa_cert = r.get("audit", "tsa_cert", None)
    contracts = r.get("billing", "contracts", None)

    return Config(
        path=file.resolve(),
        store=StoreConfig(
            database=rel("store", "database", "var/gpumeter.duckdb"),
            read_wait_s=checked(lambda r: _seconds(r, "store", "read_wait_s", StoreConfig.read_wait_s)),
            write_wait_s=checked(lambda r: _seconds(r, "store", "write_wait_s", StoreConfig.write_wait_s)),
        ),
        telemetry=TelemetryConfig(
            prometheus_url=r.get("telemetry", "prometheus_url", "http://127.0.0.1:9090"),
            scrape_interval_ms=checked(_interval_ms),
            job_label=checked(_job_label),
            idle_job_ids=tuple(r.get("telemetry", "idle_job_ids", ["", "0"])),
            timeout_s=checked(
                lambda r: _seconds(r, "telemetry", "timeout_s", TelemetryConfig.timeout_s, positive=True)
            ),
            retries=checked(_retries),
            settle_ms=checked(lambda r: _duration(r, "telemetry", "settle", "10m", zero=True)),
            late_window_ms=checked(_late_window_ms),
            workers=checked(_workers),
            query_url=checked(_query_url),
            headers=checked(_headers),
            bearer_token_env=checked(_bearer_token_env),
        ),
        inventory=InventoryConfig(
            nodes=rel("inventory", "nodes", "nodes.csv"),
            storage=rel("inventory", "storage", "storage.csv"),
            jobs=rel("inventory", "jobs", "jobs.csv"),
            tenants=rel("inventory", "tenants", "tenants.csv"),
        ),
        billing=BillingConfig(
            rates=rel("billing", "rates", "rates.toml"),
            supplier=supplier,
            output=rel("billing", "output", "var/invoices"),
            payment_terms_days=payment_terms_days,
            contracts=(base / contracts).resolve() if contracts is not None else None,
        ),
        audit=AuditConfig(
            origin=r.get("audit", "origin", "gpumeter.example.eu/audit"),
            signing_key=rel("audit", "signing_key", "keys/audit.key"),
            allowed_countries=tuple(r.get("audit", "allowed_countries", ["EU"])),
            witnesses=witnesses,
            quorum=quorum,
            tsa_url=checked(_tsa_url),
            tsa_cert=(base / tsa_cert).resolve() if tsa_cert is not None else None,
            checkpoint_every_ms=checked(_checkpoint_every_ms),
        ),
        raw=r.doc,
        text=text,
    )
