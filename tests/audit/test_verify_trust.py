"""``gpumeter audit verify`` against a pinned trust policy: witness quorum and RFC 3161 time.

One site exports July with two witnesses (real ``audit.witness`` servers on 127.0.0.1,
in this process) cosigning 2-of-2 and a TSA (tests/tsa_double.py, the named test double)
time-stamping; the console script exports and verifies in its own process.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit import keys, witness
from audit.note import parse_note
from gpumeter import store
from testing.stores import new_store
from tests.audit import fleet
from tests.audit.test_cli import PASS, errors, script
from tests.audit.witnesses import in_process
from tests.tsa_double import running


@dataclass
class Witnessed:
    dir: Path
    log_vkey: str
    witness_vkeys: list[str]
    urls: list[str]
    tsa_pem: str

    @property
    def bundle(self) -> Path:
        return self.dir / "out" / "july.zip"


def _config(urls: list[str], vkeys: list[str], extra: str = "") -> str:
    rows = ",\n".join(
        f'{{ name = "w{k}", url = "{u}", vkey = "{v}" }}' for k, (u, v) in enumerate(zip(urls, vkeys, strict=True))
    )
    return f"""
[store]
database = "var/gpumeter.duckdb"

[audit]
origin = "{fleet.ORIGIN}"
signing_key = "keys/audit.key"
allowed_countries = ["EU"]
witnesses = [
{rows}
]
quorum = {len(urls)}
{extra}
"""


@pytest.fixture(scope="module")
def witnessed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Witnessed]:
    d = tmp_path_factory.mktemp("witnessed")
    keys.ensure_key(d / "keys" / "audit.key", PASS, fleet.ORIGIN)
    log_vkey = keys.load_keyring(d / "keys" / "audit.key").verifiers(fleet.ORIGIN)[0].vkey
    vkeys = [witness.init_witness(d / f"w{k}", f"w{k}.example.eu/witness").vkey for k in range(2)]
    with ExitStack() as stack:
        urls = [stack.enter_context(in_process(d / f"w{k}", [log_vkey])).url for k in range(2)]
        tsa = stack.enter_context(running())
        (d / "tsa.pem").write_text(tsa.authority.ca_pem)
        (d / "gpumeter.toml").write_text(_config(urls, vkeys, f'tsa_url = "{tsa.url}"\ntsa_cert = "tsa.pem"'))
        con = new_store(d / "var" / "gpumeter.duckdb")
        fleet.july(con)
        con.close()
        shutil.copy(d / "var" / "gpumeter.duckdb", d / "before-export.duckdb")
        out = script(d, "audit", "export", "--month", "2026-07", "--out", "out/july.zip", "--config", "gpumeter.toml")
        assert out.returncode == 0, out.stderr
        assert "cosigned by w0, w1" in out.stderr and "time-stamped by" in out.stderr, out.stderr
        yield Witnessed(d, log_vkey, vkeys, urls, tsa.authority.ca_pem)


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    return path


def test_the_bundle_carries_the_cosigned_checkpoint_and_its_time_stamp(witnessed: Witnessed) -> None:
    m = _members(witnessed.bundle)
    note = m["checkpoint"].decode()
    assert sorted(s.name for s in parse_note(note).signatures) == sorted(
        [fleet.ORIGIN, "w0.example.eu/witness", "w1.example.eu/witness"]
    )
    proofs = [data.decode() for n, data in m.items() if n.endswith(".tlog-proof")]
    assert proofs and all(p.endswith(note) for p in proofs)
    assert "checkpoint.tsr" in m
    policy_txt = m["policy.txt"].decode()  # for convenience: the log key, both witnesses, the quorum
    assert f"log {witnessed.log_vkey}" in policy_txt and all(v in policy_txt for v in witnessed.witness_vkeys)


def test_verify_enforces_the_witness_quorum_and_reports_the_time(witnessed: Witnessed) -> None:
    d, w = witnessed.dir, witnessed.witness_vkeys
    pins = ["--key", witnessed.log_vkey, "--witness", w[0], "--witness", w[1], "--quorum", "2"]
    ok = script(d / "out", "audit", "verify", "july.zip", *pins, "--tsa-cert", "../tsa.pem", passphrase=None)
    assert ok.returncode == 0, ok.stderr
    assert "cosigned by w0.example.eu/witness, w1.example.eu/witness (quorum all of (w0" in ok.stdout
    stamped = ok.stdout.split("time-stamped ")[1].split(";")[0]
    assert abs((datetime.fromisoformat(stamped) - datetime.now(UTC)).total_seconds()) < 600
    # a policy file says the same; the bundle's own policy.txt is never read
    (d / "policy.txt").write_text(
        f"log {witnessed.log_vkey}\nwitness a {w[0]}\nwitness b {w[1]}\ngroup both all a b\nquorum both\n"
    )
    by_policy = script(d / "out", "audit", "verify", "july.zip", "--policy", "../policy.txt", passphrase=None)
    assert by_policy.returncode == 0, by_policy.stderr
    # the site's gpumeter.toml pins the key ring, its witnesses and quorum, and its TSA
    ring = script(d, "audit", "verify", "out/july.zip", "--config", "gpumeter.toml", passphrase=None)
    assert ring.returncode == 0 and "quorum all of" in ring.stdout and "time-stamped" in ring.stdout, ring.stderr


def test_a_witness_that_did_not_cosign_breaks_the_quorum(witnessed: Witnessed) -> None:
    d = witnessed.dir
    m = _members(witnessed.bundle)
    note = parse_note(m["checkpoint"].decode())
    alone = note.__class__(note.text, tuple(s for s in note.signatures if s.name != "w1.example.eu/witness")).format()
    one = {
        n: (
            data.decode().replace(m["checkpoint"].decode(), alone).encode()
            if n == "checkpoint" or n.endswith(".tlog-proof")
            else data
        )
        for n, data in m.items()
    }
    _write(d / "out" / "one.zip", one)
    w = witnessed.witness_vkeys
    pins = ["--key", witnessed.log_vkey, "--witness", w[0], "--witness", w[1]]
    refused = script(d / "out", "audit", "verify", "one.zip", *pins, passphrase=None)
    assert refused.returncode == 3 and errors(refused) == [
        "error: checkpoint: witness quorum not met: w0.example.eu/witness cosigned, "
        "the policy needs all of (w0.example.eu/witness, w1.example.eu/witness)"
    ], refused.stderr
    assert script(d / "out", "audit", "verify", "one.zip", *pins, "--quorum", "1", passphrase=None).returncode == 0


def test_a_forked_log_cannot_reach_the_quorum(witnessed: Witnessed, tmp_path: Path) -> None:
    """The store restored from before the export, its high-water mark removed (what an
    operator rewriting history would do), logs another July: the witnesses, who saw the
    genuine checkpoint, refuse to cosign the fork, and verify refuses it."""
    fork = tmp_path / "fork"
    shutil.copytree(witnessed.dir / "keys", fork / "keys")
    (fork / "keys" / "audit.key.largest-checkpoint").unlink()
    (fork / "var").mkdir()
    shutil.copy(witnessed.dir / "before-export.duckdb", fork / "var" / "gpumeter.duckdb")
    shutil.copy(witnessed.dir / "gpumeter.toml", fork / "gpumeter.toml")
    (fork / "tsa.pem").write_text(witnessed.tsa_pem)
    con = store.connect(fork / "var" / "gpumeter.duckdb")
    inside = {h: (s, "FR" if c == "CH" else c) for h, (s, c) in fleet.NODES.items()}
    fleet.load_inventory(con, version=2, nodes=inside)  # the Swiss host, now "in France"
    con.close()
    out = script(fork, "audit", "export", "--month", "2026-07", "--out", "fork.zip", "--config", "gpumeter.toml")
    assert out.returncode == 0 and "witness quorum not met" in out.stderr, out.stderr
    w = witnessed.witness_vkeys
    pins = ["--key", witnessed.log_vkey, "--witness", w[0], "--witness", w[1], "--quorum", "2"]
    refused = script(fork, "audit", "verify", "fork.zip", *pins, passphrase=None)
    assert refused.returncode == 3 and len(errors(refused)) == 1, refused.stderr
    assert errors(refused)[0].startswith("error: checkpoint: witness quorum not met: no witness cosigned")
    assert script(fork, "audit", "verify", "fork.zip", "--key", witnessed.log_vkey, passphrase=None).returncode == 0


def test_a_time_stamp_must_verify_against_the_pinned_tsa(witnessed: Witnessed, tmp_path: Path) -> None:
    d = witnessed.dir
    m = _members(witnessed.bundle)
    key = ["--key", witnessed.log_vkey]
    tsr = bytearray(m["checkpoint.tsr"])
    tsr[len(tsr) // 2] ^= 1
    _write(d / "out" / "badtsr.zip", {**m, "checkpoint.tsr": bytes(tsr)})
    _write(d / "out" / "notsr.zip", {n: b for n, b in m.items() if n != "checkpoint.tsr"})
    from tests.tsa_double import make_authority

    (tmp_path / "other.pem").write_text(make_authority("Another TSA").ca_pem)
    for bundle, pem in (
        ("badtsr.zip", "../tsa.pem"),
        ("notsr.zip", "../tsa.pem"),
        ("july.zip", str(tmp_path / "other.pem")),
    ):
        refused = script(d / "out", "audit", "verify", bundle, *key, "--tsa-cert", pem, passphrase=None)
        assert refused.returncode == 3 and len(errors(refused)) == 1, (bundle, refused.stderr)
        assert errors(refused)[0].startswith("error: checkpoint.tsr: "), refused.stderr
    unchecked = script(d / "out", "audit", "verify", "july.zip", *key, passphrase=None)
    assert unchecked.returncode == 0 and "pass --tsa-cert" in unchecked.stderr


def test_forged_bundles_are_refused_even_with_a_witnessed_policy_txt(witnessed: Witnessed) -> None:
    """Re-signed with a fresh key, the bundle's own keys/ and policy.txt name the forger:
    without a pin exit 4, with the genuine pins exit 3."""
    from audit.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
    from audit.note import Signer

    d = witnessed.dir
    m = _members(witnessed.bundle)
    genuine = m["checkpoint"].decode()
    cp = parse_checkpoint(parse_note(genuine).text)
    forger = Signer(fleet.ORIGIN, keys.generate_key())
    forged_note = sign_checkpoint(Checkpoint(cp.origin, cp.size, cp.root), [forger])
    forged = {
        n: (b.decode().replace(genuine, forged_note).encode() if n == "checkpoint" or n.endswith(".tlog-proof") else b)
        for n, b in m.items()
        if not n.startswith("keys/")
    }
    forged[f"keys/forger+{forger.verifier.key_id.hex()}.vkey"] = forger.vkey.encode() + b"\n"
    forged["policy.txt"] = f"log {forger.vkey}\nquorum none\n".encode()
    _write(d / "out" / "resigned.zip", forged)
    alone = script(d / "out", "audit", "verify", "resigned.zip", passphrase=None)
    assert alone.returncode == 3 and len(errors(alone)) == 1, alone.stderr
    assert (
        errors(alone)[0]
        == f"error: keys/forger+{forger.verifier.key_id.hex()}.vkey: not a key the bundle's key_event entries name"
    )
    w = witnessed.witness_vkeys
    for pins in (["--key", witnessed.log_vkey], ["--key", witnessed.log_vkey, "--witness", w[0], "--witness", w[1]]):
        refused = script(d / "out", "audit", "verify", "resigned.zip", *pins, passphrase=None)
        assert refused.returncode == 3 and errors(refused)[0].startswith("error: checkpoint: "), refused.stderr
