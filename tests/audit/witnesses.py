"""Helpers for witness tests: an in-memory log that signs checkpoints, and witness processes.

``gpumeter witness serve`` runs as a real subprocess of the installed console script on
127.0.0.1 (``--port 0``; the port is read from the line it prints), or, where many
requests are the point, as an in-process server on a real socket.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import witness, witness_http
from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.merkle import MerkleTree
from audit.note import Signer, Verifier, parse_vkey
from testing.servers import in_thread

GPUMETER = str(Path(sys.executable).with_name("gpumeter"))


class MemoryLog:
    """A log kept in memory: append entries, sign checkpoints, give consistency proofs."""

    def __init__(self, origin: str = "audit.example.eu/witnessed", *, seed: bytes = b"") -> None:
        self.origin = origin
        self.signer = Signer(origin, Ed25519PrivateKey.generate())
        self.tree = MerkleTree()
        self.entries: list[bytes] = []
        self.seed = seed

    @property
    def vkey(self) -> str:
        return self.signer.vkey

    def grow(self, size: int) -> MemoryLog:
        while self.tree.size < size:
            self.entries.append(self.seed + b"entry %d" % self.tree.size)
            self.tree.append(self.entries[-1])
        return self

    def note(self, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        return sign_checkpoint(Checkpoint(self.origin, size, self.tree.root(size)), [self.signer])

    def body(self, old: int, size: int | None = None, *, proof: list[bytes] | None = None) -> bytes:
        size = self.tree.size if size is None else size
        if proof is None:
            proof = [] if old in (0, size) else self.tree.consistency_proof(old, size)
        return witness.format_submission(old, proof, self.note(size))

    def fork(self, seed: bytes, *, keep: int = 0) -> MemoryLog:
        """Another history under the same key and origin: the first ``keep`` entries, then
        entries of its own."""
        other = MemoryLog(self.origin, seed=seed)
        other.signer = self.signer
        for entry in self.entries[:keep]:
            other.entries.append(entry)
            other.tree.append(entry)
        return other


def post(url: str, body: bytes) -> requests.Response:
    return requests.post(url + "/add-checkpoint", data=body, timeout=30)


@contextmanager
def in_process(directory: Path, logs: list[str], **bounds: float) -> Iterator[witness_http.WitnessServer]:
    server = witness_http.make_server(witness.Witness(directory, [parse_vkey(v) for v in logs]), **bounds)
    with in_thread(server):
        yield server


def init(directory: Path, name: str) -> Verifier:
    proc = subprocess.run(
        [GPUMETER, "witness", "init", "--name", name, "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return parse_vkey(proc.stdout.strip())


@contextmanager
def serving(directory: Path, logs: list[str]) -> Iterator[str]:
    """``gpumeter witness serve`` in its own process; yields its URL."""
    args = [GPUMETER, "witness", "serve", "--dir", str(directory), "--port", "0"]
    for vkey in logs:
        args += ["--log", vkey]
    errors = directory / "serve.log"
    with open(errors, "ab") as log:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", errors.read_text())
            if m:
                yield m.group(1)
                break
            if proc.poll() is not None:
                raise AssertionError(f"witness exited {proc.returncode}: {errors.read_text()}")
            time.sleep(0.05)
        else:
            raise AssertionError("witness did not start: " + errors.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        errors.write_text("")  # the next start prints its own URL
