"""The C2SP witness: ``gpumeter witness init|serve``, every status code, forks, races, bounds."""

from __future__ import annotations

import hashlib
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import witness
from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.merkle import EMPTY_ROOT
from audit.note import Signer as NoteSigner
from audit.note import b64encode, format_note, open_note, parse_note
from tests.audit.witnesses import GPUMETER, MemoryLog, in_process, init, post, serving


@pytest.fixture
def wdir(tmp_path: Path) -> Path:
    d = tmp_path / "witness"
    witness.init_witness(d, "witness.example.eu/w1")
    return d


def cosigned(log: MemoryLog, answer: requests.Response, wdir: Path) -> int:
    """Check a 200 answer is one valid cosignature line by the witness; returns its time."""
    assert answer.status_code == 200, answer.text
    verifier = witness.load_signer(wdir).verifier
    opened = open_note(parse_note(log.note()).text + "\n" + answer.text, [verifier])
    ((sig, v),) = opened.verified
    stamp = v.cosigned_at(sig.data)
    assert stamp is not None and stamp > 0
    return stamp


def test_init_makes_a_private_key_prints_the_vkey_and_refuses_to_overwrite(tmp_path: Path) -> None:
    d = tmp_path / "w"
    vkey = init(d, "witness.example.eu/auditor")
    assert vkey.sig_type == 0x04 and vkey.name == "witness.example.eu/auditor"
    assert stat.S_IMODE((d / "witness.key").stat().st_mode) == 0o600
    assert witness.load_signer(d).vkey == vkey.vkey
    again = subprocess.run(
        [GPUMETER, "witness", "init", "--name", "x.example/w", "--dir", str(d)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1].startswith("error: ") and "refusing to overwrite" in again.stderr
    (d / "witness.key").chmod(0o644)
    with pytest.raises(Exception, match="accessible to other users"):
        witness.load_signer(d)


def test_every_status_code(wdir: Path) -> None:
    log = MemoryLog().grow(4)
    other = MemoryLog("audit.example.eu/other").grow(4)
    with in_process(wdir, [log.vkey]) as server:
        url = server.url
        # 404: a log the witness does not follow
        assert post(url, other.body(0)).status_code == 404
        # 403: the right origin signed by another key; a trusted key whose signature fails
        impostor = NoteSigner(log.origin, Ed25519PrivateKey.generate())
        forged = sign_checkpoint(Checkpoint(log.origin, 4, log.tree.root(4)), [impostor])
        assert post(url, witness.format_submission(0, [], forged)).status_code == 403
        tampered = log.note().replace("\n4\n", "\n3\n", 1)
        assert post(url, witness.format_submission(0, [], tampered)).status_code == 403
        # 422: old 0 with a proof; a size-0 checkpoint without the empty-tree hash
        assert post(url, log.body(0, proof=[hashlib.sha256(b"x").digest()])).status_code == 422
        zero = sign_checkpoint(Checkpoint(log.origin, 1, log.tree.root(1)), [log.signer]).replace("\n1\n", "\n0\n", 1)
        zero_note = format_note(parse_note(zero).text, [log.signer.sign(parse_note(zero).text)])
        assert post(url, witness.format_submission(0, [], zero_note)).status_code == 422
        # 200: first sight (old 0), a cosignature with a non-zero time
        first = post(url, log.body(0))
        cosigned(log, first, wdir)
        # 409: stale old size, the body says what the witness holds
        log.grow(8)
        stale = post(url, log.body(0))
        assert stale.status_code == 409
        assert stale.text == "4\n" and stale.headers["Content-Type"] == "text/x.tlog.size"
        # 400: old size larger than the checkpoint (a replayed smaller checkpoint)
        assert post(url, log.body(8, 4, proof=[])).status_code == 400
        # 422: a proof that does not verify
        bad = log.tree.consistency_proof(4, 8)
        bad[0] = bytes(32)
        assert post(url, log.body(4, proof=bad)).status_code == 422
        # 200 with the right proof, then 422 for the same size with another root
        cosigned(log, post(url, log.body(4)), wdir)
        fork = log.fork(b"fork ").grow(8)
        assert post(url, fork.body(8)).status_code == 422
        # the same checkpoint again: cosigned again
        cosigned(log, post(url, log.body(8)), wdir)
        # monitors read the latest cosigned checkpoint, with the log's and the witness's signatures
        origin_hash = hashlib.sha256(log.origin.encode()).hexdigest()
        got = requests.get(f"{url}/{origin_hash}/checkpoint", timeout=30)
        assert got.status_code == 200
        kept = open_note(got.text, [parse_note_verifier(log), witness.load_signer(wdir).verifier])
        assert kept.text == parse_note(log.note()).text and len(kept.verified) == 2
        assert requests.get(f"{url}/{'0' * 64}/checkpoint", timeout=30).status_code == 404
        assert requests.get(f"{url}/other", timeout=30).status_code == 404


def parse_note_verifier(log: MemoryLog) -> object:
    return log.signer.verifier


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 4",
        b"old -1\n\n",
        b"old 04\n\n",
        b"old 99999999999999999999999\n\n",
        b"new 4\n\n",
        b"old 0\nnot base64!\n\n",
        b"old 0\n" + b64encode(b"short").encode() + b"\n\n",
        b"old 0\n" + (b64encode(bytes(32)).encode() + b"\n") * 64 + b"\n",
        b"old 0\n",
        b"old 0\n\nnot a note\n",
        "old 0\n\n\u2014 x y\n".encode(),
    ],
)
def test_malformed_bodies_are_400(wdir: Path, body: bytes) -> None:
    log = MemoryLog()
    w = witness.Witness(wdir, [log.signer.verifier])
    assert w.add_checkpoint(body).status == 400


def test_63_proof_lines_are_parsed_and_64_refused() -> None:
    line = b64encode(bytes(32)).encode() + b"\n"
    parsed = witness.parse_submission(b"old 1\n" + line * 63 + b"\nnote")
    assert isinstance(parsed, witness.Submission) and len(parsed.proof) == 63
    assert isinstance(witness.parse_submission(b"old 1\n" + line * 64 + b"\nnote"), witness.Answer)


def test_bodies_over_the_cap_are_refused_unread(wdir: Path) -> None:
    log = MemoryLog().grow(2)
    with in_process(wdir, [log.vkey]) as server:
        huge = log.body(0) + b"x" * witness.MAX_BODY_BYTES
        assert post(server.url, huge).status_code == 413
        assert requests.post(server.url + "/add-checkpoint", data=iter([log.body(0)]), timeout=30).status_code == 411
        assert witness.Witness(wdir, [log.signer.verifier]).load_state() == {}


def test_a_forked_log_cannot_get_a_cosignature(wdir: Path) -> None:
    log = MemoryLog().grow(8)
    with in_process(wdir, [log.vkey]) as server:
        cosigned(log, post(server.url, log.body(0)), wdir)
        # a larger tree that does not extend the one cosigned, with its own (valid) proof
        fork = log.fork(b"rewritten ").grow(12)
        assert post(server.url, fork.body(8)).status_code == 422
        # the fork claiming the witness's size with another root
        assert post(server.url, fork.body(8, 8)).status_code == 422
        # a rolled-back log (a restored backup) presenting a smaller tree
        assert post(server.url, log.body(8, 6, proof=[])).status_code == 400
        assert post(server.url, log.body(0, 6)).status_code == 409
    state = witness.Witness(wdir, [log.signer.verifier]).load_state()[log.origin]
    assert (state.size, state.root) == (8, log.tree.root(8))


def test_concurrent_conflicting_submissions_only_one_wins(wdir: Path) -> None:
    current = MemoryLog().grow(8)
    with in_process(wdir, [current.vkey]) as server:
        cosigned(current, post(server.url, current.body(0)), wdir)
        for round_ in range(12):
            size = current.tree.size
            a = current.fork(b"a%d " % round_, keep=size).grow(size + 3)
            b = current.fork(b"b%d " % round_, keep=size).grow(size + 5)
            bodies = [a.body(size), b.body(size)]
            barrier = threading.Barrier(2)
            answers = [0, 0]

            def send(
                i: int, bodies: list[bytes] = bodies, answers: list[int] = answers, barrier: threading.Barrier = barrier
            ) -> None:
                barrier.wait()
                answers[i] = post(server.url, bodies[i]).status_code

            threads = [threading.Thread(target=send, args=(i,)) for i in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(answers) == [200, 409], answers
            winner = a if answers[0] == 200 else b
            held = witness.Witness(wdir, [current.signer.verifier]).load_state()[current.origin]
            assert (held.size, held.root) == (winner.tree.size, winner.tree.root())
            current = winner


def test_slow_clients_and_floods_are_bounded(wdir: Path) -> None:
    log = MemoryLog().grow(2)
    with in_process(wdir, [log.vkey], read_timeout_s=0.5, connection_s=1.5, max_handlers=2) as server:
        host, port = server.server_address[:2]
        body = log.body(0)
        slow = socket.create_connection((str(host), port))
        slow.sendall(b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        slow.sendall(body[:10])  # then nothing: the read times out
        idle = socket.create_connection((str(host), port))  # holds the second slot
        time.sleep(0.2)
        third = socket.create_connection((str(host), port))
        third.settimeout(5)
        assert third.recv(100).startswith(b"HTTP/1.1 503")
        slow.settimeout(5)
        assert b" 408 " in slow.recv(200).split(b"\r\n", 1)[0] + b" "
        start = time.monotonic()
        idle.settimeout(5)
        assert idle.recv(10) == b""  # cut once its time is up
        assert time.monotonic() - start < 3
        for s in (slow, idle, third):
            s.close()
        time.sleep(0.2)
        cosigned(log, post(server.url, body), wdir)  # served again


def test_restart_keeps_state_and_two_witnesses_run_side_by_side(tmp_path: Path) -> None:
    log = MemoryLog().grow(5)
    w1, w2 = tmp_path / "w1", tmp_path / "w2"
    init(w1, "witness.example.eu/w1")
    init(w2, "witness.example.org/w2")
    with serving(w1, [log.vkey]) as url1, serving(w2, [log.vkey]) as url2:
        cosigned(log, post(url1, log.body(0)), w1)
        cosigned(log, post(url2, log.body(0)), w2)
    log.grow(9)
    with serving(w1, [log.vkey]) as url1:
        stale = post(url1, log.body(0))
        assert (stale.status_code, stale.text) == (409, "5\n")
        cosigned(log, post(url1, log.body(5)), w1)
    assert witness.Witness(w1, [log.signer.verifier]).load_state()[log.origin].size == 9
    assert witness.Witness(w2, [log.signer.verifier]).load_state()[log.origin].size == 5


def test_serve_refuses_a_bad_log_key_and_a_missing_folder(tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GPUMETER, "witness", "serve", *args], capture_output=True, text=True, timeout=120, check=False
        )

    log = MemoryLog()
    missing = serve("--dir", str(tmp_path / "none"), "--port", "0", "--log", log.vkey)
    assert missing.returncode == 1 and "gpumeter witness init" in missing.stderr
    witness.init_witness(tmp_path / "w", "w.example/w")
    cosigner = witness.load_signer(tmp_path / "w").vkey
    wrong_type = serve("--dir", str(tmp_path / "w"), "--port", "0", "--log", cosigner)
    assert wrong_type.returncode == 1 and "type 0x01" in wrong_type.stderr


def test_empty_tree_checkpoints_are_cosigned(wdir: Path) -> None:
    log = MemoryLog()
    w = witness.Witness(wdir, [log.signer.verifier], clock=lambda: 0.2)
    answer = w.add_checkpoint(witness.format_submission(0, [], log.note(0)))
    assert answer.status == 200
    sig = parse_note(parse_note(log.note(0)).text + "\n" + answer.body.decode()).signatures[0]
    assert witness.load_signer(wdir).verifier.cosigned_at(sig.data) == 1  # never a zero timestamp
    assert w.load_state()[log.origin].root == EMPTY_ROOT


def test_absurd_or_malformed_checkpoints_signed_by_the_log_are_400(wdir: Path) -> None:
    log = MemoryLog().grow(3)
    w = witness.Witness(wdir, [log.signer.verifier])
    root = b64encode(log.tree.root())
    for size in ("18446744073709551616", "03", "-3", "3.0", ""):
        text = f"{log.origin}\n{size}\n{root}\n"
        note = format_note(text, [log.signer.sign(text)])
        assert w.add_checkpoint(witness.format_submission(0, [], note)).status == 400, size
    text = f"{log.origin}\n3\n{b64encode(bytes(31))}\n"
    assert w.add_checkpoint(witness.format_submission(0, [], format_note(text, [log.signer.sign(text)]))).status == 400
    assert w.load_state() == {}
