"""Billing sites for the fault suite: a month of made-up usage on a real store, and the
installed ``gpumeter`` run so that it is killed at a chosen point.

:func:`killed_at` runs the console script in a Python that has an audit hook
(:func:`sys.addaudithook`): the process SIGKILLs itself at the N-th event of a kind, e.g.
the N-th temporary file created in the invoices folder, which ``invoice --finalize`` only
creates after its transaction committed. Nothing in gpumeter knows about it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.billing.conftest import Site, make_site
from tests.faults.conftest import GPUMETER

MONTH = "2026-10"

_KILLER = """
import os, runpy, signal, sys
folder, nth, script = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen = 0
def hook(event, args):
    global seen
    if event == "tempfile.mkstemp" and os.path.dirname(args[0]) == folder:
        seen += 1
        if seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
sys.argv = [script, *sys.argv[4:]]
runpy.run_path(script, run_name="__main__")
"""


def billing_site(root: Path) -> Site:
    """Three tenants (FR, DE, US) with October's usage, every hour of October collected; the
    store is closed so that the CLI can open it."""
    site = make_site(root)
    site.add_example_month()
    site.con.close()
    return site


def killed_at(site: Site, nth_file: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``gpumeter --config … args``, SIGKILLed when it creates its ``nth_file``-th file in the
    month's invoices folder."""
    folder = str(site.out / MONTH)
    argv = [sys.executable, "-c", _KILLER, folder, str(nth_file), GPUMETER]
    argv += ["--config", str(site.root / "gpumeter.toml"), *args]
    env = {k: v for k, v in os.environ.items() if k != "GPUMETER_AUDIT_PASSPHRASE"}
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert p.returncode == -signal.SIGKILL, f"not killed ({p.returncode}):\n{p.stderr}"
    return p
