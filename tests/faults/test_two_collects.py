"""Two ``collect`` runs over the same hours on the same store at once: they take turns at the
store's lock (chunk by chunk), both succeed, and the store ends with the totals of one
undisturbed run: nothing counted twice, one version of each inventory file, each hour
logged once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.faults.conftest import COLLECT, GPUMETER, database, metering_site, same_as
from tests.faults.outcome import Metered, metered

pytestmark = pytest.mark.prometheus


def test_two_collects_at_once(prometheus_url: str, tmp_path: Path, undisturbed: Metered) -> None:
    site = metering_site(tmp_path / "site", prometheus_url)
    env = {k: v for k, v in os.environ.items() if k != "GPUMETER_AUDIT_PASSPHRASE"}
    runs = [
        subprocess.Popen([GPUMETER, *COLLECT], cwd=site, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    errors = [run.communicate(timeout=600)[1] for run in runs]
    for run, err in zip(runs, errors, strict=True):
        assert run.returncode == 0, err
        assert "collected 120 windows" in err
    same_as(metered(database(site)), undisturbed)
