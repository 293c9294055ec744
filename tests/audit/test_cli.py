"""``gpumeter audit …`` end to end.

The real console script runs ``init``, the first export and a verify; the other commands
run the same ``app.cli.main`` in this process (each new process imports every
package, which costs seconds).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from audit.note import parse_vkey
from gpumeter import store
from gpumeter.commandline import EXIT_UNPINNED
from testing.stores import new_store
from tests.audit import fleet

GPUMETER = str(Path(sys.executable).with_name("gpumeter"))
PASS = "a long test passphrase"
CONFIG = f"""
[store]
database = "var/gpumeter.duckdb"

[billing]
supplier = {{ legal_name = "GPU Cloud SAS", country = "FR", vat_id = "FR40303265045" }}

[audit]
origin = "{fleet.ORIGIN}"
signing_key = "keys/audit.key"
allowed_countries = ["EU"]
"""

Run = Callable[..., subprocess.CompletedProcess[str]]


def script(site: Path, *args: str, passphrase: str | None = PASS) -> subprocess.CompletedProcess[str]:
    """The installed ``gpumeter`` console script, in its own process."""
    env = {k: v for k, v in os.environ.items() if k != "GPUMETER_AUDIT_PASSPHRASE"}
    if passphrase is not None:
        env["GPUMETER_AUDIT_PASSPHRASE"] = passphrase
    return subprocess.run(
        [GPUMETER, *args], cwd=site, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A site after ``gpumeter init``, a metered July and ``audit export``; returns (folder, vkey)."""
    d = tmp_path_factory.mktemp("site")
    (d / "gpumeter.toml").write_text(CONFIG)
    init = script(d, "init", "--config", "gpumeter.toml")
    assert init.returncode == 0, init.stderr
    assert (d / "keys" / "audit.key").stat().st_mode & 0o777 == 0o600
    con = store.connect(d / "var" / "gpumeter.duckdb")
    fleet.july(con)
    con.close()
    out = script(d, "audit", "export", "--month", "2026-07", "--out", "out/july.zip", "--config", "gpumeter.toml")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "out/july.zip" and "acme-train-2" in out.stderr
    from audit.keys import load_keyring

    vkey = load_keyring(d / "keys" / "audit.key").verifiers(fleet.ORIGIN)[0].vkey
    ok = script(d, "audit", "verify", "out/july.zip", "--key", vkey, passphrase=None)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK out/july.zip") and "WARNING" not in ok.stdout
    return d, vkey


@pytest.fixture
def gm(site: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """``app.cli.main`` in this process, in the site folder."""
    from app.cli import main

    monkeypatch.chdir(site[0])

    def run(*args: str, passphrase: str | None = PASS) -> subprocess.CompletedProcess[str]:
        if passphrase is None:
            monkeypatch.delenv("GPUMETER_AUDIT_PASSPHRASE", raising=False)
        else:
            monkeypatch.setenv("GPUMETER_AUDIT_PASSPHRASE", passphrase)
        monkeypatch.setattr(sys, "argv", ["gpumeter", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return run


def test_keys_listing_and_pinning_by_file(site: tuple[Path, str], gm: Run) -> None:
    d, vkey = site
    listing = gm("audit", "keys", "--config", "gpumeter.toml")
    assert listing.returncode == 0 and listing.stdout.startswith(vkey + "  SHA256:") and "current" in listing.stdout
    (d / "pinned.vkey").write_text(f"# the operator's key\n{vkey}\n")
    assert gm("audit", "verify", "out/july.zip", "--key", "pinned.vkey", passphrase=None).returncode == 0
    ring = gm("audit", "verify", "out/july.zip", "--config", "gpumeter.toml", passphrase=None)  # pins the key ring
    assert ring.returncode == 0 and ring.stdout.startswith("OK ") and "WARNING" not in ring.stdout


def test_unpinned_verify_names_the_bundles_key_and_exits_4(site: tuple[Path, str]) -> None:
    d, vkey = site
    from audit.note import parse_vkey

    unpinned = script(d / "out", "audit", "verify", "july.zip", passphrase=None)  # no gpumeter.toml there
    assert unpinned.returncode == EXIT_UNPINNED == 4 and unpinned.stdout == ""
    (line,) = errors(unpinned)
    assert parse_vkey(vkey).fingerprint in line and "--key" in line and "pins its log key" in line


def _forged(site: Path) -> Path:
    """The same fleet logged by someone else, with every host inside the EU, under a fresh key."""
    from audit import policy
    from audit.bundle import attest_and_export

    con = new_store(site / "forger.duckdb")
    inside = {h: (s, "FR" if c == "CH" else c) for h, (s, c) in fleet.NODES.items()}
    fleet.load_inventory(con, nodes=inside)
    fleet.meter(con, fleet.T0, {"acme-train-1": ("gpu-fr-1", 3600), "acme-train-2": ("gpu-ch-1", 3600)})
    out = site / "out" / "forged.zip"
    eu = policy.policy(["EU"])
    forger = fleet.signer(seed=66)
    attest_and_export(con, "2026-07", None, out, [forger], fleet.ORIGIN, eu, by="mallory", at=fleet.T0.replace(day=31))
    con.close()
    return out


def refusal(signed_by: str, pinned: str) -> str:
    """What verify says of a checkpoint signed by a key other than the pinned one (vkeys)."""
    signer, key = (parse_vkey(v) for v in (signed_by, pinned))
    return (
        f"error: checkpoint: note has no verifiable signatures: it is signed by {signer.name}+{signer.key_id.hex()}, "
        f"and the keys given are {key.name}+{key.key_id.hex()}"
    )


def test_forged_bundles_are_refused_without_and_with_a_key(site: tuple[Path, str], gm: Run) -> None:
    d, vkey = site
    forged = _forged(d)
    alone = script(d / "out", "audit", "verify", "forged.zip", passphrase=None)
    assert alone.returncode == 4 and fleet.signer(seed=66).verifier.fingerprint in errors(alone)[0]
    for pin in (("--key", vkey), ("--config", "gpumeter.toml")):
        pinned = gm("audit", "verify", str(forged), *pin, passphrase=None)
        assert pinned.returncode == 3 and errors(pinned) == [refusal(fleet.signer(seed=66).vkey, vkey)]
    with zipfile.ZipFile(d / "out" / "july.zip") as z:
        genuine = {n: z.read(n) for n in z.namelist()}
    mallory = fleet.signer(seed=66).vkey
    swapped = {n: data for n, data in genuine.items() if not n.startswith("keys/")}
    swapped[f"keys/mallory+{fleet.signer(seed=66).verifier.key_id.hex()}.vkey"] = mallory.encode() + b"\n"
    rewritten = {**genuine, "policy.txt": f"log {mallory}\nquorum none\n".encode()}
    for name, members, member in (("swapped", swapped, "keys/"), ("rewritten", rewritten, "policy.txt")):
        path = d / "out" / f"{name}.zip"
        with zipfile.ZipFile(path, "w") as z:
            for n, data in members.items():
                z.writestr(n, data)
        for pin in ((), ("--key", vkey)):
            refused = script(d / "out", "audit", "verify", path.name, *pin, passphrase=None)
            assert refused.returncode == 3, (name, pin, refused.stderr)
            assert (len(errors(refused)) == 1 and member in errors(refused)[0]) or "checkpoint" in errors(refused)[0]


_MEASURED = """
import resource, subprocess, sys
run = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
sys.stderr.write(run.stderr)
print(run.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_mb(site: Path, *args: str) -> tuple[int, float, str]:
    """Exit status, peak resident memory (MB) and stderr of one ``gpumeter`` run (its own process)."""
    env = {k: v for k, v in os.environ.items() if k != "GPUMETER_AUDIT_PASSPHRASE"}
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, GPUMETER, *args],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    code, kib = proc.stdout.split()
    return int(code), int(kib) / 1024, proc.stderr


def test_a_zip_bomb_is_refused_in_bounded_memory(site: tuple[Path, str]) -> None:
    d, vkey = site
    with zipfile.ZipFile(d / "out" / "july.zip") as z:
        members = {n: z.read(n) for n in z.namelist()}
    bomb = d / "out" / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for n, data in members.items():
            z.writestr(n, data)
        for k in range(700):  # 700 MiB of zeros under the genuine checkpoint, in about 700 KiB
            z.writestr(f"entries/{100_000 + k}.json", b"\x00" * (1 << 20))
    assert bomb.stat().st_size < 1 << 20
    code, baseline_mb, _ = _peak_rss_mb(d / "out", "audit", "verify", "july.zip", "--key", vkey)
    assert code == 0
    code, bomb_mb, stderr = _peak_rss_mb(d / "out", "audit", "verify", "bomb.zip", "--key", vkey)
    assert code == 3 and "times its compressed size" in stderr and "entries/100" in stderr
    assert bomb_mb < 220 and bomb_mb < baseline_mb + 20, (bomb_mb, baseline_mb)


def test_publish_writes_tiles_a_monitor_can_follow(site: tuple[Path, str], gm: Run) -> None:
    d, vkey = site
    from audit.pinning import pinned_keys
    from audit.publish import check_published

    out = gm("audit", "publish", "--out", "public", "--config", "gpumeter.toml")
    assert out.returncode == 0 and out.stdout.strip() == "public" and "published checkpoint size" in out.stderr
    checked = check_published(d / "public", pinned_keys([vkey]))
    assert checked.passed and (d / "public" / "tile" / "entries").is_dir()


def test_tenant_export_with_config_before_the_command(site: tuple[Path, str], gm: Run) -> None:
    d, vkey = site
    args = ("--config", "gpumeter.toml", "audit", "export", "--month", "2026-07", "--tenant", "acme")
    tenant = gm(*args, "--out", "out/acme.zip")
    assert tenant.returncode == 0, tenant.stderr
    assert gm("audit", "verify", "out/acme.zip", "--key", vkey).returncode == 0
    assert b"globex" not in (d / "out" / "acme.zip").read_bytes()


def test_verify_names_the_first_failing_member_on_one_line(site: tuple[Path, str], gm: Run) -> None:
    d, vkey = site
    with zipfile.ZipFile(d / "out" / "july.zip") as z:
        members = {n: z.read(n) for n in z.namelist()}
    name = next(n for n, data in sorted(members.items()) if b'"in_eu":false' in data)
    members[name] = members[name].replace(b'"in_eu":false', b'"in_eu":true ')  # hide a violation
    with zipfile.ZipFile(d / "out" / "tampered.zip", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    bad = gm("audit", "verify", "out/tampered.zip", "--key", vkey, passphrase=None)
    assert bad.returncode == 3
    lines = errors(bad)
    assert len(lines) == 1 and name.replace(".json", ".tlog-proof") in lines[0], bad.stderr
    wrong = gm("audit", "verify", "out/july.zip", "--key", fleet.signer(seed=42).vkey, passphrase=None)
    assert wrong.returncode == 3 and errors(wrong) == [refusal(vkey, fleet.signer(seed=42).vkey)]
    junk = gm("audit", "verify", "out/july.zip", "--key", "not-a-key", passphrase=None)
    assert junk.returncode == 1 and len(errors(junk)) == 1
    # the same through the real script: one line, exit 3
    real = script(d, "audit", "verify", "out/tampered.zip", "--key", vkey, passphrase=None)
    assert real.returncode == 3 and errors(real) == lines


def test_check_checkpoint_rotate_next_month_and_tamper(site: tuple[Path, str], gm: Run) -> None:
    d, _ = site
    assert gm("audit", "check", "--config", "gpumeter.toml").returncode == 0
    cp = gm("audit", "checkpoint", "--config", "gpumeter.toml")
    assert cp.returncode == 0 and cp.stdout.startswith(fleet.ORIGIN + "\n") and "\n\n— " in cp.stdout
    nopass = gm("audit", "checkpoint", "--config", "gpumeter.toml", passphrase=None)
    assert nopass.returncode == 1 and "GPUMETER_AUDIT_PASSPHRASE" in nopass.stderr
    wrong = gm("audit", "checkpoint", "--config", "gpumeter.toml", passphrase="wrong")
    assert wrong.returncode == 1 and "wrong passphrase" in wrong.stderr and PASS not in wrong.stderr

    rotated = gm("audit", "keys", "rotate", "--config", "gpumeter.toml")
    assert rotated.returncode == 0, rotated.stderr
    new_vkey = rotated.stdout.strip()
    listing = gm("audit", "keys", "--config", "gpumeter.toml").stdout.splitlines()
    assert len(listing) == 2 and "retired" in listing[0] and listing[1].startswith(new_vkey)
    con = store.connect(d / "var" / "gpumeter.duckdb")
    fleet.meter(con, fleet.T0.replace(month=8), {"acme-train-1": ("gpu-fr-1", 60)})
    con.close()
    aug = gm("audit", "export", "--month", "2026-08", "--out", "out/aug.zip", "--config", "gpumeter.toml")
    assert aug.returncode == 0, aug.stderr
    ok = gm("audit", "verify", "out/aug.zip", "--key", new_vkey, passphrase=None)
    assert ok.returncode == 0, ok.stderr
    assert "consistent with size" in ok.stdout
    assert gm("audit", "check", "--config", "gpumeter.toml").returncode == 0

    con = store.connect(d / "var" / "gpumeter.duckdb")
    con.execute("UPDATE audit_entries SET entry = entry || ' '::BLOB WHERE idx = 4")
    con.close()
    broken = gm("audit", "check", "--config", "gpumeter.toml")
    assert broken.returncode == 3
    assert errors(broken) == ["error: entry 4 does not match its stored leaf hash: edited or moved"]
