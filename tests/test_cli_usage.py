"""Usage mistakes through the installed console script: one line, the right exit code, no traceback.

Each row is a mistake a new user makes. The installed ``gpumeter`` runs in a subprocess
(in-process runners catch exceptions the console script would print as tracebacks). A
group named without its subcommand shows that group's help and exits 2; every other
mistake is one line on stderr naming what is wrong and where to read more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GPUMETER = str(Path(sys.executable).parent / "gpumeter")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUMETER_", "STRIPE_"))}
    return subprocess.run([GPUMETER, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


# (arguments, exit code, a phrase the one line must carry)
ONE_LINE = [
    (["nosuch"], 2, "No such command 'nosuch'"),
    (["audit", "nosuch"], 2, "No such command 'nosuch'"),
    (["users", "frobnicate"], 2, "No such command 'frobnicate'"),
    (["usage"], 2, "Missing option '--month'"),
    (["usage", "--month"], 2, "--month"),
    (["usage", "--month", "2026-13"], 2, "YYYY-MM"),
    (["usage", "--month", "October"], 2, "YYYY-MM"),
    (["usage", "--month", "2026-10", "--format", "xlsx"], 2, "--format"),
    (["invoice", "--month", "26-10"], 2, "YYYY-MM"),
    (["audit", "export", "--month", "2026-10"], 2, "Missing option '--out'"),
    (["audit", "verify"], 2, "Missing argument"),
    (["collect", "--start", "2026-10-01T00:00:00Z"], 2, "Missing option '--end'"),
    (["collect", "--bogus"], 2, "No such option: --bogus"),
    (["dashboard", "--port", "0"], 2, "--port"),
    (["stripe", "sync", "--month", "2026-1"], 2, "YYYY-MM"),
    (["--config"], 2, "--config"),
    # not usage mistakes, but still one line: a missing configuration is a gpumeter error
    (["usage", "--month", "2026-10"], 1, "gpumeter.toml"),
    (["collect", "--start", "yesterday", "--end", "today"], 1, "gpumeter.toml"),
]

GROUPS = [["audit"], ["stripe"], ["users"], ["audit", "keys", "nosuch"]]


@pytest.mark.parametrize(("args", "code", "phrase"), ONE_LINE, ids=[" ".join(a) for a, _, _ in ONE_LINE])
def test_a_mistake_is_one_line(args: list[str], code: int, phrase: str, tmp_path: Path) -> None:
    p = run(args, tmp_path)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert len(lines) == 1, p.stderr
    assert phrase in lines[0]
    if code == 2:
        assert lines[0].startswith("usage error:") and "--help" in lines[0]


@pytest.mark.parametrize("args", GROUPS, ids=" ".join)
def test_a_group_without_its_command_shows_its_help(args: list[str], tmp_path: Path) -> None:
    p = run(args, tmp_path)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr + p.stdout
    if args[-1] == "nosuch":
        assert "No such command" in p.stderr
    else:
        assert "Usage: gpumeter " + " ".join(args) in " ".join((p.stdout + p.stderr).split())


def test_verbose_shows_the_traceback_of_an_error(tmp_path: Path) -> None:
    quiet = run(["usage", "--month", "2026-10"], tmp_path)
    loud = run(["--verbose", "usage", "--month", "2026-10"], tmp_path)
    assert quiet.returncode == loud.returncode == 1
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr


def test_help_is_not_an_error(tmp_path: Path) -> None:
    p = run(["--help"], tmp_path)
    assert p.returncode == 0 and "collect" in p.stdout and "audit" in p.stdout
