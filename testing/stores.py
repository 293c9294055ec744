"""Stores and site folders for tests and benchmarks, each built one way.

- :func:`new_store`: a migrated DuckDB store;
- :func:`write_site`: a site folder (``gpumeter.toml``, ``rates.toml``) and its configuration;
  :data:`SITE_CONFIG` is the usual ``gpumeter.toml``: the store under ``var/``, rates,
  invoices under ``var/invoices``, an audit log, and a French supplier with every field the
  invoices print (:data:`SUPPLIER_TOML`); :data:`RATES` the usual rate card;
- :func:`add_tenants`, :func:`record_inventory`, :func:`add_usage`, :func:`mark_collected`:
  rows written straight into the metering tables as metering's inventory load and
  ``collect`` leave them, for stores whose usage a test or a benchmark makes up instead of
  metering it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import astuple
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from gpumeter import store
from gpumeter.config import Config, load_config
from metering.inventory import Tenant

AUDIT_ORIGIN = "gpumeter.test/audit"

SUPPLIER_TOML = """
[billing.supplier]
legal_name = "Nuage GPU SAS"
country = "FR"
vat_id = "FR40303265045"
siren = "303265045"
address = "12 rue des Serveurs"
postcode = "75011"
city = "Paris"
legal_form = "SAS"
share_capital = "EUR 120 000"
rcs = "Paris B 303 265 045"
email = "billing@nuage.example.eu"
iban = "FR7630006000011234567890189"
payment_terms_days = 30
"""

SITE_CONFIG = f"""[store]
database = "var/gpumeter.duckdb"

[billing]
rates = "rates.toml"
output = "var/invoices"

[audit]
origin = "{AUDIT_ORIGIN}"
signing_key = "keys/audit.key"
allowed_countries = ["EU"]
{SUPPLIER_TOML}"""

# A rate card for the three GPU models tests use most (EUR per GPU-hour).
RATES = """
[[rate]]
model = "NVIDIA H100 80GB HBM3"
eur_per_gpu_hour = "2.80"

[[rate]]
model = "NVIDIA A100-SXM4-80GB"
eur_per_gpu_hour = "1.90"

[[rate]]
model = "NVIDIA A30"
eur_per_gpu_hour = "1.20"
"""


# window_start, job_id, uuid, gpu_i_id, mig_profile, gpu_model, hosts, gpu_ns, busy_ns, energy_uj
UsageRow = tuple[datetime, str, str, str, str | None, str, list[str], int, int, int]


def new_store(path: Path) -> duckdb.DuckDBPyConnection:
    """A store at ``path`` (created when missing) with every migration applied, open read-write."""
    con = store.connect(path)
    store.migrate(con)
    return con


def write_site(root: Path, config: str = SITE_CONFIG, rates: str | None = None) -> Config:
    """``root/gpumeter.toml`` (and ``root/rates.toml`` when given), loaded; creates ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "gpumeter.toml").write_text(config, encoding="utf-8")
    if rates is not None:
        (root / "rates.toml").write_text(rates, encoding="utf-8")
    return load_config(root / "gpumeter.toml")


def add_tenants(con: duckdb.DuckDBPyConnection, tenants: Iterable[Tenant]) -> None:
    """Tenants as the inventory load writes them from tenants.csv (and Stripe sync, ``stripe_customer``)."""
    con.executemany(
        "INSERT INTO tenants (tenant, legal_name, country, vat_id, email, address, stripe_customer, einvoice, "
        "peppol_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [list(astuple(t)) for t in tenants],
    )


def record_inventory(con: duckdb.DuckDBPyConnection, version: int, at: datetime, files: Mapping[str, bytes]) -> None:
    """One version of each inventory file (``nodes``, ``storage``, ``jobs``, ``tenants``) with its digest."""
    con.executemany(
        "INSERT INTO inventory_versions VALUES (?, ?, ?, ?, ?)",
        [[kind, version, hashlib.sha256(content).hexdigest(), at, content] for kind, content in files.items()],
    )


def add_usage(con: duckdb.DuckDBPyConnection, rows: Iterable[UsageRow]) -> None:
    """Usage rows as ``collect`` writes them (see :data:`UsageRow` for the columns)."""
    con.executemany("INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [list(r) for r in rows])


def mark_collected(
    con: duckdb.DuckDBPyConnection,
    windows: Iterable[tuple[datetime, int, str]],
    *,
    nodes_version: int | None = 1,
    at: datetime | None = None,
    interval_ms: int = 15_000,
) -> None:
    """Hour windows as metered by a simulated backend: (window start, usage rows, digest) each.

    A window already marked is replaced. ``at`` is the collection time (default: now).
    """
    when = at or datetime.now(UTC)
    staged = pl.DataFrame(
        [(w, interval_ms, rows, digest, nodes_version, "simulated", when) for w, rows, digest in windows],
        schema={
            "window_start": pl.Datetime("us", "UTC"),
            "interval_ms": pl.Int32,
            "rows": pl.Int32,
            "digest": pl.String,
            "nodes_version": pl.Int32,
            "backend": pl.String,
            "collected_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )
    con.register("staged_collected_windows", staged)
    try:
        con.execute("INSERT OR REPLACE INTO collected_windows SELECT * FROM staged_collected_windows")
    finally:
        con.unregister("staged_collected_windows")
