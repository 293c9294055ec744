"""testing.peak measures the command's own memory, not the test runner's."""

from __future__ import annotations

import sys
from pathlib import Path

from testing.peak import run_measured


def test_a_small_command_under_a_large_parent_reports_its_own_peak(tmp_path: Path) -> None:
    ballast = bytearray(400 * 1024 * 1024)  # the parent holds 400 MB, touched
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    measured = run_measured([sys.executable, "-c", "print('hello')"], tmp_path)
    assert measured.result.returncode == 0 and measured.result.stdout == "hello\n"
    assert measured.peak_mb < 100, f"a bare Python reported {measured.peak_mb:.0f} MB"
    big = run_measured(
        [sys.executable, "-c", "b = bytearray(300 * 1024 * 1024); b[::4096] = b'1' * len(b[::4096])"], tmp_path
    )
    assert 290 < big.peak_mb < 400
    del ballast
