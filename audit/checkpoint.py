"""C2SP ``tlog-checkpoint`` v1.0.0: the signed tree head of the audit log.

The note text is at least three non-empty lines: the *origin* (the log's name), the tree
size in ASCII decimal without leading zeros, the standard-base64 RFC 6962 root (32
bytes); further lines are opaque extension lines, kept but never written by gpumeter.
The origin is checked against configuration, never against the key name (sum.golang.org
signs origin ``go.sum database tree`` with key ``sum.golang.org``). A size-0 checkpoint
must carry the empty-tree hash. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from audit.errors import VerificationError
from audit.merkle import EMPTY_ROOT, HASH_SIZE
from audit.note import OpenedNote, Signer, Verifier, b64decode, b64encode, open_note, sign_note

_SIZE = re.compile(r"^(0|[1-9][0-9]{0,19})$")
MAX_SIZE = (1 << 64) - 1


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """The note text: origin, size, base64 root, extension lines, each ending ``\\n``."""
        return format_checkpoint(self)


def format_checkpoint(cp: Checkpoint) -> str:
    if not cp.origin or "\n" in cp.origin:
        raise VerificationError("checkpoint origin must be one non-empty line", value=cp.origin)
    if not 0 <= cp.size <= MAX_SIZE:
        raise VerificationError("checkpoint size out of range", value=cp.size)
    if len(cp.root) != HASH_SIZE:
        raise VerificationError(f"checkpoint root must be {HASH_SIZE} bytes")
    for line in cp.extensions:
        if not line or "\n" in line:
            raise VerificationError("extension lines must be single non-empty lines")
    lines = [cp.origin, str(cp.size), b64encode(cp.root), *cp.extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str, *, origin: str | None = None) -> Checkpoint:
    """A checkpoint body (note text); strict about sizes and hashes, origin if given."""
    if not text.endswith("\n"):
        raise VerificationError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise VerificationError("checkpoint needs origin, size and root lines")
    if any(not line for line in lines):
        raise VerificationError("checkpoint lines must not be empty")
    got_origin, size_text, root_text, *extensions = lines
    if origin is not None and got_origin != origin:
        raise VerificationError(f"checkpoint origin {got_origin!r} is not the expected {origin!r}")
    if not _SIZE.match(size_text) or int(size_text) > MAX_SIZE:
        raise VerificationError("checkpoint size must be decimal without leading zeros", value=size_text[:40])
    size = int(size_text)
    root = b64decode(root_text, what="checkpoint root")
    if len(root) != HASH_SIZE:
        raise VerificationError(f"checkpoint root is {len(root)} bytes, not {HASH_SIZE}")
    if size == 0 and root != EMPTY_ROOT:
        raise VerificationError("a size-0 checkpoint must carry the empty-tree hash")
    return Checkpoint(got_origin, size, root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signers: Sequence[Signer]) -> str:
    """The signed note text of a checkpoint (log signers, in the given order)."""
    return sign_note(cp.body(), signers)


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint whose log signature verified, with the cosignatures of the witnesses given."""

    checkpoint: Checkpoint
    note: str
    opened: OpenedNote

    @property
    def log_keys(self) -> tuple[Verifier, ...]:
        return tuple(v for v in self.opened.verifiers if v.is_log_key)

    @property
    def cosigners(self) -> tuple[Verifier, ...]:
        return tuple(v for v in self.opened.verifiers if not v.is_log_key)


def open_checkpoint(
    note: str | bytes,
    log_keys: Sequence[Verifier],
    *,
    origin: str,
    witnesses: Sequence[Verifier] = (),
) -> SignedCheckpoint:
    """Open a signed checkpoint: its origin, a valid signature by one of ``log_keys``, and
    which of ``witnesses`` cosigned it (:attr:`SignedCheckpoint.cosigners`). Whether those
    cosigners are enough is the trust policy's rule (:meth:`audit.trust.TrustPolicy.satisfied`),
    decided by :meth:`audit.pinning.PolicyTrust.verify_checkpoint`, never here."""
    for key in log_keys:
        if not key.is_log_key:
            raise VerificationError(f"key {key.name}+{key.key_id.hex()} is a cosignature key, not a log key")
    for key in witnesses:
        if key.is_log_key:
            raise VerificationError(f"witness key {key.name}+{key.key_id.hex()} is not a cosignature key")
    opened = open_note(note, [*log_keys, *witnesses])
    cp = parse_checkpoint(opened.text, origin=origin)
    signed = SignedCheckpoint(cp, note if isinstance(note, str) else note.decode("utf-8"), opened)
    if not signed.log_keys:
        raise VerificationError("checkpoint has no valid signature by a trusted log key")
    return signed
