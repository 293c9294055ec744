"""The store's disk fills up in the middle of a ``collect``: the command stops with one line
saying so, what it committed before stays consistent, and once space is freed a re-run ends
with the totals of an undisturbed run.

The store lives on a small tmpfs mounted for the test (the suite runs as root in CI), filled
up to a few megabytes short of what the collect needs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.faults.conftest import COLLECT, database, gpumeter, metering_site, one_line_error, same_as
from tests.faults.outcome import Metered, metered

pytestmark = pytest.mark.prometheus

HEADROOM = 3 * 1024 * 1024  # the full collect grows the store by about 7 MB


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A file taking all the free space of ``disk`` but ``leave`` bytes."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free - leave
    with filler.open("wb") as fh:
        chunk = b"\0" * (1 << 20)
        while free > 0:
            fh.write(chunk[: min(free, len(chunk))])
            free -= len(chunk)
    return filler


def test_the_disk_fills_up_mid_collect(prometheus_url: str, tmp_path: Path, undisturbed: Metered) -> None:
    site = tmp_path / "site"
    with small_disk(site / "var", "64m") as disk:
        metering_site(site, prometheus_url)
        filler = fill(disk, HEADROOM)
        p = gpumeter(*COLLECT, cwd=site, check=False)
        line = one_line_error(p)
        assert "No space left on device" in line and str(database(site)) in line, line
        partial = metered(database(site))
        assert partial.findings == [] and 0 < len(partial.windows) < len(undisturbed.windows)

        filler.unlink()  # the operator frees space
        gpumeter(*COLLECT, cwd=site)
        same_as(metered(database(site)), undisturbed)
