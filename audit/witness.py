"""A C2SP witness (``tlog-witness`` v1.0.0, Ed25519 ``tlog-cosignature/v1``): the rules and state.

A witness is run by someone other than the log's operator — a customer, an auditor, an
independent operator. It keeps, for each log it follows, the latest tree head it cosigned,
and cosigns a new checkpoint only when the log proves that checkpoint extends it. A log
that shows one history to the witness and another to an auditor cannot get both
cosigned, and a log restored from an old backup cannot get its rolled-back tree cosigned.

Its folder (``gpumeter witness init``)::

    witness.key     Ed25519 private key, PKCS#8 PEM, mode 0600 (unencrypted: the witness
                    answers unattended, like an SSH host key)
    witness.json    its name and vkey (public)
    state.json      per log origin: latest cosigned size, root and checkpoint (public)
    state.lock      held (flock) while a submission is checked and the state written

:meth:`Witness.add_checkpoint` answers one ``add-checkpoint`` body with the status the
specification fixes (reference: the table in the gpumeter docs)::

    400  malformed body, more than 63 proof lines, or old size > checkpoint size
    403  no valid signature by a key the witness trusts for the origin (or a trusted
         key's signature fails)
    404  unknown origin
    409  old size is not the size the witness holds; body "<size>\\n", text/x.tlog.size
    422  consistency proof fails; a proof with old 0; same size, different root;
         a size-0 checkpoint whose root is not the empty-tree hash
    200  the cosignature line (timestamp > 0)

The check and the state update happen under one lock (a thread lock and an ``flock`` on
``state.lock``), and the state is written to a temporary file, fsynced, and renamed
before the cosignature is returned: two concurrent submissions cannot both win, and a
crash never leaves a cosignature for a state that was not kept.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import parse_checkpoint
from audit.errors import AuditError, KeyFileError, VerificationError
from audit.keys import create_private_file, read_private_file
from audit.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from audit.note import (
    SIG_COSIGNATURE_V1,
    Signer,
    Verifier,
    b64decode,
    b64encode,
    decode_note,
    format_note,
    open_note,
    parse_note,
    valid_name,
)
from gpumeter.files import atomic_write

MAX_BODY_BYTES = 64 * 1024
MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"
KEY_FILE = "witness.key"
INFO_FILE = "witness.json"
STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
_OLD = re.compile(rb"^old (0|[1-9][0-9]{0,19})$")
_MAX_SIZE = (1 << 64) - 1


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, body, content type, and a one-line reason for the log."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    reason: str = ""

    @classmethod
    def refuse(cls, status: int, reason: str) -> Answer:
        return cls(status, (reason + "\n").encode("utf-8"), reason=reason)


@dataclass(frozen=True)
class Submission:
    old: int
    proof: tuple[bytes, ...]
    note: bytes


def parse_submission(body: bytes) -> Submission | Answer:
    """Split an ``add-checkpoint`` body; an :class:`Answer` (400) when it is malformed."""
    if len(body) > MAX_BODY_BYTES:
        return Answer.refuse(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    first, sep, rest = body.partition(b"\n")
    m = _OLD.match(first)
    if not sep or m is None or int(m.group(1)) > _MAX_SIZE:
        return Answer.refuse(400, "the body must start with 'old <size>' and a newline")
    proof: list[bytes] = []
    while True:
        line, sep, rest = rest.partition(b"\n")
        if not sep:
            return Answer.refuse(400, "no empty line between the proof and the checkpoint")
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            return Answer.refuse(400, f"more than {MAX_PROOF_LINES} consistency proof lines")
        try:
            digest = b64decode(line.decode("ascii"), what="proof line")
        except (VerificationError, UnicodeDecodeError):
            return Answer.refuse(400, f"proof line {len(proof) + 1} is not standard base64")
        if len(digest) != HASH_SIZE:
            return Answer.refuse(400, f"proof line {len(proof) + 1} is not a {HASH_SIZE}-byte hash")
        proof.append(digest)
    return Submission(int(m.group(1)), tuple(proof), rest)


def format_submission(old: int, proof: Sequence[bytes], note: str) -> bytes:
    """The ``add-checkpoint`` body a log sends (the inverse of :func:`parse_submission`)."""
    lines = [f"old {old}", *(b64encode(h) for h in proof), ""]
    return ("\n".join(lines) + "\n" + note).encode("utf-8")


# --------------------------------------------------------------------------- the folder


def init_witness(directory: Path, name: str) -> Verifier:
    """Create a witness folder: a new key (0600) and ``witness.json``; returns the vkey."""
    if not valid_name(name):
        raise KeyFileError("a witness name must be non-empty, without spaces or '+'", value=name)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    create_private_file(directory / KEY_FILE, pem, what="witness key")
    verifier = Signer(name, key, SIG_COSIGNATURE_V1).verifier
    info = {"name": name, "vkey": verifier.vkey}
    atomic_write(directory / INFO_FILE, (json.dumps(info, indent=2) + "\n").encode("utf-8"), durable=True)
    return verifier


def load_signer(directory: Path) -> Signer:
    """The witness's cosigning key and name from its folder."""
    try:
        info = json.loads((directory / INFO_FILE).read_text(encoding="utf-8"))
        name = str(info["name"])
    except FileNotFoundError as exc:
        raise KeyFileError("not a witness folder; run `gpumeter witness init`", member=str(directory)) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyFileError("witness.json is unreadable or malformed", member=str(directory / INFO_FILE)) from exc
    data = read_private_file(directory / KEY_FILE, what="witness key", missing="run `gpumeter witness init`")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError) as exc:
        raise KeyFileError("the witness key is damaged or encrypted", member=str(directory / KEY_FILE)) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError("the witness key is not an Ed25519 key", member=str(directory / KEY_FILE))
    signer = Signer(name, key, SIG_COSIGNATURE_V1)
    if info.get("vkey") not in (None, signer.vkey):
        raise KeyFileError("witness.json names another key than witness.key", member=str(directory / INFO_FILE))
    return signer


@dataclass(frozen=True)
class Latest:
    size: int
    root: bytes
    checkpoint: str  # the note the witness cosigned, with the log's and its own signatures


def origin_hash(origin: str) -> str:
    """The lowercase hex SHA-256 of an origin (the monitoring path segment)."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


class Witness:
    """The witness over its folder, following the logs whose vkeys it is given."""

    def __init__(
        self,
        directory: Path,
        logs: Sequence[Verifier],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.signer = load_signer(self.directory)
        self.clock = clock
        self.logs: dict[str, list[Verifier]] = {}
        for key in logs:
            if not key.is_log_key:
                raise KeyFileError("a log key must be of type 0x01 (Ed25519)", value=key.vkey)
            self.logs.setdefault(key.name, []).append(key)
        if not self.logs:
            raise AuditError("a witness needs at least one --log key to follow")
        self._lock = threading.Lock()
        self.load_state()  # refuse to start on a damaged state file

    @property
    def vkey(self) -> str:
        return self.signer.vkey

    # ------------------------------------------------------------------------- state

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock, open(self.directory / LOCK_FILE, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def load_state(self) -> dict[str, Latest]:
        path = self.directory / STATE_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise AuditError("the witness state is unreadable", member=str(path)) from exc
        try:
            return {
                str(origin): Latest(int(v["size"]), b64decode(v["root"], what="root"), str(v["checkpoint"]))
                for origin, v in doc["logs"].items()
            }
        except (KeyError, TypeError, ValueError, VerificationError) as exc:
            raise AuditError("the witness state is malformed", member=str(path)) from exc

    def _save_state(self, state: dict[str, Latest]) -> None:
        doc: dict[str, Any] = {
            "about": "latest tree head this witness cosigned, per log origin",
            "witness": self.vkey,
            "logs": {
                origin: {"size": s.size, "root": b64encode(s.root), "checkpoint": s.checkpoint}
                for origin, s in sorted(state.items())
            },
        }
        atomic_write(self.directory / STATE_FILE, (json.dumps(doc, indent=2) + "\n").encode("utf-8"), durable=True)

    # ------------------------------------------------------------------------ serving

    def add_checkpoint(self, body: bytes) -> Answer:
        """Check one submission against the state and, if it holds, cosign and keep it."""
        parsed = parse_submission(body)
        if isinstance(parsed, Answer):
            return parsed
        try:
            note = parse_note(parsed.note)
        except VerificationError as exc:
            return Answer.refuse(400, f"malformed checkpoint: {exc.message}")
        origin = note.text.split("\n", 1)[0]
        trusted = self.logs.get(origin)
        if trusted is None:
            return Answer.refuse(404, "unknown log origin")
        try:
            opened = open_note(parsed.note, trusted)
        except VerificationError as exc:
            return Answer.refuse(403, exc.message)
        lines = opened.text.split("\n")
        if len(lines) >= 3 and lines[1] == "0" and lines[2] != b64encode(EMPTY_ROOT):
            return Answer.refuse(422, "a size-0 checkpoint must carry the empty-tree hash")
        try:
            cp = parse_checkpoint(opened.text, origin=origin)
        except VerificationError as exc:
            return Answer.refuse(400, f"malformed checkpoint: {exc.message}")
        if parsed.old > cp.size:
            return Answer.refuse(400, f"old size {parsed.old} is larger than the checkpoint's {cp.size}")
        with self._locked():
            state = self.load_state()
            latest = state.get(origin, Latest(0, EMPTY_ROOT, ""))
            if parsed.old != latest.size:
                return Answer(409, f"{latest.size}\n".encode(), SIZE_CONTENT_TYPE, f"stale old size {parsed.old}")
            if parsed.old == 0 and parsed.proof:
                return Answer.refuse(422, "a consistency proof from size 0 must be empty")
            if parsed.old == cp.size and cp.root != latest.root:
                return Answer.refuse(422, f"a different root for size {cp.size} than the one cosigned")
            try:
                verify_consistency(parsed.old, cp.size, latest.root, cp.root, parsed.proof, allow_empty_old=True)
            except VerificationError as exc:
                return Answer.refuse(422, f"consistency proof fails: {exc.message}")
            stamp = max(1, int(self.clock()))
            cosignature = self.signer.sign(opened.text, timestamp=stamp)
            kept = format_note(opened.text, [*(sig for sig, _ in opened.verified), cosignature])
            state[origin] = Latest(cp.size, cp.root, kept)
            self._save_state(state)
        return Answer(200, cosignature.line().encode("utf-8"), reason=f"cosigned {origin} at size {cp.size}")

    def checkpoint(self, hashed_origin: str) -> Answer:
        """``GET /<sha256 hex of origin>/checkpoint``: the latest cosigned checkpoint, for monitors."""
        for origin, latest in self.load_state().items():
            if origin_hash(origin) == hashed_origin and latest.checkpoint:
                return Answer(200, decode_note(latest.checkpoint).encode("utf-8"), reason=f"checkpoint of {origin}")
        return Answer.refuse(404, "no cosigned checkpoint for that origin")
