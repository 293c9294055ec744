"""The log side of witnessing: submissions, cosignatures in the store, failures, forks.

Witnesses are ``gpumeter witness serve`` processes on 127.0.0.1; the log is a real DuckDB
store with a real signing key. Misbehaving witnesses (HTTP 500, silence) are tiny local
servers named as such below.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from audit import cosign, highwater, keys
from audit.entries import key_event
from audit.errors import VerificationError
from audit.log import AuditLog
from audit.note import parse_note
from audit.pinning import PolicyTrust
from audit.publish import check_published, publish
from gpumeter import store
from gpumeter.config import Config, load_config
from testing.servers import in_thread
from tests.audit.witnesses import in_process, init, post, serving

PASS = "a long test passphrase"
ORIGIN = "gpumeter.example.eu/witnessed"
T0 = datetime(2026, 10, 1, tzinfo=UTC)


@dataclass
class Site:
    root: Path
    witnesses: list[tuple[str, str, Path]]  # (name, vkey, folder)

    def config(self, urls: dict[str, str], quorum: int | None = None, vkeys: dict[str, str] | None = None) -> Config:
        rows = ",\n".join(
            f'{{ name = "{name}", url = "{urls[name]}", vkey = "{(vkeys or {}).get(name, vkey)}" }}'
            for name, vkey, _ in self.witnesses
            if name in urls
        )
        text = f"""
[store]
database = "var/gpumeter.duckdb"

[audit]
origin = "{ORIGIN}"
signing_key = "keys/audit.key"
witnesses = [
{rows}
]
""" + (f"quorum = {quorum}\n" if quorum is not None else "")
        (self.root / "gpumeter.toml").write_text(text)
        return load_config(self.root / "gpumeter.toml")

    @property
    def key(self) -> Path:
        return self.root / "keys" / "audit.key"

    @property
    def log_vkey(self) -> str:
        return keys.load_keyring(self.key).verifiers(ORIGIN)[0].vkey

    def signer(self) -> Any:
        return keys.load_signer(self.key, PASS, ORIGIN)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    root = tmp_path / "site"
    root.mkdir()
    keys.ensure_key(root / "keys" / "audit.key", PASS, ORIGIN)
    con = store.connect(root / "var" / "gpumeter.duckdb")
    store.migrate(con)
    con.close()
    ws = []
    for name in ("eu-auditor", "customer"):
        folder = tmp_path / name
        ws.append((name, init(folder, f"{name}.example.eu/witness").vkey, folder))
    return Site(root, ws)


def checkpoint_day(cfg: Config, site: Site, day: int, entries: int = 3) -> tuple[Any, cosign.Gathered]:
    """A day of the log: append entries, sign a checkpoint (guarded), gather cosignatures."""
    at = T0 + timedelta(days=day)
    with store.opened(cfg, "write") as con:
        log = AuditLog(con)
        log.append_many([key_event(at=at, event="key_added", key=f"day{day}-{i}") for i in range(entries)], at=at)
        cp = log.sign(site.signer(), ORIGIN, at=at, mark=highwater.mark_path(site.key))
        return cp, cosign.gather(con, cfg, cp)


def test_two_witnesses_cosign_a_months_checkpoints(site: Site) -> None:
    (n1, _, d1), (n2, _, d2) = site.witnesses
    with serving(d1, [site.log_vkey]) as u1, serving(d2, [site.log_vkey]) as u2:
        cfg = site.config({n1: u1, n2: u2})
        policy = cosign.trust_policy(cfg)
        assert policy.describe_quorum() == "all of (eu-auditor, customer)"
        for day in range(31):
            cp, got = checkpoint_day(cfg, site, day, entries=1 + day % 4)
            assert got.failures == () and got.quorum_met, got.failures
            assert sorted(got.cosigned) == ["customer", "eu-auditor"]
            assert policy.verify_checkpoint(got.note, origin=ORIGIN).size == cp.size
        with store.opened(cfg, "write") as con:
            note, count, failures = cosign.cosign_latest(con, cfg)  # nothing new to ask for
            submissions = con.execute("SELECT count(*), count(DISTINCT checkpoint_id) FROM audit_witness_submissions")
            assert submissions.fetchone() == (62, 31)
            assert con.execute("SELECT count(*) FROM audit_cosignatures").fetchone() == (62,)
        assert (count, failures, note) == (2, [], got.note)
        # the published checkpoint carries both cosignatures: a monitor pinning 2 of 2 follows it
        with store.opened(cfg, "read") as con:
            publish(con, site.root / "tlog", ORIGIN)
        assert (site.root / "tlog" / "checkpoint").read_text() == note
        published = check_published(site.root / "tlog", PolicyTrust(policy, ORIGIN))
        assert published.passed and published.size == cp.size, published.findings
        sigs = parse_note(note).signatures
        assert sigs[0].name == ORIGIN and [s.name for s in sigs[1:]] == sorted(s.name for s in sigs[1:])
        # each witness follows the month: its state is the last checkpoint
        for url in (u1, u2):
            assert post(url, b"old 0\n\n" + note.encode()).text == f"{cp.size}\n"
    # the policy a bundle would ship names both witnesses and their URLs
    text = cosign.policy_text(cfg)
    assert f"witness eu-auditor {site.witnesses[0][1]} {u1}" in text and "quorum witnesses" in text


class MisbehavingWitness(BaseHTTPRequestHandler):
    """A broken witness stand-in: answers 500, a flood, an absurd size, or never answers."""

    mode = "500"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.mode == "silent":
            threading.Event().wait(5)
            return
        if self.mode == "trickle":  # headers at once, then a byte now and then
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"\xe2")
                self.wfile.flush()
                threading.Event().wait(0.2)
            return
        status, body = {
            "500": (500, b"internal error\n"),
            "flood": (200, "\u2014 w x\n".encode() * 20000),
            "absurd": (409, b"99999999999999999999999\n"),
        }[self.mode]
        self.send_response(status)
        self.send_header("Content-Type", "text/x.tlog.size")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def broken() -> Iterator[Callable[[str], str]]:
    with contextlib.ExitStack() as running:

        def start(mode: str) -> str:
            handler = type("Handler", (MisbehavingWitness,), {"mode": mode})
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            running.enter_context(in_thread(server))
            return f"http://127.0.0.1:{server.server_address[1]}"

        yield start


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_witness_that_is_down_loses_nothing(
    site: Site, broken: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (n1, _, d1), (n2, _, d2) = site.witnesses
    monkeypatch.setattr(cosign, "READ_TIMEOUT_S", 1.0)
    with in_process(d1, [site.log_vkey]) as w1:
        down = [
            (broken("500"), "HTTP 500: internal error"),
            (closed_port(), "unreachable"),
            (broken("flood"), "answered 200 but its answer is larger"),
            (broken("absurd"), "HTTP 409: 9999"),
            (broken("silent"), "timed out"),
            (broken("trickle"), "timed out"),
        ]
        for day, (url, want) in enumerate(down):
            cfg = site.config({n1: w1.url, n2: url}, quorum=2)
            cp, got = checkpoint_day(cfg, site, day)
            assert not got.quorum_met and got.cosigned == ("eu-auditor",)
            (failure,) = got.failures
            assert failure.name == "customer" and failure.detail.startswith(want), failure
            with store.opened(cfg, "read") as con:
                assert AuditLog(con).latest_checkpoint() == cp  # the checkpoint stays signed and stored
                recorded = store.run(con, "audit_witness_failures", {"checkpoint_id": cp.id}).fetchall()
                assert [(r[0], r[3]) for r in recorded] == [("customer", failure.detail)]
        # back up: the next checkpoint reaches it, from the size it last held (never: 0)
        with in_process(d2, [site.log_vkey]) as w2:
            cfg = site.config({n1: w1.url, n2: w2.url}, quorum=2)
            back, got = checkpoint_day(cfg, site, 6)
            assert got.quorum_met and got.failures == ()
            cp, got = checkpoint_day(cfg, site, 7)
            with store.opened(cfg, "read") as con:
                rows = con.execute(
                    "SELECT old_size, outcome FROM audit_witness_submissions WHERE name = 'customer' ORDER BY id"
                ).fetchall()
            assert [r[1] for r in rows] == ["failed"] * 6 + ["cosigned", "cosigned"], rows
            assert [r[0] for r in rows[-2:]] == [0, back.size]  # a proof from the size it cosigned last


def test_a_cosignature_by_the_wrong_key_is_rejected(site: Site) -> None:
    (_, _, d1), (n2, _, _) = site.witnesses
    with in_process(d1, [site.log_vkey]) as w1:
        impostor_cfg = site.config({n2: w1.url})  # customer's URL now reaches eu-auditor's witness
        _, got = checkpoint_day(impostor_cfg, site, 0)
        (failure,) = got.failures
        assert failure.status == 200 and "no verifiable signatures" in failure.detail
        assert got.cosigned == () and not got.quorum_met
        with store.opened(impostor_cfg, "read") as con:
            assert con.execute("SELECT count(*) FROM audit_cosignatures").fetchone() == (0,)


def test_a_stale_size_is_resent_from_what_the_witness_holds(site: Site) -> None:
    (n1, _, d1), _ = site.witnesses
    with in_process(d1, [site.log_vkey]) as w1:
        cfg = site.config({n1: w1.url})
        first, got = checkpoint_day(cfg, site, 0)
        assert got.quorum_met
        with store.opened(cfg, "write") as con:  # the log forgets what the witness said
            con.execute("DELETE FROM audit_witness_submissions")
        _, got = checkpoint_day(cfg, site, 1)
        assert got.quorum_met, got.failures
        with store.opened(cfg, "read") as con:
            rows = con.execute("SELECT old_size, status, outcome FROM audit_witness_submissions ORDER BY id").fetchall()
        assert rows == [(0, 409, "conflict"), (first.size, 200, "cosigned")]


def test_a_restored_old_database_cannot_fork_the_log(site: Site) -> None:
    (n1, _, d1), _ = site.witnesses
    with in_process(d1, [site.log_vkey]) as w1:
        cfg = site.config({n1: w1.url})
        old, _ = checkpoint_day(cfg, site, 0)
        backup = site.root / "backup.duckdb"
        shutil.copy(cfg.store.database, backup)
        published, got = checkpoint_day(cfg, site, 1)
        assert got.quorum_met
        shutil.copy(backup, cfg.store.database)  # the operator restores last night's backup
        refusal = f"once signed a checkpoint of {published.size} entries but the store holds {old.size + 1}"
        with pytest.raises(VerificationError, match=refusal):
            checkpoint_day(cfg, site, 2, entries=1)
        with pytest.raises(VerificationError, match=f"not consistent with the checkpoint of {published.size} entries"):
            checkpoint_day(cfg, site, 2, entries=5)  # a larger, different history is refused too
        with store.opened(cfg, "read") as con:
            assert AuditLog(con).latest_checkpoint() == old
        # without the mark (deleted too), the witness still refuses the fork
        highwater.mark_path(site.key).unlink()
        _, got = checkpoint_day(cfg, site, 3, entries=1)
        (failure,) = got.failures
        assert failure.status == 422 and not got.quorum_met


def test_the_checkpoint_command_reports_and_exits_1_when_the_quorum_fails(site: Site) -> None:
    (n1, _, d1), (n2, _, _) = site.witnesses
    gpumeter = str(Path(sys.executable).with_name("gpumeter"))
    env = {"GPUMETER_AUDIT_PASSPHRASE": PASS, "PATH": "/usr/bin:/bin"}
    with in_process(d1, [site.log_vkey]) as w1:
        site.config({n1: w1.url, n2: closed_port()}, quorum=2)
        run = subprocess.run(
            [gpumeter, "audit", "checkpoint"], cwd=site.root, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 1
        assert run.stdout.count("\u2014 ") == 2  # the log's signature and eu-auditor's cosignature
        lines = run.stderr.strip().splitlines()
        assert "warning: witness customer: unreachable" in run.stderr
        assert lines[-1].startswith("error: checkpoint size 1 is signed and kept, but: witness quorum not met")
        site.config({n1: w1.url, n2: closed_port()}, quorum=1)
        ok = subprocess.run(
            [gpumeter, "audit", "checkpoint"], cwd=site.root, env=env, capture_output=True, text=True, timeout=120
        )
        assert ok.returncode == 0, ok.stderr
        assert "cosigned by eu-auditor" in ok.stderr
        assert requests.get(w1.url + "/" + "0" * 64 + "/checkpoint", timeout=10).status_code == 404
