"""C2SP ``c2sp.org/tlog-proof@v1`` files: one entry's inclusion proof plus its checkpoint.

::

    c2sp.org/tlog-proof@v1
    extra <base64>            (optional, NOT authenticated)
    index <0-based decimal>
    <base64 hash>             (0..64 lines: the inclusion path, leaf's sibling first)

    <signed checkpoint, verbatim>

Verification order (C2SP tlog-proof): (1) hash the entry as a leaf; (2)+(3) the trust
(:class:`audit.pinning.Trust`, a pinned tlog-policy) accepts the checkpoint: its origin is
the expected one, a log key of the policy signed it, and the witnesses' cosignatures meet
the policy's quorum (the one quorum rule, :meth:`audit.trust.TrustPolicy.satisfied`);
(4) the path binds the leaf to the checkpoint's root. Pure: no I/O.

A file holding one proof is checked with :func:`verify_proof`. A bundle holds the proofs
of many entries against one checkpoint: :class:`ProofTree` computes that tree once, from
the entries' leaf hashes and, for subtrees without any of them, the hashes their
neighbours' proofs name; if it reaches the checkpoint's root, it writes the one text
each entry's proof can be (:func:`format_proof` of its true path), and a proof file equal
to it is valid — header, index, every hash and the checkpoint, checked by one
comparison instead of a parse and ~log n hashes per entry.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from audit.checkpoint import SignedCheckpoint
from audit.errors import VerificationError
from audit.merkle import (
    HASH_SIZE,
    MAX_PROOF_HASHES,
    decompose_inclusion,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    verify_inclusion,
)
from audit.note import b64decode, b64encode, decode_note

if TYPE_CHECKING:
    from audit.pinning import Trust

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


def root_of(proof: TlogProof, entry: bytes, size: int) -> bytes:
    """The root ``proof`` leads to from ``entry`` in a tree of ``size`` (RFC 9162 §2.1.3.2)."""
    return root_from_inclusion(proof.index, size, leaf_hash(entry), proof.path)


def verify_proof(data: bytes | str, entry: bytes, trust: Trust) -> VerifiedProof:
    """All four steps: parse, ``trust`` accepts the checkpoint (origin, log key, witness
    quorum), then the inclusion path binds ``entry`` to its root."""
    proof = parse_proof(data)
    leaf = leaf_hash(entry)
    signed = trust.verify_checkpoint(proof.checkpoint)
    verify_inclusion(proof.index, signed.checkpoint.size, leaf, proof.path, signed.checkpoint.root)
    return VerifiedProof(proof.index, leaf, signed)


# ------------------------------------------------------------------------- many at once

_HEAD = b"c2sp.org/tlog-proof@v1\nindex %d\n"
_CHUNK = 12  # the proofs under a perfect subtree are written 2**12 at a time


class _Perfect:
    """A perfect subtree whose leaves (``first .. first + 2**height`` in ``indices``) are all at hand."""

    __slots__ = ("first", "hash", "levels")

    def __init__(self, first: int, levels: list[list[bytes]]) -> None:
        self.first, self.levels = first, levels
        self.hash: bytes = levels[-1][0]


class _Given:
    """A subtree holding no entry at hand: its hash is the one a neighbour's proof names."""

    __slots__ = ("hash",)

    def __init__(self) -> None:
        self.hash = b""


class _Pair:
    __slots__ = ("_hash", "left", "right")

    def __init__(self, left: _Node, right: _Node) -> None:
        self.left, self.right = left, right
        self._hash = b""

    @property
    def hash(self) -> bytes:
        if not self._hash:
            self._hash = node_hash(self.left.hash, self.right.hash)
        return self._hash


_Node = _Perfect | _Pair | _Given


@dataclass(frozen=True)
class Need:
    """Line ``position`` of the path in entry ``index``'s proof names subtree ``node``'s hash."""

    index: int
    position: int
    node: _Given


class ProofTree:
    """The RFC 6962 tree of one checkpoint as far as a bundle shows it, computed once.

    ``indices`` (ascending, inside ``[0, size)``) and ``leaves`` are the entries at hand.
    Each subtree whose leaves are all at hand is hashed level by level; each one holding
    none is *given*: :attr:`needs` says which entry's proof names it, at which position
    of its path, and :meth:`give` sets it. Then :attr:`root` is the tree's root, and
    :meth:`texts` writes, for every entry at hand, the exact proof file (header, index,
    true path, ``note``) that leads from it to that root.
    """

    def __init__(self, size: int, note: str, indices: Sequence[int], leaves: Sequence[bytes]) -> None:
        if not indices or len(indices) != len(leaves) or indices[0] < 0 or indices[-1] >= size:
            raise ValueError("entries must be ascending indices inside the tree, one leaf each")
        self.size, self.indices, self.leaves = size, indices, leaves
        self._tail = b"\n" + note.encode("utf-8")
        self.needs: list[Need] = []
        self._top = self._build(0, size, 0, len(indices), 0)

    def _build(self, lo: int, hi: int, a: int, b: int, depth: int) -> _Node:
        """The subtree over leaves [lo, hi), whose entries at hand are ``indices[a:b]`` (some)."""
        n = hi - lo
        if b - a == n and not n & (n - 1):
            sha = hashlib.sha256
            level = list(self.leaves[a:b])
            levels = [level]
            while len(level) > 1:
                level = [sha(b"\x01" + level[j] + level[j + 1]).digest() for j in range(0, len(level), 2)]
                levels.append(level)
            return _Perfect(a, levels)
        k = 1 << ((n - 1).bit_length() - 1)
        m = bisect_left(self.indices, lo + k, a, b)
        left = self._build(lo, lo + k, a, m, depth + 1) if m > a else self._given(self.indices[a], depth + 1)
        right = self._build(lo + k, hi, m, b, depth + 1) if b > m else self._given(self.indices[a], depth + 1)
        return _Pair(left, right)

    def _given(self, index: int, depth: int) -> _Given:
        """A subtree without entries at hand, at ``depth``: a sibling on entry ``index``'s path."""
        node = _Given()
        inner, border = decompose_inclusion(index, self.size)
        self.needs.append(Need(index, inner + border - depth, node))
        return node

    @staticmethod
    def give(need: Need, value: bytes) -> None:
        if len(value) != HASH_SIZE:
            raise VerificationError(f"a subtree hash must be {HASH_SIZE} bytes")
        need.node.hash = value

    @property
    def root(self) -> bytes:
        return self._top.hash

    def texts(self) -> Iterator[tuple[int, list[bytes]]]:
        """(position in ``indices`` of the first, their proof files) for every entry, in order."""
        yield from self._emit(self._top, b"")

    def _emit(self, node: _Node, suffix: bytes) -> Iterator[tuple[int, list[bytes]]]:
        b2a = binascii.b2a_base64
        if isinstance(node, _Pair):
            yield from self._emit(node.left, b2a(node.right.hash) + suffix)
            yield from self._emit(node.right, b2a(node.left.hash) + suffix)
        elif isinstance(node, _Perfect):
            height = len(node.levels) - 1
            top = min(height, _CHUNK)
            for q, upper in enumerate(self._down(node.levels, height, 0, [suffix], top)):
                yield node.first + (q << top), self._files(node, top, q, upper)

    @staticmethod
    def _down(levels: list[list[bytes]], level: int, first: int, suffixes: list[bytes], stop: int) -> list[bytes]:
        """Path text above each node of level ``stop`` under nodes ``first ..`` of ``level``."""
        b2a = binascii.b2a_base64
        for lv in range(level - 1, stop - 1, -1):
            row = levels[lv]
            first <<= 1
            base = first
            suffixes = [b2a(row[j ^ 1]) + suffixes[(j - base) >> 1] for j in range(base, base + 2 * len(suffixes))]
        return suffixes

    def _files(self, node: _Perfect, level: int, q: int, suffix: bytes) -> list[bytes]:
        """The files of the leaves under node ``q`` of ``level`` of a perfect subtree."""
        head, tail, indices = _HEAD, self._tail, self.indices
        first = node.first + (q << level)
        if level == 0:
            return [head % indices[first] + suffix + tail]
        above = self._down(node.levels, level, q, [suffix], 1)
        b2a, row, base = binascii.b2a_base64, node.levels[0], q << level
        return [head % indices[first + t] + b2a(row[(base + t) ^ 1]) + above[t >> 1] + tail for t in range(1 << level)]
