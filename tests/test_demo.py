"""``gpumeter demo`` as a newcomer runs it: the whole chain on the simulated fleet."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import duckdb
from facturx import get_facturx_xml_from_pdf

from billing.validate import check_ubl
from gpumeter.config import load_config

GPUMETER = str(Path(sys.executable).parent / "gpumeter")


def test_demo_meters_invoices_and_writes_a_bundle_that_verifies(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    p = subprocess.run(
        [GPUMETER, "demo", "--out", "demo", "--days", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 0, p.stderr
    text = p.stdout
    # The commands it suggests work as pasted, with gpumeter's folder not on the PATH.
    env = {
        **os.environ,
        "PATH": os.pathsep.join(
            d for d in os.environ["PATH"].split(os.pathsep) if Path(d).resolve() != Path(GPUMETER).parent.resolve()
        ),
    }
    suggested = [line.strip() for line in text.splitlines() if " usage --config " in line or " audit verify " in line]
    assert len(suggested) >= 2, text
    for command in suggested:
        command = command.removeprefix("Verify it yourself: ")
        pasted = subprocess.run(
            ["/bin/sh", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert pasted.returncode == 0, (command, pasted.stderr)
    assert "GPU usage per tenant, 2026-10" in text
    assert "Invoices issued for 2026-10" in text and "reverse_charge" in text and "domestic" in text
    assert "outside" in text.lower() and "rejected" in text
    # Contracts: a reserved tenant, a spot job and a credit drawdown (docs/formats.md).
    assert "Contracts on the 2026-10 invoices" in text and "reservation RES-DEMO-1" in text
    assert "spot NVIDIA" in text and "promotional credit PROMO-DEMO" in text
    assert 'contracts = "contracts.toml"' in (out / "gpumeter.toml").read_text(encoding="utf-8")
    pdfs = sorted((out / "var" / "invoices" / "2026-10").glob("GM-2026-*.pdf"))
    assert pdfs, "no finalized invoice PDFs"
    name, xml = get_facturx_xml_from_pdf(pdfs[0].read_bytes(), check_xsd=True)
    assert name == "factur-x.xml" and b"CrossIndustryInvoice" in xml
    # the Peppol tenants (rhein-robotics, alpen-quant, and meuse-analytics: Belgian, Peppol by
    # default) also get a UBL e-invoice, valid under both rule sets
    ubls = sorted((out / "var" / "invoices" / "2026-10").glob("GM-2026-*.xml"))
    assert len(ubls) == 3 and "3 Peppol UBL e-invoice(s)" in " ".join(text.split())
    customers = set()
    for ubl in ubls:
        report = check_ubl(ubl.read_bytes())
        assert report.checks == ("xsd", "cen-ubl", "peppol") and report.fatal == (), [f.line() for f in report.findings]
        customers.add(json.loads(ubl.with_suffix(".json").read_text(encoding="utf-8"))["customer"]["country"])
    assert customers == {"DE", "CH", "BE"}
    # A budget alert fired for the reserved tenant, on the net its invoice then shows.
    assert "Budget alerts fired for 2026-10" in text and "eu.gpumeter.budget.threshold" in text
    issued = {
        doc["tenant"]: doc["net"]
        for doc in (
            json.loads(p.read_text(encoding="utf-8")) for p in (out / "var" / "invoices" / "2026-10").glob("GM-*.json")
        )
    }
    con = duckdb.connect(str(out / "var" / "gpumeter.duckdb"), read_only=True)
    try:
        alerts = con.execute("SELECT tenant, threshold_percent, net_eur FROM budget_alerts ORDER BY ALL").fetchall()
    finally:
        con.close()
    assert [t for _, t, _ in alerts] == [50, 80] and len({tenant for tenant, _, _ in alerts}) == 1
    tenant, _, net = alerts[0]
    reserved = tomllib.loads((out / "contracts.toml").read_text(encoding="utf-8"))["reservation"][0]["tenant"]
    assert tenant == reserved and f"{net:.2f}" == issued[tenant]
    for secret in ("keys/audit.key", "keys/demo-passphrase.txt", "keys/dashboard-admin-password.txt"):
        assert stat.S_IMODE((out / secret).stat().st_mode) == 0o600, secret
    bundle = out / "audit-2026-10.zip"
    ok = subprocess.run(
        [GPUMETER, "audit", "verify", str(bundle), "--key", str(out / "keys" / "audit.vkey")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [
            GPUMETER,
            "audit",
            "verify",
            str(out / "audit-2026-10-one-byte-edited.zip"),
            "--key",
            str(out / "keys" / "audit.vkey"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "entries/" in bad.stderr
    from audit.pinning import PolicyTrust, pinned_keys
    from audit.publish import check_published
    from audit.trust import parse_policy

    log_vkey = (out / "keys" / "audit.vkey").read_text().strip()
    published = check_published(out / "tlog", pinned_keys([log_vkey]))
    assert published.passed and published.size > 0 and (out / "tlog" / "tile" / "entries").is_dir()

    # Two witnesses cosigned 2 of 2; no TSA, and the demo says so.
    said = " ".join(text.split())
    assert "cosigned by auditor, customer (2 of 2 witnesses)" in said, text
    assert "no [audit] tsa_url: times are the operator's clock" in said and "Witnesses stopped" in said
    assert load_config(out / "gpumeter.toml").audit.witnesses == ()  # they stopped: the site no longer names them
    policy_file = out / "auditor-policy.txt"
    pinned = parse_policy(policy_file.read_bytes())
    assert [k.verifier.vkey for k in pinned.logs] == [log_vkey]
    assert [w.name for w in pinned.witnesses] == ["auditor", "customer"]
    assert pinned.describe_quorum() == "all of (auditor, customer)"
    assert check_published(out / "tlog", PolicyTrust(pinned)).passed  # the published checkpoint is cosigned too
    two = subprocess.run(
        [GPUMETER, "audit", "verify", str(bundle), "--policy", str(policy_file)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr
    assert "cosigned by auditor.example.eu/witness, customer.example.eu/witness" in two.stdout
    assert "(quorum all of (auditor, customer))" in two.stdout
    # The same bundle re-signed with a fresh key (keys/ and policy.txt naming it) is refused.
    forged = out / "audit-2026-10-fresh-key.zip"
    with zipfile.ZipFile(forged) as z:
        forger = [n for n in z.namelist() if n.startswith("keys/")]
        assert len(forger) == 1 and z.read(forger[0]).decode().strip() not in (log_vkey, "")
        assert f"log {z.read(forger[0]).decode().strip()}" in z.read("policy.txt").decode()
    refused = subprocess.run(
        [GPUMETER, "audit", "verify", str(forged), "--policy", str(policy_file)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 3 and refused.stderr.startswith("error: checkpoint: "), refused.stderr
    assert "refused under" in said
