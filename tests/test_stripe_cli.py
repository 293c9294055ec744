"""``gpumeter stripe sync`` / ``gpumeter stripe webhook`` driven as a user would."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from gpumeter import store
from testing.stores import new_store
from tests.stripe_double import StripeDouble
from tests.stripe_double.documents import API_KEY, H100, add_tenants, invoice_json, write_document
from tests.stripe_double.processes import GPUMETER, webhook_command

pytest_plugins = ["tests.stripe_double.fixtures"]

MONTH = "2026-01"
SECRET = "whsec_cli_test_0001"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """gpumeter.toml + an initialised store + two finalized invoices for January."""
    (tmp_path / "gpumeter.toml").write_text(
        """
[store]
database = "var/gpumeter.duckdb"

[billing]
output = "var/invoices"
supplier = { legal_name = "GPU Cloud SAS", country = "FR", vat_id = "FR40303265045", payment_terms_days = 15 }
""",
        encoding="utf-8",
    )
    con = new_store(tmp_path / "var" / "gpumeter.duckdb")
    add_tenants(con)
    root = tmp_path / "var" / "invoices"
    write_document(con, root, invoice_json("GM-2026-000001", "acme", MONTH, [(H100, None, "10", "2.80")]))
    write_document(con, root, invoice_json("GM-2026-000002", "globex", MONTH, [(H100, "1g.10gb", "3", "0.40")]))
    con.close()
    return tmp_path / "gpumeter.toml"


def test_sync_command(site: Path, stripe_double: StripeDouble) -> None:
    runner = CliRunner()
    env = {"STRIPE_API_KEY": API_KEY, "GPUMETER_STRIPE_API_BASE": stripe_double.url}
    result = runner.invoke(app, ["stripe", "sync", "--month", MONTH, "--config", str(site)], env=env)
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(r[0], r[2], r[4], r[5]) for r in rows] == [
        ("GM-2026-000001", "created", "open", "3360"),
        ("GM-2026-000002", "created", "open", "120"),
    ]
    assert "2 created" in result.stderr
    assert {i["days_until_due"] for i in stripe_double.objects("invoices")} == {15}
    assert all(r.stripe_version for r in stripe_double.log)
    assert API_KEY not in result.output

    # Again, through the installed console script, --config before the command.
    again = subprocess.run(
        [GPUMETER, "--config", str(site), "stripe", "sync", "--month", MONTH],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "2 unchanged" in again.stderr and API_KEY not in again.stdout + again.stderr
    assert len(stripe_double.objects("invoices")) == 2


def test_sync_command_needs_a_key_and_a_month(site: Path, stripe_double: StripeDouble) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["stripe", "sync", "--month", MONTH, "--config", str(site)], env={"STRIPE_API_KEY": ""})
    assert result.exit_code == 1 and "STRIPE_API_KEY is not set" in result.stderr
    bad = runner.invoke(
        app, ["stripe", "sync", "--month", "2026-13", "--config", str(site)], env={"STRIPE_API_KEY": API_KEY}
    )
    assert bad.exit_code == 2
    base = runner.invoke(
        app,
        ["stripe", "sync", "--month", MONTH, "--config", str(site)],
        env={"STRIPE_API_KEY": API_KEY, "GPUMETER_STRIPE_API_BASE": "ftp://x"},
    )
    assert base.exit_code == 1 and "GPUMETER_STRIPE_API_BASE" in base.stderr
    assert stripe_double.log == []


def test_webhook_command_serves_and_records(site: Path, stripe_double: StripeDouble) -> None:
    env = {"STRIPE_API_KEY": API_KEY, "GPUMETER_STRIPE_API_BASE": stripe_double.url}
    assert CliRunner().invoke(app, ["stripe", "sync", "--month", MONTH, "--config", str(site)], env=env).exit_code == 0
    invoice = next(i for i in stripe_double.objects("invoices") if i["number"] == "GM-2026-000001")
    with webhook_command(site, SECRET) as served:
        assert stripe_double.send_event(served.url, "invoice.paid", invoice, "whsec_wrong").status == 400
        assert stripe_double.send_event(served.url, "invoice.paid", invoice, SECRET).status == 200
    assert SECRET not in served.errors
    deadline = time.monotonic() + 5
    while True:
        try:
            con = store.connect(site.parent / "var" / "gpumeter.duckdb", read_only=True)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        rows = con.execute("SELECT number, payment_status FROM stripe_documents ORDER BY number").fetchall()
    finally:
        con.close()
    assert rows == [("GM-2026-000001", "paid"), ("GM-2026-000002", None)]


def test_webhook_command_needs_its_secret(site: Path) -> None:
    result = CliRunner().invoke(
        app, ["stripe", "webhook", "--config", str(site)], env={"GPUMETER_STRIPE_WEBHOOK_SECRET": ""}
    )
    assert result.exit_code == 1 and "GPUMETER_STRIPE_WEBHOOK_SECRET is not set" in result.stderr
