"""``gpumeter export --tenant T --out DIR`` and ``gpumeter users add --role tenant`` through the
installed CLI, on the dashboards' demo site (eight tenants; laguna-lab has an invoice, a
credit note, a budget and an alert): the package holds all of the tenant's data, each file
as the manifest says, and nothing of any other tenant; refusals write nothing."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from decimal import Decimal
from pathlib import Path

import polars as pl

from gpumeter import store
from gpumeter.config import load_config
from tests.dashboards.fixtures import GPUMETER, MONTH, PASSPHRASE, PASSWORD, SCOPED_TENANT
from tests.tenant_leaks import folder_leaks, others_of

TENANT = SCOPED_TENANT


def gpumeter(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "GPUMETER_AUDIT_PASSPHRASE": PASSPHRASE, **env}
    return subprocess.run([GPUMETER, *args], env=full, capture_output=True, text=True, timeout=300, check=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_exit_package_is_the_tenants_data_and_only_its(demo_site: Path, tmp_path: Path) -> None:
    out = tmp_path / "exit"
    out.mkdir(mode=0o755)  # an empty folder is taken, and made private
    os.chmod(out, 0o755)  # noqa: S103 - the permissive folder a user starts from
    done = gpumeter("export", "--tenant", TENANT, "--out", str(out), "--config", str(demo_site))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)

    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert all(mode(p) == 0o600 for p in files) and mode(out) == 0o700
    assert all(mode(p) == 0o700 for p in out.rglob("*") if p.is_dir())
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == {str(p.relative_to(out)) for p in files} - {"manifest.json", "README.txt"}
    readme = (out / "README.txt").read_text(encoding="utf-8")
    for path, entry in listed.items():
        assert entry["sha256"] == sha256(out / path) and entry["bytes"] == (out / path).stat().st_size
        assert f"{entry['sha256']}  {path}" in readme and entry["what"]
    assert f"{sha256(out / 'manifest.json')}  manifest.json" in readme
    assert manifest["tenant"] == TENANT and manifest["months"] == [MONTH]

    cfg = load_config(demo_site)
    with store.connect(cfg.store.database, read_only=True) as con:
        others = others_of(con, TENANT)
        jobs = {
            j
            for (j,) in con.execute(
                "SELECT DISTINCT job_id FROM usage JOIN jobs USING (job_id) WHERE tenant = ?", [TENANT]
            ).fetchall()
        }
        gpu_ns = con.execute(
            "SELECT sum(gpu_ns) FROM usage JOIN jobs USING (job_id) WHERE tenant = ?", [TENANT]
        ).fetchall()[0][0]
        documents = con.execute(
            "SELECT number, period, pdf_sha256, xml_sha256, json_sha256 FROM billing_documents WHERE tenant = ?",
            [TENANT],
        ).fetchall()

    usage = pl.read_parquet(out / "usage" / "usage-job-month.parquet")
    assert set(usage["tenant"]) == {TENANT} and set(usage["job_id"]) == jobs
    assert sum(usage["gpu_seconds"], Decimal(0)) == Decimal(gpu_ns) / 10**9
    as_csv = pl.read_csv(out / "usage" / "usage-job-month.csv", infer_schema=False)
    assert as_csv["job_id"].to_list() == usage["job_id"].to_list()
    focus = pl.read_csv(out / "focus" / f"focus-{MONTH}.csv", infer_schema=False)
    assert set(focus["BillingAccountId"]) == {TENANT} and set(focus["x_JobId"]) == jobs

    assert len(documents) == 2  # the invoice and the credit note against it
    for number, period, pdf_sha, xml_sha, json_sha in documents:
        folder = out / "documents" / period
        assert sha256(folder / f"{number}.pdf") == pdf_sha
        assert sha256(folder / f"{number}.factur-x.xml") == xml_sha
        assert sha256(folder / f"{number}.json") == json_sha
    assert {p.name for p in (out / "documents").rglob("*") if p.is_file()} == {
        f"{n}.{ext}" for n, *_ in documents for ext in ("pdf", "factur-x.xml", "json")
    }
    tenant = json.loads((out / "tenant.json").read_text(encoding="utf-8"))
    assert tenant["tenant"] == TENANT and tenant["budget"]["monthly_eur"] == "30.00"
    assert [a["threshold_percent"] for a in tenant["budget_alerts"]] == [50]

    bundle = out / "audit" / f"gpumeter-audit-{MONTH}-{TENANT}.zip"
    verified = gpumeter("audit", "verify", str(bundle), "--config", str(demo_site))
    assert verified.returncode == 0, verified.stderr
    assert f"{MONTH} (tenant {TENANT})" in verified.stdout

    assert folder_leaks(others, out) == []


def test_refused_exports_write_nothing(demo_site: Path, tmp_path: Path) -> None:
    cfg = load_config(demo_site)

    def log_size() -> int:
        with store.connect(cfg.store.database, read_only=True) as con:
            return int(con.execute("SELECT count(*) FROM audit_entries").fetchall()[0][0])

    before = log_size()
    unknown = gpumeter("export", "--tenant", "nobody-inc", "--out", str(tmp_path / "x"), "--config", str(demo_site))
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == ["error: no such tenant in tenants.csv (value 'nobody-inc')"]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine", encoding="utf-8")
    taken = gpumeter("export", "--tenant", TENANT, "--out", str(busy), "--config", str(demo_site))
    assert taken.returncode == 1 and "exists and is not empty" in taken.stderr
    assert len(taken.stderr.strip().splitlines()) == 1
    no_key = gpumeter(
        "export",
        "--tenant",
        TENANT,
        "--out",
        str(tmp_path / "y"),
        "--config",
        str(demo_site),
        **{"GPUMETER_AUDIT_PASSPHRASE": ""},
    )
    assert no_key.returncode == 1 and "passphrase" in no_key.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "demo"]
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    assert log_size() == before


def test_a_tenant_user_needs_a_known_tenant(demo_site: Path) -> None:
    cfg = load_config(demo_site)

    def users() -> list[tuple[object, ...]]:
        with store.connect(cfg.store.database, read_only=True) as con:
            return con.execute("SELECT name, role, tenant FROM dashboard_users ORDER BY name").fetchall()

    before = users()
    config = ["--config", str(demo_site)]
    for tenant, message in (
        ([], "error: the tenant role needs --tenant T: the one tenant whose data it sees (value 'tenant')"),
        (["--tenant", "nobody-inc"], "no such tenant in tenants.csv"),
    ):
        refused = gpumeter("users", "add", "cust", "--role", "tenant", *tenant, *config, GPUMETER_PASSWORD=PASSWORD)
        assert refused.returncode == 1
        (line,) = refused.stderr.strip().splitlines()
        assert message in line
    assert users() == before
    added = gpumeter(
        "users", "add", "cust", "--role", "tenant", "--tenant", TENANT, *config, GPUMETER_PASSWORD=PASSWORD
    )
    assert added.returncode == 0, added.stderr
    assert users() == sorted([*before, ("cust", "tenant", TENANT)])
