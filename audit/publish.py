"""``gpumeter audit publish --out DIR``: the log as static C2SP tlog-tiles, for monitors.

Layout under DIR, servable as is by any static web server or object store::

    checkpoint                        the latest signed checkpoint, with the witnesses'
                                      cosignatures the log keeps (the only file that changes)
    tile/<L>/<N>                      full tiles: 256 hashes, never rewritten
    tile/<L>/<N>.p/<W>                partial tiles, for every checkpoint the log signed
    tile/entries/<N>[.p/<W>]          entry bundles: the entries' exact bytes

``N`` in 3-digit groups, all but the last prefixed by ``x`` (:mod:`audit.tiles`).

Publishing is incremental and never leaves DIR inconsistent with its ``checkpoint``:

* files wholly inside the published checkpoint's tree are only checked to be there at
  their size; every other file is written unless present, and a present one must hold
  exactly the bytes the log gives (tiles are immutable: a difference means DIR belongs
  to another log or was damaged, and publishing stops, naming the file);
* each file is written to ``DIR/.staging``, flushed to disk and renamed into place, so a
  file is either absent or whole; the tiles first, ``checkpoint`` last, the same way;
* a ``checkpoint`` already in DIR must be one this log can extend (same origin, its root
  is the log's root at its size, not larger): publishing never goes back or forks.

A kill -9 mid-publish leaves whole new tiles beside the old ``checkpoint``; publishing
again finds them present and equal, and moves ``checkpoint`` on.

:func:`check_published` is what a monitor runs on a published copy: it opens the
checkpoint with a :class:`audit.pinning.Trust`, recomputes every tile from the entry
bundles (:class:`audit.check.TileCheck`) and names the first file that does not hold.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from audit import tiles
from audit.check import TileCheck, _rows
from audit.checkpoint import SignedCheckpoint, parse_checkpoint
from audit.cosign import cosigned_note
from audit.errors import AuditError, VerificationError
from audit.log import AuditLog
from audit.merkle import HASH_SIZE, leaf_hash
from audit.note import decode_note, parse_note
from audit.pinning import Trust

STAGING = ".staging"


@dataclass(frozen=True)
class PublishResult:
    out: Path
    size: int  # the published checkpoint's tree size
    previous: int | None  # the size DIR's checkpoint had before, if any
    written: int  # files written this time
    bytes_written: int
    checkpoints: int  # checkpoint sizes whose partial tiles DIR serves


def _published_size(out: Path, log: AuditLog, origin: str) -> int | None:
    """The size of the checkpoint DIR serves, after checking this log can extend it."""
    path = out / "checkpoint"
    if not path.exists():
        return None
    try:
        cp = parse_checkpoint(parse_note(decode_note(path.read_bytes())).text)
    except (OSError, AuditError) as exc:
        raise AuditError(f"not a checkpoint: {exc}", member=str(path)) from exc
    if cp.origin != origin:
        raise AuditError(f"DIR serves another log ({cp.origin!r}); publish into its own folder", member=str(path))
    if cp.size > log.size() or log.root(cp.size) != cp.root:
        raise VerificationError(
            f"DIR serves a tree of {cp.size} entries that this log does not extend; refusing to publish over it",
            member=str(path),
        )
    return cp.size


class _Writer:
    """Writes files under ``out`` through ``out/.staging``: flushed, then renamed into place."""

    def __init__(self, out: Path, covered: int) -> None:
        self.out, self.covered = out, covered
        self.staging = out / STAGING
        shutil.rmtree(self.staging, ignore_errors=True)  # what a killed run left half-written
        self.staging.mkdir(parents=True)
        self.written = self.bytes = 0

    def put(self, tile: tiles.Tile, data: bytes, end: int, *, present_only: bool = False) -> None:
        """Publish ``data`` as ``tile`` (covering entries before ``end``), unless it is there."""
        path = self.out / tile.path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = -1
        if present_only or (size >= 0 and end <= self.covered):
            if size < 0:
                raise VerificationError("missing, though the published checkpoint covers it", member=str(path))
            if not present_only and size != len(data):
                raise VerificationError(f"holds {size} bytes, the log gives {len(data)}", member=str(path))
            return
        if size >= 0:
            if path.read_bytes() != data:
                raise VerificationError(
                    "holds other bytes than the log gives: DIR is another log's or damaged", member=str(path)
                )
            return
        self.write(path, data)

    def write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.staging / f"{self.written}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self.written += 1
        self.bytes += len(data)

    def close(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


_LACKS = "the store lacks what this file needs; run gpumeter audit check"
_Out = tuple[tiles.Tile, bytes]


def _tiles(
    con: duckdb.DuckDBPyConnection, widths: dict[tuple[int, int], set[int]]
) -> Iterator[tuple[tiles.Tile, bytes]]:
    """The tiles ``widths`` names ((level, index) -> widths), cut from the stored ones."""
    seen = set()
    for level, index, width, data in _rows(con, "audit_publish_tiles"):
        key = (int(level), int(index))
        wanted = widths.get(key)
        if not wanted:
            continue
        seen.add(key)
        data = bytes(data)
        for w in sorted(wanted):
            tile = tiles.Tile(key[0], key[1], w)
            if w > int(width) or len(data) != int(width) * HASH_SIZE:
                raise VerificationError(
                    "the stored tile lacks hashes this tile needs; run gpumeter audit check", member=tile.path
                )
            yield tile, data[: w * HASH_SIZE]
    for key in sorted(widths.keys() - seen):
        raise VerificationError(_LACKS, member=tiles.Tile(*key).path)


def _bundles(
    con: duckdb.DuckDBPyConnection, widths: dict[int, set[int]], start: int
) -> Iterator[tuple[tiles.Tile, bytes]]:
    """The entry bundles ``widths`` names (index -> widths) from bundle ``start`` on, built
    from the stored entries read in order (one bundle's worth at a time)."""
    last = max(widths, default=-1)
    index, group, expected = start, [], start * tiles.WIDTH
    for idx, data in _rows(con, "audit_publish_entries", {"first": expected}):
        if int(idx) != expected:
            raise VerificationError(f"entry {expected} is missing; run gpumeter audit check", entry=expected)
        expected += 1
        group.append(bytes(data))
        if len(group) == tiles.WIDTH:
            yield from _cut(index, group, widths.get(index, set()))
            index, group = index + 1, []
            if index > last:
                return
    yield from _cut(index, group, widths.get(index, set()))


def _cut(index: int, group: list[bytes], wanted: set[int]) -> Iterator[tuple[tiles.Tile, bytes]]:
    for w in sorted(wanted):
        tile = tiles.Tile(tiles.ENTRIES, index, w)
        if w > len(group):
            raise VerificationError(
                "the store lacks entries this bundle needs; run gpumeter audit check", member=tile.path
            )
        yield tile, tiles.bundle(group[:w])


def publish(con: duckdb.DuckDBPyConnection, out: Path, origin: str) -> PublishResult:
    """Publish the log's latest signed checkpoint and every tile it needs into ``out``."""
    log = AuditLog(con)
    cps = log.checkpoints()
    if not cps:
        raise AuditError("the log has no signed checkpoint yet; run gpumeter audit checkpoint")
    latest = cps[-1]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = _published_size(out, log, origin)
    sizes = sorted({cp.size for cp in cps if 0 < cp.size <= latest.size} | {latest.size} - {0})
    tile_widths: dict[tuple[int, int], set[int]] = {}
    bundle_widths: dict[int, set[int]] = {}
    for s in sizes:
        for t in tiles.layout(s):
            tile_widths.setdefault((t.level, t.index), set()).add(t.width)
        for b in tiles.bundles(s):
            bundle_widths.setdefault(b.index, set()).add(b.width)
    covered = previous or 0
    writer = _Writer(out, covered)
    try:
        for tile, data in _tiles(con, tile_widths):
            writer.put(tile, data, _end(tile))
        start = covered // tiles.WIDTH  # bundles wholly inside the published tree are only checked to be there
        for b in (tiles.Tile(tiles.ENTRIES, n) for n in range(start)):
            writer.put(b, b"", _end(b), present_only=True)
        for tile, data in _bundles(con, {k: v for k, v in bundle_widths.items() if k >= start}, start):
            writer.put(tile, data, _end(tile))
        writer.write(out / "checkpoint", cosigned_note(con, latest).encode("utf-8"))
    finally:
        writer.close()
    return PublishResult(out, latest.size, previous, writer.written, writer.bytes, len(sizes))


def _end(tile: tiles.Tile) -> int:
    """The first entry index after the ones ``tile`` covers."""
    level = 0 if tile.level == tiles.ENTRIES else tile.level
    return (tile.index * tiles.WIDTH + tile.width) << (tiles.HEIGHT * level)


# --------------------------------------------------------------------------------- monitor


@dataclass(frozen=True)
class PublishedCheck:
    passed: bool
    size: int
    findings: tuple[str, ...]
    checkpoint: SignedCheckpoint | None


def _read(out: Path, tile: tiles.Tile) -> bytes | None:
    try:
        return (out / tile.path).read_bytes()
    except FileNotFoundError:
        return None


def check_published(out: Path, trust: Trust) -> PublishedCheck:
    """What a monitor does with a published copy: open ``checkpoint`` with ``trust``, read
    every entry bundle and tile its tree needs, recompute every hash, compare with the
    tiles and the root. Findings name the file."""
    out = Path(out)
    try:
        signed = trust.verify_checkpoint(decode_note((out / "checkpoint").read_bytes()))
    except OSError as exc:
        return PublishedCheck(False, 0, (f"checkpoint: cannot read it: {exc.strerror}",), None)
    except AuditError as exc:
        return PublishedCheck(False, 0, (f"checkpoint: {exc.message}",), None)
    size = signed.checkpoint.size
    findings: list[str] = []
    bad: list[int] = []
    check = TileCheck(size, lambda t: _read(out, t), findings, bad, [])
    k = 0
    for bundle in tiles.bundles(size):
        try:
            group = tiles.unbundle(bundle, _read(out, bundle) or b"")
        except VerificationError as exc:
            findings.append(
                f"{bundle.path}: {exc.message}" if _read(out, bundle) is not None else f"{bundle.path}: missing"
            )
            break
        for data in group:
            check.push(k, leaf_hash(data))
            k += 1
    if k == size and check.root(size) != signed.checkpoint.root:
        findings.append(f"checkpoint: the published tiles give another root for size {size}")
    return PublishedCheck(not findings, size, tuple(findings), signed)


def published_proof(out: Path, index: int, size: int) -> list[bytes]:
    """An inclusion proof read from a published copy's tiles (what a monitor computes)."""
    from audit.merkle import inclusion_plan, plan_ids, resolve

    plan = inclusion_plan(index, size)
    source = tiles.TileHashes(size, _published_tiles(out, size, plan_ids(plan)))
    return resolve(plan, source)


def _published_tiles(out: Path, size: int, ids: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    found: dict[tuple[int, int], bytes] = {}
    for level, index in tiles.TileHashes.needed(ids):
        tile = tiles.Tile(level, index, tiles.tile_width(level, index, size))
        data = _read(out, tile)
        if data is not None:
            found[(level, index)] = data
    return found
