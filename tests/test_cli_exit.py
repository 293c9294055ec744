"""Exit codes a command asks for reach the shell through the installed console script.

A command ends with ``raise typer.Exit(code)`` (``gpumeter.commandline.fail``, ``gpumeter
check``); with ``standalone_mode=False`` click returns that code instead of exiting, so
the console script must pass it on. In-process runners cannot see this: they exit for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.sites import make_site

GPUMETER = str(Path(sys.executable).parent / "gpumeter")


def test_a_failed_command_exits_non_zero_from_the_shell(tmp_path: Path) -> None:
    make_site(tmp_path, "http://127.0.0.1:9")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUMETER_", "STRIPE_"))}
    p = subprocess.run(
        [GPUMETER, "stripe", "sync", "--month", "2026-10"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.stderr.strip() == "error: STRIPE_API_KEY is not set"
    assert p.returncode == 1
