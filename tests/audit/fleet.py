"""A small metered fleet written straight into a real DuckDB store (test side only).

Rows go into the metering tables (``inventory_versions``, ``nodes``, ``storage_locations``,
``jobs``, ``tenants``, ``usage``, ``collected_windows``) as metering would leave them, so the
audit package reads them through ``metering.report.job_month`` like in production.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import duckdb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.note import Signer
from metering.inventory import Tenant
from testing.stores import UsageRow, add_tenants, add_usage, mark_collected, record_inventory

ORIGIN = "audit.test.example.eu/log"
T0 = datetime(2026, 7, 1, tzinfo=UTC)

NODES = {"gpu-fr-1": ("paris", "FR"), "gpu-de-1": ("frankfurt", "DE"), "gpu-ch-1": ("zurich", "CH")}
STORAGE = {"s3://eu-bucket": "DE", "s3://us-bucket": "US"}
JOBS = {
    # job_id: (tenant, data locations)
    "acme-train-1": ("acme", ["s3://eu-bucket/acme"]),
    "acme-train-2": ("acme", ["s3://us-bucket/acme"]),
    "globex-run-1": ("globex", ["s3://eu-bucket/globex"]),
    "globex-run-2": ("globex", []),
}
TENANTS = {"acme": ("Acme SAS", "FR", "FR40303265045"), "globex": ("Globex GmbH", "DE", "DE136695976")}


def signer(seed: int = 1) -> Signer:
    return Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


def _csv(header: str, rows: list[str]) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def load_inventory(
    con: duckdb.DuckDBPyConnection, version: int = 1, nodes: dict[str, tuple[str, str]] | None = None
) -> None:
    nodes = NODES if nodes is None else nodes
    at = T0 - timedelta(days=1) + timedelta(hours=version)
    files = {
        "nodes": _csv("hostname,site,country,provider", [f"{h},{s},{c},ovh" for h, (s, c) in nodes.items()]),
        "storage": _csv("location,country", [f"{loc},{c}" for loc, c in STORAGE.items()]),
        "jobs": _csv(
            "job_id,tenant,project,data_locations",
            [f"{j},{t},p,{';'.join(locs)}" for j, (t, locs) in JOBS.items()],
        ),
        "tenants": _csv("tenant,legal_name,country,vat_id", [f"{t},{n},{c},{v}" for t, (n, c, v) in TENANTS.items()]),
    }
    record_inventory(con, version, at, files)
    for host, (site, country) in nodes.items():
        con.execute(
            "INSERT INTO nodes VALUES ($v, $h, $s, $c, 'ovh')", {"v": version, "h": host, "s": site, "c": country}
        )
    for loc, country in STORAGE.items():
        con.execute("INSERT INTO storage_locations VALUES ($v, $l, $c)", {"v": version, "l": loc, "c": country})
    con.execute("DELETE FROM jobs")
    con.execute("DELETE FROM tenants")
    for job, (tenant, locs) in JOBS.items():
        con.execute(
            "INSERT INTO jobs (job_id, tenant, project, data_locations) VALUES ($j, $t, 'p', $d)",
            {"j": job, "t": tenant, "d": locs},
        )
    add_tenants(con, [Tenant(tenant, name, country, vat) for tenant, (name, country, vat) in TENANTS.items()])


def meter(
    con: duckdb.DuckDBPyConnection,
    window: datetime,
    usage: dict[str, tuple[str, int]],
    nodes_version: int = 1,
) -> None:
    """One metered hour: job -> (host, GPU-seconds); replaces the window like ``collect``."""
    con.execute("DELETE FROM usage WHERE window_start = $w", {"w": window})
    digest = hashlib.sha256()
    rows: list[UsageRow] = []
    for k, (job, (host, seconds)) in enumerate(sorted(usage.items())):
        ns = seconds * 1_000_000_000
        rows.append((window, job, f"GPU-{host}-{k}", "", None, "NVIDIA H100 80GB HBM3", [host], ns, ns, 0))
        digest.update(f"{job}|{host}|{ns}\n".encode())
    add_usage(con, rows)
    mark_collected(
        con, [(window, len(usage), digest.hexdigest())], nodes_version=nodes_version, at=window + timedelta(hours=1)
    )


def july(con: duckdb.DuckDBPyConnection) -> None:
    """Inventory plus three metered hours in July 2026 for both tenants."""
    load_inventory(con)
    meter(con, T0, {"acme-train-1": ("gpu-fr-1", 3600), "globex-run-1": ("gpu-de-1", 1800)})
    meter(con, T0 + timedelta(hours=1), {"acme-train-2": ("gpu-ch-1", 3600), "globex-run-2": ("gpu-de-1", 900)})
    meter(con, T0 + timedelta(hours=2), {"acme-train-1": ("gpu-de-1", 7200)})
