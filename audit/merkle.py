"""RFC 6962 / RFC 9162 Merkle trees: hashing, proofs from stored subtrees, verification.

Hashing: a leaf is ``SHA-256(0x00 ‖ entry)``, an interior node ``SHA-256(0x01 ‖ left ‖
right)``, the empty tree ``SHA-256("")``. A tree of n > 1 leaves splits at the largest
power of two strictly below n, so it is left-heavy and never duplicates a lone node.

Every *perfect* subtree — 2^level leaves starting at ``index·2^level`` — is named
``(level, index)`` and, once complete, never changes. The root of any size, an inclusion
path and a consistency proof are *plans*: lists of node ids, each proof element the right
fold of one or more perfect subtrees (only the one element on the tree's right edge needs
more than one), resolved by one batched read of O(log n) hashes from any
:class:`HashSource` (:class:`MerkleTree` in memory; :class:`audit.tiles.TileHashes` over
the log's tiles).

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 (as transparency-dev does): proof
lengths are checked before hashing, leaf and proof hashes must be 32 bytes, old size 0 is
rejected unless the caller asks for the tlog-witness rule, and equal sizes need an empty
proof and equal roots. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from audit.errors import VerificationError

HASH_SIZE = 32
MAX_PROOF_HASHES = 64  # 64-bit tree sizes give paths of at most 64 hashes
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]  # (level, index): the perfect subtree over [index·2^level, (index+1)·2^level)
Plan = tuple[tuple[NodeId, ...], ...]  # each element: perfect subtrees, left to right, to fold

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash of one entry's bytes."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def subtree_ids(lo: int, hi: int) -> tuple[NodeId, ...]:
    """The perfect subtrees that make up the RFC 6962 subtree over leaves [lo, hi).

    ``lo`` must be a multiple of the smallest power of two ≥ ``hi - lo`` (true of every
    node of an RFC 6962 tree); the result is left to right, largest first.
    """
    if hi <= lo:
        raise ValueError("empty range")
    out: list[NodeId] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        while lo & ((1 << level) - 1):
            level -= 1
        out.append((level, lo >> level))
        lo += 1 << level
    return tuple(out)


def fold(hashes: Sequence[bytes]) -> bytes:
    """Hash of an RFC 6962 subtree from its perfect parts, left to right (a right fold)."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def root_plan(size: int) -> Plan:
    """The perfect subtrees whose fold is the root of the first ``size`` leaves."""
    return (subtree_ids(0, size),) if size else ()


def inclusion_plan(index: int, size: int) -> Plan:
    """RFC 6962 audit path of leaf ``index`` in a tree of ``size`` leaves, leaf's sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of {size}")
    items: list[tuple[NodeId, ...]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            items.append(subtree_ids(lo + k, hi))
            hi = lo + k
        else:
            items.append(subtree_ids(lo, lo + k))
            lo += k
    items.reverse()
    return tuple(items)


def consistency_plan(old: int, new: int) -> Plan:
    """RFC 6962 consistency proof from ``old`` to ``new`` leaves (``0 < old ≤ new``)."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    items: list[tuple[NodeId, ...]] = []
    if old == new:
        return ()
    lo, hi, whole = 0, new, True
    while True:
        if old == hi:
            if not whole:
                items.append(subtree_ids(lo, hi))
            break
        k = _split(hi - lo)
        if old <= lo + k:
            items.append(subtree_ids(lo + k, hi))
            hi = lo + k
        else:
            items.append(subtree_ids(lo, lo + k))
            lo += k
            whole = False
    items.reverse()
    return tuple(items)


class HashSource(Protocol):
    """Anything that can return stored perfect-subtree hashes by id."""

    def hashes(self, ids: Sequence[NodeId]) -> Mapping[NodeId, bytes]: ...


def plan_ids(plan: Plan) -> list[NodeId]:
    """Every distinct node id a plan needs, in first-use order."""
    return list(dict.fromkeys(node for item in plan for node in item))


def resolve(plan: Plan, source: HashSource) -> list[bytes]:
    """Proof hashes for a plan, read from ``source`` in one batch."""
    ids = plan_ids(plan)
    if not ids:
        return []
    found = source.hashes(ids)
    missing = [node for node in ids if node not in found]
    if missing:
        raise VerificationError(f"stored tree lacks node {missing[0]} (level, index)")
    return [fold([found[node] for node in item]) for item in plan]


def decompose_inclusion(index: int, size: int) -> tuple[int, int]:
    """(inner, border): the path of leaf ``index`` has exactly inner + border hashes."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def consistency_length(old: int, new: int) -> int:
    """How many hashes an RFC 6962 consistency proof from ``old`` to ``new`` holds."""
    if old == new:
        return 0
    inner, border = decompose_inclusion(old - 1, new)
    shift = (old & -old).bit_length() - 1
    return inner - shift + border + (0 if _is_pow2(old) else 1)


# ----------------------------------------------------------------------------- frontier


@dataclass(frozen=True)
class NewNode:
    level: int
    index: int
    hash: bytes


class Frontier:
    """The perfect roots along the right edge of a tree: all appending needs.

    ``hashes[j]`` is the root of the j-th perfect subtree from the left; their levels are
    the set bits of ``size`` from the highest down.
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ValueError("frontier needs one hash per set bit of the size")
        self.size = size
        self.hashes = list(hashes)

    @staticmethod
    def ids(size: int) -> list[NodeId]:
        """Node ids of the frontier of a tree of ``size`` leaves, left to right."""
        return list(subtree_ids(0, size)) if size else []

    def append(self, leaf: bytes) -> list[NewNode]:
        """Add a leaf hash; returns the perfect subtrees it completed (level ≥ 1)."""
        made: list[NewNode] = []
        acc = leaf
        level, index = 0, self.size
        hashes = self.hashes
        while index & 1:
            acc = node_hash(hashes.pop(), acc)
            level += 1
            index >>= 1
            made.append(NewNode(level, index, acc))
        hashes.append(acc)
        self.size += 1
        return made

    def root(self) -> bytes:
        return fold(self.hashes) if self.hashes else EMPTY_ROOT

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.hashes))


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """RFC 6962 root of a sequence of leaf hashes."""
    frontier = Frontier()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


class MerkleTree:
    """An in-memory tree keeping every perfect subtree hash (about 2n hashes)."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        """Add an entry's bytes; returns its 0-based index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, leaf: bytes) -> int:
        """Add a leaf hash in O(log n); returns its index."""
        levels = self._levels
        levels[0].append(leaf)
        index = len(levels[0]) - 1
        level, i = 0, index
        while i & 1:
            if len(levels) == level + 1:
                levels.append([])
            row = levels[level]
            levels[level + 1].append(node_hash(row[i - 1], row[i]))
            level += 1
            i >>= 1
        return index

    def hashes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        out: dict[NodeId, bytes] = {}
        for level, index in ids:
            if level < len(self._levels) and index < len(self._levels[level]):
                out[(level, index)] = self._levels[level][index]
        return out

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        self._check_size(size)
        return resolve(root_plan(size), self)[0] if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        self._check_size(size)
        return resolve(inclusion_plan(index, size), self)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = self.size if new is None else new
        self._check_size(new)
        return resolve(consistency_plan(old, new), self)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree has {self.size} leaves, not {size}")


# ------------------------------------------------------------------------- verification


def _check_hashes(proof: Sequence[bytes], what: str) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise VerificationError(f"{what} has {len(proof)} hashes; at most {MAX_PROOF_HASHES} are possible")
    for k, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise VerificationError(f"{what} hash {k} is {len(h)} bytes, not {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion path leads to (RFC 9162 §2.1.3.2); raises on a malformed path."""
    if size <= 0 or not 0 <= index < size:
        raise VerificationError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE:
        raise VerificationError(f"leaf hash is {len(leaf)} bytes, not {HASH_SIZE}")
    _check_hashes(proof, "inclusion proof")
    inner, border = decompose_inclusion(index, size)
    if len(proof) != inner + border:
        raise VerificationError(
            f"inclusion proof for leaf {index} of {size} needs {inner + border} hashes, has {len(proof)}"
        )
    a, b, acc = index, size - 1, leaf
    for sibling in proof:
        if b == 0:
            raise VerificationError("inclusion proof is longer than the tree is tall")
        if a & 1 or a == b:
            acc = node_hash(sibling, acc)
            if not a & 1:
                while not a & 1 and a != 0:
                    a >>= 1
                    b >>= 1
        else:
            acc = node_hash(acc, sibling)
        a >>= 1
        b >>= 1
    if b != 0:
        raise VerificationError("inclusion proof is shorter than the tree is tall")
    return acc


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`VerificationError` unless ``proof`` binds ``leaf`` at ``index`` to ``root``."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise VerificationError(f"inclusion proof for leaf {index} does not lead to the root of size {size}")


def verify_consistency(
    old: int,
    new: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
    *,
    allow_empty_old: bool = False,
) -> None:
    """Raise unless ``proof`` shows the ``old``-leaf tree is a prefix of the ``new`` one.

    RFC 9162 §2.1.4.2 with transparency-dev's pre-checks. ``allow_empty_old`` applies the
    C2SP tlog-witness rule (the empty tree, with an empty proof, is consistent with all).
    """
    if old < 0 or new < old:
        raise VerificationError(f"old size {old} is larger than new size {new}")
    if old == 0:
        if allow_empty_old and not proof and old_root == EMPTY_ROOT:
            return
        raise VerificationError("a consistency proof from the empty tree is meaningless")
    if old == new:
        if proof:
            raise VerificationError("sizes are equal but the consistency proof is not empty")
        if old_root != new_root:
            raise VerificationError(f"two different roots for the same size {old}")
        return
    if not proof:
        raise VerificationError(f"consistency proof from {old} to {new} is empty")
    _check_hashes(proof, "consistency proof")
    for what, r in (("old", old_root), ("new", new_root)):
        if len(r) != HASH_SIZE:
            raise VerificationError(f"{what} root is {len(r)} bytes, not {HASH_SIZE}")
    want = consistency_length(old, new)
    if len(proof) != want:
        raise VerificationError(f"consistency proof from {old} to {new} needs {want} hashes, has {len(proof)}")
    chain = [old_root, *proof] if _is_pow2(old) else list(proof)
    a, b = old - 1, new - 1
    while a & 1:
        a >>= 1
        b >>= 1
    x = y = chain[0]
    for h in chain[1:]:
        if b == 0:
            raise VerificationError("consistency proof is longer than the tree is tall")
        if a & 1 or a == b:
            x = node_hash(h, x)
            y = node_hash(h, y)
            if not a & 1:
                while not a & 1 and a != 0:
                    a >>= 1
                    b >>= 1
        else:
            y = node_hash(y, h)
        a >>= 1
        b >>= 1
    if b != 0:
        raise VerificationError("consistency proof is shorter than the tree is tall")
    if x != old_root:
        raise VerificationError(f"consistency proof does not rebuild the old root of size {old}")
    if y != new_root:
        raise VerificationError(f"consistency proof does not rebuild the new root of size {new}")
