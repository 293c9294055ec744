"""``gpumeter audit check``: the local log against its tiles and its signed checkpoints.

:func:`check_log` streams every entry in index order (one pass, memory of a few tiles),
recomputes each leaf hash and, from them, every tile of the tree (:class:`TileCheck`),
and compares them with the stored tiles and with *every* stored checkpoint. It names the
first entry that was edited, deleted or moved, a tile that is missing, truncated, wider
than the tree or holds other hashes, a truncated log, an old checkpoint replayed as the
latest, and a checkpoint that no key of the ring signed. When only roots disagree (entry
bytes and leaf hashes rewritten consistently) it names the range between the last
matching and the first failing checkpoint. :func:`verify_log` raises instead.

:class:`TileCheck` is the one comparison of tiles with the entries they must come from;
:mod:`audit.publish` uses it on a published directory (what a monitor runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from audit import tiles
from audit.checkpoint import open_checkpoint
from audit.errors import VerificationError
from audit.log import AuditLog, StoredCheckpoint
from audit.merkle import EMPTY_ROOT, HASH_SIZE, leaf_hash
from audit.note import Verifier
from gpumeter import store


@dataclass(frozen=True)
class LogCheck:
    """The local log against its signed checkpoints."""

    passed: bool
    size: int
    checkpoint_size: int | None
    checkpoint_id: int | None
    first_bad_entry: int | None
    findings: tuple[str, ...]
    signed_by: tuple[str, ...] = ()


def check_log(con: duckdb.DuckDBPyConnection, log_keys: Sequence[Verifier], origin: str) -> LogCheck:
    """Recompute leaves, subtrees and roots from the stored entry bytes; compare all."""
    findings: list[str] = []
    bad: list[int] = []  # entries known to be altered or missing
    coarse: list[int] = []  # start of a range holding an altered entry, narrowest (first found) first
    log = AuditLog(con)
    cps = log.checkpoints()
    latest = cps[-1] if cps else None
    signed_by: tuple[str, ...] = ()
    if latest is None:
        findings.append("the log has no signed checkpoint yet; run gpumeter audit checkpoint")
    for k, cp in enumerate(cps):
        try:
            signed = open_checkpoint(cp.note, log_keys, origin=origin)
        except VerificationError as exc:
            findings.append(f"checkpoint #{cp.id} does not verify against the key ring: {exc.message}")
            continue
        if cp is latest:
            signed_by = tuple(v.vkey for v in signed.log_keys)
        if (signed.checkpoint.size, signed.checkpoint.root) != (cp.size, cp.root):
            findings.append(f"checkpoint #{cp.id}: stored size/root differ from its signed note")
        if k and cp.size < cps[k - 1].size:
            findings.append(
                f"checkpoint #{cp.id} (size {cp.size}) is older than #{cps[k - 1].id} (size {cps[k - 1].size}): "
                "an old checkpoint was replayed"
            )
    want_roots: dict[int, list[StoredCheckpoint]] = {}
    for cp in cps:
        want_roots.setdefault(cp.size, []).append(cp)
    if 0 in want_roots:
        for cp in want_roots[0]:
            if cp.root != EMPTY_ROOT:
                findings.append(f"checkpoint #{cp.id} of size 0 does not carry the empty root")
    size = _check_tree(con, cps, want_roots, findings, bad, coarse)
    for cp in cps:
        if cp.size > size:
            findings.append(
                f"checkpoint #{cp.id} vouches for {cp.size} entries but the log has {size}: "
                f"entries {size}..{cp.size - 1} are missing (truncated)"
            )
            bad.append(size)
            break
    return LogCheck(
        passed=not findings,
        size=size,
        checkpoint_size=latest.size if latest else None,
        checkpoint_id=latest.id if latest else None,
        first_bad_entry=min(bad) if bad else coarse[0] if coarse else None,
        findings=tuple(findings),
        signed_by=signed_by,
    )


def _rows(con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, object] | None = None) -> Iterator[Any]:
    """Stream a query's rows on a cursor of its own, in batches."""
    cur = con.cursor()
    try:
        cur.execute(store.statements(name)[0], dict(params or {}))
        while rows := cur.fetchmany(8192):
            yield from rows
    finally:
        cur.close()


class TileCheck:
    """Tiles recomputed from leaf hashes fed in index order, compared with stored ones.

    ``read(tile)`` returns the stored bytes of ``tile`` (at the width a tree of ``size``
    gives it) or None. Every stored hash is compared with the recomputed one: a leaf
    that differs names its entry; a higher hash that differs names its tile and the
    entries under it (the first such only: everything above it differs too). Missing,
    truncated and too wide tiles are named once each.
    """

    def __init__(
        self,
        size: int,
        read: Callable[[tiles.Tile], bytes | None],
        findings: list[str],
        bad: list[int],
        coarse: list[int],
    ) -> None:
        self.size = size
        self._read = read
        self.findings, self.bad, self.coarse = findings, bad, coarse
        self._bufs: list[list[bytes]] = []  # per level: recomputed hashes of its current tile
        self._loaded: list[tuple[int, bytes | None]] = []  # per level: (tile index, stored bytes)
        self._reported = False

    def _stored(self, level: int, position: int) -> bytes | None:
        """The stored hash ``position`` of ``level`` (None when its tile is absent or short)."""
        while len(self._bufs) <= level:
            self._bufs.append([])
            self._loaded.append((-1, None))
        index, at = divmod(position, tiles.WIDTH)
        if self._loaded[level][0] != index:
            tile = tiles.Tile(level, index, tiles.tile_width(level, index, self.size))
            data = self._read(tile)
            try:
                tiles.check_tile(tile, data, exact=True)
            except VerificationError as exc:
                self.findings.append(f"{tile.path}: {exc.message}")
            self._loaded[level] = (index, data)
        data = self._loaded[level][1]
        if data is None or len(data) < (at + 1) * HASH_SIZE:
            return None
        return data[at * HASH_SIZE : (at + 1) * HASH_SIZE]

    def stored_leaf(self, k: int) -> bytes | None:
        """The stored leaf hash of entry ``k`` (None when its tile is missing or short)."""
        return self._stored(0, k)

    def push(self, k: int, leaf: bytes) -> None:
        """Entry ``k``'s leaf hash (recomputed, or the stored one of a missing entry)."""
        self._push(0, k, leaf)

    def _push(self, level: int, position: int, value: bytes) -> None:
        stored = self._stored(level, position)
        if stored is not None and stored != value:
            if level == 0:
                self.findings.append(f"entry {position} does not match its stored leaf hash: edited or moved")
                self.bad.append(position)
            elif not self._reported:
                self._reported = True
                index, at = divmod(position, tiles.WIDTH)
                tile = tiles.Tile(level, index, tiles.tile_width(level, index, self.size))
                span = tiles.WIDTH**level
                self.findings.append(
                    f"{tile.path}: hash {at} over entries {position * span}..{(position + 1) * span - 1} "
                    "differs from the one recomputed from the entries"
                )
                self.coarse.append(position * span)
        buf = self._bufs[level]
        buf.append(value)
        if len(buf) == tiles.WIDTH:
            self._bufs[level] = []
            self._push(level + 1, position // tiles.WIDTH, tiles.climb(buf, tiles.HEIGHT)[0])

    def root(self, size: int) -> bytes:
        """The root of the first ``size`` leaves, right after the ``size``-th was pushed."""
        return tiles.root(size, {level: b"".join(buf) for level, buf in enumerate(self._bufs) if buf})


class _StoredTiles:
    """The store's tiles for :class:`TileCheck`: level 0 streamed in order, the rest at hand."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.index = [(int(lv), int(i), int(w)) for lv, i, w in store.run(con, "audit_tile_index").fetchall()]
        self._upper = {(int(i), int(lv)): bytes(h) for i, _, h, lv in _rows(con, "audit_upper_tiles")}
        self._level0 = _rows(con, "audit_check_tiles", {"level": 0})
        self._pending: Any = None

    def read(self, tile: tiles.Tile) -> bytes | None:
        if tile.level:
            return self._upper.get((tile.index, tile.level))
        while True:
            row = self._pending or next(self._level0, None)
            self._pending = None
            if row is None:
                return None
            index = int(row[0])
            if index == tile.index:
                return bytes(row[2])
            if index > tile.index:
                self._pending = row
                return None


def _check_tree(
    con: duckdb.DuckDBPyConnection,
    cps: Sequence[StoredCheckpoint],
    want_roots: Mapping[int, Sequence[StoredCheckpoint]],
    findings: list[str],
    bad: list[int],
    coarse: list[int],
) -> int:
    """One pass over the entries in index order, recomputing and comparing every tile;
    returns the log size. A missing entry is bridged with its stored leaf hash so later
    entries are still checked."""
    from_tiles, size, _ = AuditLog(con)._sizes()
    if from_tiles != size:
        findings.append(f"the stored tiles cover {from_tiles} entries but the log holds {size}")
    stored = _StoredTiles(con)
    check = TileCheck(size, stored.read, findings, bad, coarse)
    k = 0
    for idx, data in _rows(con, "audit_check_entries"):
        if idx < k:  # the entries table has no key (migration 0016)
            findings.append(f"entry {idx} is stored twice")
            bad.append(int(idx))
            continue
        while k <= idx:
            if k < idx:
                findings.append(f"entry {k} is missing (the next stored entry is {idx})")
                bad.append(k)
                leaf = check.stored_leaf(k)
                if leaf is None:
                    findings.append(f"entry {k}'s leaf hash is missing too: later tiles cannot be checked")
                    return int(idx)
            else:
                leaf = leaf_hash(bytes(data))
            check.push(k, leaf)
            k += 1
            for cp in want_roots.get(k, ()):
                if check.root(k) != cp.root:
                    prior = max((c.size for c in cps if c.size < k), default=0)
                    findings.append(
                        f"checkpoint #{cp.id} (size {cp.size}) does not match the entries: "
                        f"an entry in {prior}..{cp.size - 1} was altered"
                    )
                    coarse.append(prior)
    expected = {(t.level, t.index) for t in tiles.layout(k)}
    for level, index, width in stored.index:
        if (level, index) not in expected:
            tile = tiles.Tile(level, index, width if 0 < width < tiles.WIDTH else tiles.WIDTH)
            findings.append(f"{tile.path}: stored, but not part of a tree of {k} entries")
    return k


def verify_log(con: duckdb.DuckDBPyConnection, log_keys: Sequence[Verifier], origin: str) -> LogCheck:
    """As :func:`check_log`, raising :class:`VerificationError` on the first problem."""
    result = check_log(con, log_keys, origin)
    if not result.passed:
        raise VerificationError(result.findings[0], entry=result.first_bad_entry)
    return result
