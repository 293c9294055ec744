"""The fault-injection suite's sites, commands and undisturbed reference runs.

Metering faults run ``gpumeter collect`` over five days of the scenarios (120 hours, in
chunks of 6 hours) against real Prometheus servers; billing faults run ``gpumeter invoice
--finalize`` and ``gpumeter stripe sync`` on a store with a month of made-up usage. Every
command goes through the installed console script, in its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.outcome import Metered, metered
from tests.sites import make_site

GPUMETER = str(Path(sys.executable).parent / "gpumeter")
COLLECT = ("collect", "--start", "2026-10-01T00:00:00Z", "--end", "2026-10-06T00:00:00Z", "--chunk-hours", "6")
HOURS = 5 * 24


def gpumeter(
    *args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("GPUMETER_AUDIT_PASSPHRASE", None)
    p = subprocess.run([GPUMETER, *args], cwd=cwd, capture_output=True, text=True, env=full, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"gpumeter {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


def one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command (no traceback, no internal error)."""
    assert p.returncode == 1, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith(("error:", "internal error:", "Traceback"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


def metering_site(root: Path, prometheus_url: str, **telemetry: object) -> Path:
    """A site whose store is initialised; ``telemetry`` overrides keys of [telemetry]."""
    cfg = make_site(root, prometheus_url)
    text = cfg.read_text()
    for key, value in telemetry.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key} =")]
        text = "\n".join(lines).replace("[telemetry]\n", f"[telemetry]\n{key} = {value}\n", 1) + "\n"
    cfg.write_text(text)
    gpumeter("init", cwd=root)
    return root


def database(site: Path) -> Path:
    return site / "var" / "gpumeter.duckdb"


@pytest.fixture(scope="session")
def undisturbed(prometheus_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    """The metering of ``COLLECT`` with nothing in the way: what every metering fault must end with."""
    site = metering_site(tmp_path_factory.mktemp("undisturbed") / "site", prometheus_url)
    gpumeter(*COLLECT, cwd=site)
    reference = metered(database(site))
    assert reference.consistent and len(reference.windows) == HOURS and reference.usage
    yield reference


def same_as(got: Metered, want: Metered) -> None:
    assert (got.findings, got.log_findings) == ([], [])
    assert got.windows == want.windows
    assert got.inventory == want.inventory
    assert got.usage == want.usage
