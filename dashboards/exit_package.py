"""``gpumeter export --tenant T --out DIR``: everything about one tenant, in open formats.

The exit package a cloud hands a customer that switches provider (the EU Data Act's
switching chapter asks for the customer's exportable data in a structured, commonly used,
machine-readable format). It is built only from the tenant reader (:mod:`dashboards.account`,
the tenant bound into every query) and from the functions that already make each piece:

==================================  ==========================================================
``usage/usage-job-month.parquet``   usage per job-month (account_usage.sql), DuckDB ``COPY``
``usage/usage-job-month.csv``       the same rows as CSV (text cells inert for spreadsheets)
``focus/focus-YYYY-MM.csv``         FOCUS 1.3 rows of each month with usage (billing's own)
``documents/YYYY-MM/<number>.*``    each issued invoice and credit note: PDF (Factur-X), its
                                    XML, the invoice JSON, copied from the store and checked
                                    against the SHA-256 stored with them
``audit/gpumeter-audit-*.zip``      its auditor bundle of each month (``audit export --tenant``'s
                                    function: each is an ``export`` entry in the log)
``tenant.json``                     the tenant as tenants.csv has it, its budget and alerts
``manifest.json``, ``README.txt``   every file with its size, SHA-256 and what it is
==================================  ==========================================================

Refusals change nothing: an unknown tenant, a ``DIR`` that exists and is not empty, or a
signing key that cannot be opened stop before any file is written. The package is built in
a private folder beside ``DIR`` and renamed into place when complete (a failure removes it);
folders are 0700 and files 0600, whatever the umask, since they hold the customer's data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from audit.note import Signer
from billing.focus import write_focus
from dashboards import account
from dashboards.errors import DashboardError
from dashboards.exports import bundle_name, export_month
from gpumeter.config import Config
from gpumeter.csvcells import text_columns
from metering.inventory import Tenant

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
USAGE = "usage/usage-job-month"


@dataclass
class Package:
    """What has been written so far: relative path -> (what it is, media type)."""

    root: Path
    files: dict[str, tuple[str, str]] = field(default_factory=dict)

    def path(self, relative: str, what: str, media_type: str) -> Path:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        self.files[relative] = (what, media_type)
        return target

    def write(self, relative: str, data: bytes, what: str, media_type: str) -> None:
        self.path(relative, what, media_type).write_bytes(data)


@dataclass(frozen=True)
class ExitPackage:
    out: Path
    tenant: str
    months: list[str]
    files: int
    documents: int
    bundles: int


def check_out_dir(out: Path) -> None:
    """``DIR`` must not exist, or be an empty folder."""
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise DashboardError("the export folder exists and is not empty; name a new one", value=str(out))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _usage(con: duckdb.DuckDBPyConnection, package: Package, tenant: str) -> None:
    rows = account.usage(con, tenant)
    parquet = package.path(f"{USAGE}.parquet", "usage per job-month (Parquet)", "application/vnd.apache.parquet")
    csv = package.path(f"{USAGE}.csv", "usage per job-month (CSV, UTF-8, header row)", "text/csv")
    con.register("exit_usage", rows)
    con.register("exit_usage_csv", text_columns(rows))
    try:
        con.execute("COPY exit_usage TO $path (FORMAT parquet)", {"path": str(parquet)})
        con.execute("COPY exit_usage_csv TO $path (FORMAT csv, HEADER true)", {"path": str(csv)})
    finally:
        con.unregister("exit_usage")
        con.unregister("exit_usage_csv")


def _documents(con: duckdb.DuckDBPyConnection, package: Package, tenant: str) -> int:
    numbers = account.documents(con, tenant).get_column("number").to_list()
    for number in numbers:
        for file in account.document_files(con, tenant, number):
            package.write(f"documents/{file.period}/{file.file_name}", file.data, file.what, file.media_type)
    return len(numbers)


def _tenant_json(con: duckdb.DuckDBPyConnection, package: Package, info: Tenant) -> None:
    budget = account.budget(con, info.tenant)
    fired = account.alerts(con, info.tenant)
    data = {
        "tenant": info.tenant,
        "legal_name": info.legal_name,
        "country": info.country,
        "vat_id": info.vat_id,
        "email": info.email,
        "address": info.address,
        "budget": None
        if budget is None
        else {"monthly_eur": str(budget.monthly), "thresholds_percent": list(budget.thresholds)},
        "budget_alerts": [
            {
                "month": r["month"],
                "threshold_percent": r["threshold_percent"],
                "budget_eur": str(r["budget_eur"]),
                "net_eur": str(r["net_eur"]),
                "decided_at": r["decided_at"].isoformat(),
                "delivered_at": r["delivered_at"].isoformat() if r["delivered_at"] else None,
            }
            for r in fired.iter_rows(named=True)
        ],
    }
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    package.write("tenant.json", text.encode("utf-8"), "the tenant, its budget and budget alerts", "application/json")


def _readme(info: Tenant, months: list[str], at: datetime, manifest: list[dict[str, object]]) -> str:
    lines = [
        f"Exit package of tenant {info.tenant} ({info.legal_name}), made {at:%Y-%m-%d %H:%M:%S} UTC by gpumeter.",
        f"Months: {', '.join(months) if months else 'none'}. Money in EUR; times in UTC; open formats only.",
        "",
        "Check a file: sha256sum FILE, and compare with its line below (or manifest.json).",
        "Check an auditor bundle offline: gpumeter audit verify audit/<bundle>.zip --key <the log's vkey>.",
        "",
    ]
    for item in manifest:
        lines.append(f"{item['sha256']}  {item['path']}")
        lines.append(f"    {item['what']} ({item['bytes']} bytes, {item['media_type']})")
    return "\n".join(lines) + "\n"


def _finish(root: Path, package: Package, info: Tenant, months: list[str], at: datetime) -> int:
    """manifest.json and README.txt over every file written, then private modes throughout."""
    manifest = [
        {
            "path": relative,
            "bytes": (root / relative).stat().st_size,
            "sha256": _sha256(root / relative),
            "what": what,
            "media_type": media_type,
        }
        for relative, (what, media_type) in sorted(package.files.items())
    ]
    document = {"tenant": info.tenant, "made_at": at.isoformat(), "months": months, "files": manifest}
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    (root / "manifest.json").write_text(text, encoding="utf-8")
    entry = {
        "path": "manifest.json",
        "bytes": (root / "manifest.json").stat().st_size,
        "sha256": _sha256(root / "manifest.json"),
        "what": "this list as JSON",
        "media_type": "application/json",
    }
    (root / "README.txt").write_text(_readme(info, months, at, [*manifest, entry]), encoding="utf-8")
    for folder, dirs, names in os.walk(root):
        for d in dirs:
            os.chmod(Path(folder) / d, PRIVATE_DIR)
        for n in names:
            os.chmod(Path(folder) / n, PRIVATE_FILE)
    os.chmod(root, PRIVATE_DIR)
    return len(manifest) + 2


def write_package(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    signer: Signer,
    tenant: str,
    out: Path,
    *,
    by: str,
    at: datetime,
    after_bundle: Callable[[str], None] | None = None,
) -> ExitPackage:
    """Write the exit package of ``tenant`` to ``out`` (module doc); ``con`` read-write.

    ``after_bundle`` gets each signed checkpoint note (the caller records the high-water mark).
    """
    info = account.tenant_info(con, tenant)
    check_out_dir(out)
    months = sorted(account.months(con, tenant))
    out.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        package = Package(root)
        _usage(con, package, tenant)
        usage_months = sorted(set(account.usage(con, tenant).get_column("month").to_list()))
        for month in usage_months:
            rows = account.focus(con, config, tenant, month)
            write_focus(rows, package.path(f"focus/focus-{month}.csv", f"FOCUS 1.3 rows of {month}", "text/csv"))
        documents = _documents(con, package, tenant)
        _tenant_json(con, package, info)
        for month in months:
            name = bundle_name(month, tenant)
            target = package.path(f"audit/{name}", f"auditor bundle of {month} (signed log entries)", "application/zip")
            result = export_month(con, config, signer, month, tenant, target, by=by, at=at)
            if after_bundle is not None:
                after_bundle(result.checkpoint.note)
        files = _finish(root, package, info, months, at)
        if out.exists():
            out.rmdir()  # empty (checked above): the complete package takes its place
        root.rename(out)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return ExitPackage(out, tenant, months, files, documents, len(months))
