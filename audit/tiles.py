"""C2SP ``tlog-tiles``: the log's hashes as tiles of 256, and its entries as bundles (pure).

A *tile* at level L, index N holds up to 256 consecutive hashes of the tree at height 8·L:
at level 0 the leaf hashes, at level L > 0 the roots of *full* tiles of level L − 1, so
hash ``i`` of tile (L, N) is the root of the perfect subtree over leaves
``[(N·256 + i)·256^L, (N·256 + i + 1)·256^L)``. A tile of 256 hashes is *full* and never
changes; the last tile of a level is *partial* (1–255 hashes, ``floor(size / 256^L) mod
256`` of them) and only ever grows, so a partial tile of width W is a prefix of every
later version of it. Every perfect subtree the RFC 6962 algorithms need — inclusion and
consistency proofs, the root of any size — is a run of 2^r hashes (r < 8) of one tile,
hashed r levels up (:class:`TileHashes`).

Paths (the URLs a static server serves): ``tile/<L>/<N>[.p/<W>]`` and
``tile/entries/<N>[.p/<W>]``, N written as 3-digit groups with all but the last prefixed
by ``x`` (``1234067`` → ``x001/x234/067``). An entry bundle is the entries of one
level-0 tile, each as a big-endian uint16 length and its bytes.

Appending (:func:`grow`) touches only the right edge: the partial tile of each level
and the full tiles the batch completes, whose roots go one level up. Hashing is the
RFC 6962 minimum: each leaf once and each interior node once. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from audit.errors import VerificationError
from audit.merkle import EMPTY_ROOT, HASH_SIZE, NodeId, fold, subtree_ids

HEIGHT = 8
WIDTH = 1 << HEIGHT  # hashes in a full tile
FULL = WIDTH * HASH_SIZE  # bytes of a full tile
MAX_ENTRY = 0xFFFF  # an entry bundle prefixes each entry with a uint16 length
MAX_LEVEL = 63
ENTRIES = -1  # the "level" of entry bundles (``tile/entries/...``)


def index_path(n: int) -> str:
    """``N`` as zero-padded 3-digit path elements, all but the last prefixed by ``x``."""
    if n < 0:
        raise ValueError("tile index must be non-negative")
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[k : k + 3] for k in range(0, len(digits), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


@dataclass(frozen=True)
class Tile:
    """A tile's coordinates: ``level`` (:data:`ENTRIES` for an entry bundle), ``index``, ``width``."""

    level: int
    index: int
    width: int = WIDTH

    @property
    def full(self) -> bool:
        return self.width == WIDTH

    @property
    def path(self) -> str:
        head = "tile/entries" if self.level == ENTRIES else f"tile/{self.level}"
        tail = "" if self.full else f".p/{self.width}"
        return f"{head}/{index_path(self.index)}{tail}"

    def __str__(self) -> str:
        return self.path


_PATH = re.compile(r"^tile/(entries|0|[1-9][0-9]?)/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?$")


def parse_path(path: str) -> Tile:
    """The tile a ``tile/...`` path names; raises ValueError for anything else."""
    m = _PATH.match(path)
    if m is None:
        raise ValueError(f"not a tile path: {path!r}")
    level = ENTRIES if m[1] == "entries" else int(m[1])
    width = int(m[3]) if m[3] else WIDTH
    index = int(m[2].replace("x", "").replace("/", ""))
    if level > MAX_LEVEL or width > WIDTH - (m[3] is not None) or index_path(index) != m[2]:
        raise ValueError(f"not a tile path: {path!r}")
    return Tile(level, index, width)


def edge(size: int) -> list[Tile]:
    """The partial tiles of a tree of ``size`` leaves, level 0 first (entry bundles aside)."""
    out = []
    level, count = 0, size
    while count:
        if count % WIDTH:
            out.append(Tile(level, count // WIDTH, count % WIDTH))
        level, count = level + 1, count // WIDTH
    return out


def layout(size: int) -> Iterator[Tile]:
    """Every tile of a tree of ``size`` leaves: per level the full tiles, then the partial one."""
    level, count = 0, size
    while count:
        for n in range(count // WIDTH):
            yield Tile(level, n)
        if count % WIDTH:
            yield Tile(level, count // WIDTH, count % WIDTH)
        level, count = level + 1, count // WIDTH


def bundles(size: int) -> Iterator[Tile]:
    """Every entry bundle of a tree of ``size`` leaves."""
    for n in range(size // WIDTH):
        yield Tile(ENTRIES, n)
    if size % WIDTH:
        yield Tile(ENTRIES, size // WIDTH, size % WIDTH)


def tile_width(level: int, index: int, size: int) -> int:
    """How many hashes tile (level, index) holds in a tree of ``size`` (0: none yet)."""
    count = size >> (HEIGHT * level)
    return max(0, min(WIDTH, count - index * WIDTH))


# ----------------------------------------------------------------------------- hashing

_sha256 = hashlib.sha256


def split(data: bytes) -> list[bytes]:
    """A tile's bytes as its 32-byte hashes."""
    return [data[k : k + HASH_SIZE] for k in range(0, len(data), HASH_SIZE)]


def climb(hashes: Sequence[bytes], levels: int) -> list[bytes]:
    """Hash ``levels`` levels up: each run of 2^levels hashes becomes the root over it."""
    cur = list(hashes)
    for _ in range(levels):
        cur = [_sha256(b"\x01" + cur[k] + cur[k + 1]).digest() for k in range(0, len(cur), 2)]
    return cur


def check_tile(tile: Tile, data: bytes | None, *, exact: bool = False) -> bytes:
    """``data`` as tile ``tile``: present, whole hashes, at least ``tile.width`` of them
    (exactly that many when ``exact``: a partial tile wider than the tree is damage)."""
    if data is None:
        raise VerificationError("tile is missing", member=tile.path)
    if len(data) % HASH_SIZE or len(data) > FULL:
        raise VerificationError(f"tile is {len(data)} bytes, not a whole number of 32-byte hashes", member=tile.path)
    have = len(data) // HASH_SIZE
    if have < tile.width:
        raise VerificationError(f"tile is truncated: {have} hashes, the tree needs {tile.width}", member=tile.path)
    if exact and have != tile.width:
        raise VerificationError(
            f"partial tile is wider than the tree: {have} hashes, the tree needs {tile.width}", member=tile.path
        )
    return data[: tile.width * HASH_SIZE]


def placement(node: NodeId) -> tuple[int, int, int, int]:
    """(tile level, tile index, first hash, 2^r hashes) of perfect subtree ``node``."""
    level, index = node
    tile_level, r = divmod(level, HEIGHT)
    first = index << r
    return tile_level, first >> HEIGHT, first % WIDTH, 1 << r


class TileHashes:
    """Perfect-subtree hashes read from tiles: a :class:`audit.merkle.HashSource`.

    ``tiles`` maps (level, index) to tile bytes (a partial tile, or a longer version of
    it); ``size`` is the tree they are read for, so that a node beyond it, or a tile
    shorter than the tree needs, is an error naming the tile rather than a wrong hash.
    """

    def __init__(self, size: int, tiles: Mapping[tuple[int, int], bytes]) -> None:
        self.size = size
        self.tiles = tiles
        self._levels: dict[tuple[int, int], list[list[bytes]]] = {}

    @staticmethod
    def needed(ids: Sequence[NodeId]) -> list[tuple[int, int]]:
        """The (level, index) of every tile ``ids`` are read from."""
        return sorted({placement(node)[:2] for node in ids})

    def _tree(self, level: int, index: int, need: int) -> list[list[bytes]]:
        """Hashes of tile (level, index) and every level above them inside the tile."""
        got = self._levels.get((level, index))
        if got is None or len(got[0]) < need:
            tile = Tile(level, index, tile_width(level, index, self.size))
            if need > tile.width:
                raise VerificationError(f"the tree of size {self.size} has no hash {need - 1} here", member=tile.path)
            row = split(check_tile(tile, self.tiles.get((level, index))))
            got = [row]
            while len(row) > 1:
                row = [_sha256(b"\x01" + row[k] + row[k + 1]).digest() for k in range(0, len(row) - 1, 2)]
                got.append(row)
            self._levels[(level, index)] = got
        return got

    def hashes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        out: dict[NodeId, bytes] = {}
        for node in ids:
            tile_level, tile_index, first, count = placement(node)
            levels = self._tree(tile_level, tile_index, first + count)
            out[node] = levels[count.bit_length() - 1][first // count]
        return out

    def root(self) -> bytes:
        if not self.size:
            return EMPTY_ROOT
        ids = subtree_ids(0, self.size)
        found = self.hashes(ids)
        return fold([found[node] for node in ids])


def root(size: int, edge_tiles: Mapping[int, bytes]) -> bytes:
    """The root of a tree of ``size`` from its partial tiles alone (level -> bytes).

    Every perfect subtree of the root's fold ends at ``size``, so it lies in the partial
    tile of its level: these few tiles are all a checkpoint needs.
    """
    return TileHashes(size, {(t.level, t.index): edge_tiles.get(t.level, b"") for t in edge(size)}).root()


# ---------------------------------------------------------------------------- appending


@dataclass(frozen=True)
class Grown:
    """A tile an append created or extended: replaces any stored tile (level, index)."""

    level: int
    index: int
    hashes: bytes

    @property
    def width(self) -> int:
        return len(self.hashes) // HASH_SIZE


def grow(size: int, edge_tiles: Mapping[int, bytes], leaves: Sequence[bytes]) -> list[Grown]:
    """The tiles to store after appending ``leaves`` (leaf hashes) to a tree of ``size``.

    ``edge_tiles`` maps each level to its stored partial tile (absent: none). Full tiles
    of each level are hashed 8 levels up — all of them at once, level by level — and
    their roots appended to the level above.
    """
    out: list[Grown] = []
    level, count, new = 0, size, list(leaves)
    while new:
        first, have = divmod(count, WIDTH)
        stored = edge_tiles.get(level)
        if have:
            prefix = split(check_tile(Tile(level, first, have), stored, exact=True))
        elif stored:
            raise VerificationError(
                f"a partial tile is stored where a tree of {size} has a full one or none",
                member=Tile(level, first).path,
            )
        else:
            prefix = []
        items = prefix + new
        for k in range(0, len(items), WIDTH):
            out.append(Grown(level, first + k // WIDTH, b"".join(items[k : k + WIDTH])))
        new = climb(items[: len(items) // WIDTH * WIDTH], HEIGHT)
        level, count = level + 1, count // WIDTH
    return out


# ------------------------------------------------------------------------- entry bundles

_U16 = struct.Struct(">H")


def bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes."""
    parts = []
    for data in entries:
        if len(data) > MAX_ENTRY:
            raise VerificationError(f"entry is {len(data)} bytes; an entry bundle holds at most {MAX_ENTRY}")
        parts.append(_U16.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def unbundle(tile: Tile, data: bytes) -> list[bytes]:
    """The entries of an entry bundle, at least ``tile.width`` of them (the first ``width``)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data) and len(out) < tile.width:
        if pos + 2 > len(data):
            raise VerificationError("entry bundle ends inside a length prefix", member=tile.path)
        (n,) = _U16.unpack_from(data, pos)
        if pos + 2 + n > len(data):
            raise VerificationError(f"entry {len(out)} of the bundle is truncated", member=tile.path)
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    if len(out) < tile.width:
        raise VerificationError(f"entry bundle holds {len(out)} entries; the tree needs {tile.width}", member=tile.path)
    return out
