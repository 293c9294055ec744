"""``gpumeter invoice`` as users run it: a summary on stdout, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.billing.conftest import A100, H100, Site

GPUMETER = str(Path(sys.executable).parent / "gpumeter")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GPUMETER, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_invoice_drafts_then_finalize_and_a_bad_rates_file(site: Site) -> None:
    site.add_job("j1", "acme")
    site.add_job("j2", "berlin")
    site.add_usage("j1", H100, 36000)
    site.add_usage("j2", A100, 3600)
    site.con.close()

    p = run("invoice", "--month", "2026-10", "--config", "gpumeter.toml", cwd=site.root)
    assert p.returncode == 0, p.stderr
    assert "acme" in p.stdout and "draft" in p.stdout and "28.00" in p.stdout and "33.60" in p.stdout
    assert "reverse_charge" in p.stdout and "domestic" in p.stdout
    assert json.loads((site.out / "2026-10" / "draft-acme.json").read_text(encoding="utf-8"))["number"] is None

    p = run("--config", str(site.root / "gpumeter.toml"), "invoice", "--month", "2026-10", "--finalize", cwd=site.root)
    assert p.returncode == 0, p.stderr
    assert "GM-2026-000001" in p.stdout and "GM-2026-000002" in p.stdout
    assert "validation:" in p.stderr and "passed" in p.stderr
    assert (site.out / "2026-10" / "GM-2026-000001.pdf").exists()

    (site.root / "rates.toml").write_text(
        '[[rate]]\nmodel = "NVIDIA H100 80GB HBM3"\neur_per_gpu_hour = 2.8\n', encoding="utf-8"
    )
    p = run("invoice", "--month", "2026-10", "--finalize", "--config", "gpumeter.toml", cwd=site.root)
    assert p.returncode == 1
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "rates.toml:3:" in err[0] and "eur_per_gpu_hour" in err[0] and "2.8" in err[0]

    p = run("invoice", "--month", "2026-13", "--config", "gpumeter.toml", cwd=site.root)
    assert p.returncode == 2 and "YYYY-MM" in p.stderr  # a malformed option is a usage mistake


def test_a_bad_contracts_file_is_one_line_naming_file_line_and_value(site: Site) -> None:
    site.add_job("j1", "acme")
    site.add_usage("j1", H100, 3600)
    site.write_contracts(
        '[[credit]]\nid = "PRE-1"\ntenant = "acme"\nkind = "prepaid"\neur = "100.00"\ncurrency = "USD"\n'
        'start = "2026-10-01"\n'
    )
    site.con.close()
    p = run("invoice", "--month", "2026-10", "--finalize", "--config", "gpumeter.toml", cwd=site.root)
    assert p.returncode == 1
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "contracts.toml:6:" in err[0] and "currency must be EUR" in err[0] and "USD" in err[0]
    assert not (site.out / "2026-10").exists()
