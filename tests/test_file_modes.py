"""Files holding personal or financial data are private, whatever the user's umask.

The installed ``gpumeter`` runs ``init`` under a permissive umask (022) in a site whose
``keys/`` folder already exists with mode 0755 (as ``git clone`` or ``mkdir`` leave it).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

GPUMETER = str(Path(sys.executable).parent / "gpumeter")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_the_store_and_the_keys_private(tmp_path: Path) -> None:
    (tmp_path / "gpumeter.toml").write_text(
        '[store]\ndatabase = "var/site.duckdb"\n'
        '[audit]\norigin = "gpumeter.test/audit"\nsigning_key = "keys/audit.key"\n',
        encoding="utf-8",
    )
    (tmp_path / "keys").mkdir(mode=0o755)
    os.chmod(tmp_path / "keys", 0o755)  # noqa: S103 - the permissive folder a user starts from
    env = {**os.environ, "GPUMETER_AUDIT_PASSPHRASE": "a passphrase for this test only"}
    p = subprocess.run(
        ["/bin/sh", "-c", f"umask 022 && exec {GPUMETER} init"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert mode(tmp_path / "var" / "site.duckdb") == 0o600
    assert mode(tmp_path / "var") == 0o700
    assert mode(tmp_path / "keys") == 0o700
    assert mode(tmp_path / "keys" / "audit.key") == 0o600
    others = [f for f in (tmp_path / "keys").iterdir() if mode(f) & 0o077]
    assert others == []
