"""Run a command and measure its own peak memory (RSS), not its parent's.

Linux folds the memory of the process that execs into the exec'd program's ``ru_maxrss``:
a child forked (or vforked) from a test runner that already holds 1 GB reports at least
1 GB, whatever the program itself used. So the command is started by a small launcher
(a fresh Python that holds a few MB), and the launcher reports the peak of *its* child
from ``RUSAGE_CHILDREN``, which then belongs to the measured program alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_LAUNCHER = """
import json, resource, subprocess, sys
args, out, err = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(out, "w") as o, open(err, "w") as e:
    code = subprocess.call(args, stdout=o, stderr=e)
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"returncode": code, "peak_kb": peak_kb}))
"""


@dataclass(frozen=True)
class Measured:
    result: subprocess.CompletedProcess[str]
    peak_mb: float
    seconds: float


def run_measured(args: Sequence[str], workdir: Path, env: Mapping[str, str] | None = None) -> Measured:
    """Run ``args`` to completion; its output, peak RSS in MB and wall time.

    ``workdir`` receives the command's stdout and stderr files (``measured.out``/``.err``).
    """
    out, err = workdir / "measured.out", workdir / "measured.err"
    began = time.monotonic()
    launcher = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, json.dumps(list(args)), str(out), str(err)],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        check=True,
    )
    took = time.monotonic() - began
    report = json.loads(launcher.stdout)
    result = subprocess.CompletedProcess(list(args), report["returncode"], out.read_text(), err.read_text())
    return Measured(result, report["peak_kb"] / 1024, took)  # ru_maxrss is in kilobytes on Linux
