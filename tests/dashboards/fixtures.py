"""A complete demo site for the dashboard tests, built once and copied per test.

``gpumeter demo --days 3`` meters three days of October 2026 on the simulated fleet (with
its sovereignty violations); then, through the packages' own functions, the tests' site
gets a signing key, the month's invoices, a credit note (one job's usage withdrawn and the
month invoiced again), Stripe payment states, budgets of two tenants with the alerts they
fired, job attestations and a signed checkpoint, and one dashboard user per role.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from audit import attest, keys, policy
from audit.log import AuditLog
from billing.alerts import evaluate, set_budget
from billing.budgets import Budget
from billing.run import invoice_month
from dashboards.auth import add_user
from dashboards.reader import StoreAccess
from gpumeter import store
from gpumeter.config import Config, load_config
from gpumeter.months import Month
from testing.stores import RATES, SITE_CONFIG, new_store, write_site

GPUMETER = str(Path(sys.executable).with_name("gpumeter"))
PASSWORD = "correct horse battery staple"
PASSPHRASE = "a long dashboards test passphrase"
MONTH = "2026-10"
SCOPED_TENANT = "laguna-lab"
OTHER_TENANT = "armor-bio"
# After the credit note laguna-lab's October is EUR 21.77: 50% of 30.00 fires, 80% does not.
BUDGETS = {SCOPED_TENANT: ("30.00", (50, 80)), OTHER_TENANT: ("100.00", (50, 100))}
USERS = {
    "ada": ("admin", None),
    "fin": ("finance", None),
    "comp": ("compliance", None),
    "aud": ("auditor", None),
    "aud-laguna": ("auditor", SCOPED_TENANT),
    "ten-laguna": ("tenant", SCOPED_TENANT),
}
CREATED = datetime(2026, 11, 1, 8, tzinfo=UTC)


def run_gpumeter(*args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "GPUMETER_AUDIT_PASSPHRASE": PASSPHRASE, **env}
    proc = subprocess.run([GPUMETER, *args], env=full, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"gpumeter {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
    return proc


def add_users(cfg: Config, *, scoped: bool = True) -> None:
    """One user per role; the tenant-scoped ones only where their tenant exists."""
    con = store.connect(cfg.store.database)
    try:
        for name, (role, tenant) in USERS.items():
            if tenant is None or scoped:
                add_user(con, name, role, tenant, PASSWORD, at=CREATED)
    finally:
        con.close()


def build_demo(root: Path) -> Path:
    """The demo site with invoices, a credit note, payments and a signed log; returns gpumeter.toml."""
    run_gpumeter("demo", "--out", str(root), "--days", "3")
    cfg = load_config(root / "gpumeter.toml")
    keys.ensure_key(cfg.audit.signing_key, PASSPHRASE, cfg.audit.origin)
    signer = keys.load_signer(cfg.audit.signing_key, PASSPHRASE, cfg.audit.origin)
    con = store.connect(cfg.store.database)
    try:
        # The demo issued the month's invoices today (the real clock); what follows is issued
        # today too: an issue date is never earlier than the last one.
        today = datetime.now(UTC)
        invoice_month(con, cfg, MONTH, True, now=today)
        # Withdraw the largest job of the scoped tenant, as a re-metering would, and invoice
        # again: billing issues a credit note against that tenant's invoice.
        job = con.execute(
            "SELECT job_id FROM usage JOIN jobs USING (job_id) WHERE tenant = ? "
            "GROUP BY job_id ORDER BY sum(gpu_ns) DESC, job_id LIMIT 1",
            [SCOPED_TENANT],
        ).fetchall()[0][0]
        con.execute("DELETE FROM usage WHERE job_id = ?", [job])
        invoice_month(con, cfg, MONTH, True, now=today)
        documents = store.run(con, "dash_documents", {"month": MONTH}).fetchall()
        for i, (number, kind, tenant, period, *_, total, _finalized) in enumerate(documents[:3]):
            store.run(
                con,
                "stripe_document_upsert",
                {
                    "number": number,
                    "kind": kind,
                    "tenant": tenant,
                    "period": period,
                    "references_number": None,
                    "stripe_customer_id": f"cus_test{i}",
                    "stripe_id": f"in_test{i}",
                    "total_cents": int(total * 100),
                    "stripe_status": "open",
                    "at": datetime(2026, 11, 3, 10, tzinfo=UTC),
                },
            )
        store.run(
            con,
            "stripe_event_payment",
            {"payment_status": "paid", "at": datetime(2026, 11, 5, tzinfo=UTC), "stripe_id": "in_test0"},
        )
        for tenant, (monthly, thresholds) in BUDGETS.items():
            set_budget(con, Budget(tenant, Decimal(monthly), thresholds), at=datetime(2026, 10, 1, tzinfo=UTC))
        fired = evaluate(con, cfg, [Month.parse(MONTH)], at=datetime(2026, 11, 3, 11, tzinfo=UTC))
        assert {a.tenant for a in fired} == set(BUDGETS), fired
        boundary = policy.policy(cfg.audit.allowed_countries)
        moment = datetime(2026, 11, 3, 12, tzinfo=UTC)
        attest.sync_inventory(con, at=moment)
        attest.sync_usage_windows(con, MONTH, at=moment)
        attest.attest_month(con, MONTH, boundary, at=moment)
        AuditLog(con).sign_checkpoint([signer], cfg.audit.origin, at=moment)
    finally:
        con.close()
    add_users(cfg)
    return root / "gpumeter.toml"


def build_empty(root: Path, extra: str = "") -> Path:
    """A site after ``gpumeter init`` with users and nothing else; returns gpumeter.toml."""
    cfg = write_site(root, SITE_CONFIG + extra, RATES)
    new_store(cfg.store.database).close()
    add_users(cfg, scoped=False)
    return root / "gpumeter.toml"


OIDC_USER = "ops@example.eu"


def build_oidc(root: Path) -> Path:
    """An empty site with ``[dashboard] oidc = true`` and :data:`OIDC_USER` (compliance)."""
    config = build_empty(root, extra="\n[dashboard]\noidc = true\n")
    con = store.connect(load_config(config).store.database)
    try:
        add_user(con, OIDC_USER, "compliance", None, PASSWORD, at=CREATED)
    finally:
        con.close()
    return config


def access(config: Path) -> StoreAccess:
    return StoreAccess(load_config(config).store.database, read_wait_s=5, write_wait_s=5)


def rows(config: Path, sql: str) -> list[tuple[Any, ...]]:
    """What ``sql`` reads from the site's store (read-only)."""
    con = store.connect(load_config(config).store.database, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def copy_site(template: Path, dest: Path) -> Path:
    shutil.copytree(template.parent, dest, symlinks=True)
    return dest / template.name
