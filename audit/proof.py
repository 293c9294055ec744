"""C2SP ``c2sp.org/tlog-proof@v1`` files: one entry's inclusion proof plus its checkpoint.

::

    c2sp.org/tlog-proof@v1
    extra <base64>            (optional, NOT authenticated)
    index <0-based decimal>
    <base64 hash>             (0..64 lines: the inclusion path, leaf's sibling first)

    <signed checkpoint, verbatim>

Verification order (spec): (1) hash the entry as a leaf; (2) the checkpoint's origin is
the expected one and a trusted log key signed it; (3) witness cosignatures meet the
quorum; (4) the path binds the leaf to the checkpoint's root. Pure: no I/O.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from audit.checkpoint import SignedCheckpoint, open_checkpoint
from audit.errors import VerificationError
from audit.merkle import HASH_SIZE, MAX_PROOF_HASHES, InclusionBatch, leaf_hash, verify_inclusion
from audit.note import Verifier, b64decode, b64encode, decode_note

HEADER = "c2sp.org/tlog-proof@v1"
_HASH_B64 = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")  # canonical base64 of exactly 32 bytes
_INDEX = re.compile(r"^index (0|[1-9][0-9]{0,19})$")


@dataclass(frozen=True)
class TlogProof:
    index: int
    path: tuple[bytes, ...]
    checkpoint: str  # the signed note, verbatim
    extra: bytes | None = None


def format_proof(proof: TlogProof) -> str:
    """The exact file text."""
    if len(proof.path) > MAX_PROOF_HASHES or any(len(h) != HASH_SIZE for h in proof.path):
        raise VerificationError("a tlog-proof path holds at most 64 hashes of 32 bytes")
    lines = [HEADER]
    if proof.extra is not None:
        lines.append(f"extra {b64encode(proof.extra)}")
    lines.append(f"index {proof.index}")
    lines += [b64encode(h) for h in proof.path]
    return "\n".join(lines) + "\n\n" + proof.checkpoint


def parse_proof(data: bytes | str) -> TlogProof:
    """Parse a proof file strictly (header, optional extra, index, ≤ 64 hashes, checkpoint)."""
    text = decode_note(data)
    head, sep, checkpoint = text.partition("\n\n")
    if not sep or not checkpoint:
        raise VerificationError("tlog-proof has no blank line before its checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise VerificationError(f"tlog-proof must start with {HEADER!r}")
    pos = 1
    extra: bytes | None = None
    if pos < len(lines) and lines[pos].startswith("extra "):
        extra = b64decode(lines[pos][len("extra ") :], what="tlog-proof extra")
        pos += 1
    m = _INDEX.match(lines[pos]) if pos < len(lines) else None
    if m is None:
        raise VerificationError("tlog-proof needs an 'index <decimal>' line without leading zeros")
    index = int(m.group(1))
    hashes = lines[pos + 1 :]
    if len(hashes) > MAX_PROOF_HASHES:
        raise VerificationError(f"tlog-proof holds {len(hashes)} hashes; at most {MAX_PROOF_HASHES} are allowed")
    path: list[bytes] = []
    for k, line in enumerate(hashes):
        h = binascii.a2b_base64(line) if _HASH_B64.match(line) else b64decode(line, what=f"tlog-proof hash {k}")
        if len(h) != HASH_SIZE:
            raise VerificationError(f"tlog-proof hash {k} is {len(h)} bytes, not {HASH_SIZE}")
        path.append(h)
    return TlogProof(index, tuple(path), checkpoint, extra)


@dataclass(frozen=True)
class VerifiedProof:
    index: int
    leaf_hash: bytes
    checkpoint: SignedCheckpoint


def verify_proof_against(
    proof: TlogProof,
    entry: bytes,
    signed: SignedCheckpoint,
    *,
    batch: InclusionBatch | None = None,
) -> VerifiedProof:
    """Steps 1 and 4 for a proof whose checkpoint is ``signed`` (already verified), byte for byte."""
    if proof.checkpoint != signed.note:
        raise VerificationError("tlog-proof carries a different checkpoint")
    leaf = leaf_hash(entry)
    cp = signed.checkpoint
    if batch is not None:
        if (batch.size, batch.root) != (cp.size, cp.root):
            raise VerificationError("internal: batch is for another tree head")
        batch.verify(proof.index, leaf, proof.path)
    else:
        verify_inclusion(proof.index, cp.size, leaf, proof.path, cp.root)
    return VerifiedProof(proof.index, leaf, signed)


def verify_proof(
    data: bytes | str,
    entry: bytes,
    log_keys: Sequence[Verifier],
    *,
    origin: str,
    witnesses: Sequence[Verifier] = (),
    quorum: int = 0,
) -> VerifiedProof:
    """All four steps: parse, check the checkpoint's signatures, then the inclusion path."""
    proof = parse_proof(data)
    leaf = leaf_hash(entry)
    signed = open_checkpoint(proof.checkpoint, log_keys, origin=origin, witnesses=witnesses, quorum=quorum)
    verify_inclusion(proof.index, signed.checkpoint.size, leaf, proof.path, signed.checkpoint.root)
    return VerifiedProof(proof.index, leaf, signed)
