"""The audit log in DuckDB: append-only entries, the tree as C2SP tiles, signed checkpoints.

Tables (``sql/schema/0003_audit.sql``, ``0008_tiles.sql``): ``audit_entries`` (exact entry
bytes and index columns), ``audit_tiles`` (the tree as tlog-tiles: about n/128 rows),
``audit_documents``, ``audit_checkpoints``, ``audit_exports``. Entries, documents,
checkpoints and full tiles are only inserted; the partial tile at the right edge of each
level is replaced as it grows, until it is full (docs/adr/0008-tiles.md).

* Appending reads the right-edge tiles (one per level), hashes the new leaves and the
  full tiles they complete (:func:`audit.tiles.grow`), and stores the entries and the
  new or grown tiles: one insert per table per batch (DuckDB is fast in bulk, slow row
  by row). It refuses to go on when the tiles and the entries disagree on the size.
* A root, an inclusion path or a consistency proof is a plan of O(log n) perfect
  subtrees (:mod:`audit.merkle`), read from the few tiles that hold them (one query).
* Every write runs in one transaction — the caller's, when it already opened one (so
  billing can finalize an invoice and log it atomically), else its own.
* Before signing, the log re-derives the last checkpoint's root from the tiles and
  refuses to sign a tree head that is not an extension of it; a signing key enters the
  log as a ``key_event`` before its first checkpoint.

:mod:`audit.check` recomputes everything from the entry bytes (``gpumeter audit check``);
:mod:`audit.publish` writes the tiles out for monitors (``gpumeter audit publish``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]

from audit import entries as kinds
from audit import highwater, tiles
from audit.canonical import canonical
from audit.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from audit.errors import AuditError, EntryError, VerificationError
from audit.gcpause import gc_paused
from audit.merkle import EMPTY_ROOT, HASH_SIZE, NodeId, consistency_plan, inclusion_plan, plan_ids, resolve
from audit.note import Note, Signer, parse_note
from gpumeter import store


def _in_transaction(con: duckdb.DuckDBPyConnection) -> bool:
    """True inside an explicit transaction: there, txid_current() is stable between calls."""
    a = con.execute("SELECT txid_current()").fetchone()
    b = con.execute("SELECT txid_current()").fetchone()
    return a is not None and a == b


@contextmanager
def atomic(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Join the caller's transaction if there is one, else run in our own."""
    if _in_transaction(con):
        yield con
    else:
        with store.transaction(con):
            yield con


@dataclass(frozen=True)
class StoredCheckpoint:
    id: int
    size: int
    root: bytes
    note: str
    signed_at: datetime


def stored_checkpoint(row: Sequence[Any] | None) -> StoredCheckpoint | None:
    if row is None:
        return None
    return StoredCheckpoint(int(row[0]), int(row[1]), bytes(row[2]), str(row[3]), row[4])


class _Encoded(NamedTuple):
    data: bytes
    meta: kinds.EntryMeta
    refs: tuple[tuple[str, str], ...]


def encode_many(entries: Iterable[Mapping[str, Any]]) -> list[_Encoded]:
    """:func:`encode` of each entry (with the cyclic garbage collector paused)."""
    with gc_paused():
        return [encode(e) for e in entries]


def encode(entry: Mapping[str, Any]) -> _Encoded:
    """An entry's canonical bytes, index columns and document references."""
    data = canonical(entry)
    if len(data) > tiles.MAX_ENTRY:
        raise EntryError(
            f"{entry.get('type')} entry is {len(data)} bytes; a tlog-tiles entry bundle holds at most {tiles.MAX_ENTRY}"
        )
    try:
        info = kinds.meta(entry)
    except KeyError as exc:
        raise EntryError(f"{entry.get('type')} entry lacks field {exc.args[0]!r}") from exc
    refs = tuple(kinds.document_refs(entry)) if b'"document":' in data else ()
    return _Encoded(data, info, refs)


def _register(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    con.register(name, table)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _timestamps(moment: datetime, n: int) -> pa.Array:
    """``n`` copies of a UTC instant as an Arrow ``timestamp[us, UTC]`` column."""
    return pa.array([(moment - _EPOCH) // _MICROSECOND] * n, pa.int64()).cast(pa.timestamp("us", "UTC"))


def _has_signed(signer: Signer, note: Note | None) -> bool:
    """True when ``note`` carries a valid signature by ``signer``'s key."""
    if note is None:
        return False
    key = signer.verifier
    return any(sig.key_id == key.key_id and key.verify(note.text, sig.data) for sig in note.signatures)


class AuditLog:
    """The audit log over one DuckDB connection (the single writer)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    # ------------------------------------------------------------------ reading the tree

    def size(self) -> int:
        """Entries in the tree, as its level-0 tiles give it."""
        row = store.run(self.con, "audit_tree_size").fetchone()
        return int(row[0]) if row else 0

    def _sizes(self) -> tuple[int, int, int]:
        """The size as the tiles give it, as the entries' largest index gives it, and the
        number of stored entries (the table has no key: migration 0016)."""
        row = store.run(self.con, "audit_size").fetchone()
        return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)

    def read_tiles(self, wanted: Iterable[tuple[int, int]]) -> tuple[dict[tuple[int, int], bytes], int]:
        """Stored tiles by (level, index), absent ones left out, and the tree's size: one query."""
        keys = sorted({(level << 40) + index for level, index in wanted})
        rows = store.run(self.con, "audit_tiles", {"keys": keys}).fetchall() if keys else []
        size = int(rows[0][4]) if rows else self.size()
        return {(int(level), int(idx)): bytes(data) for level, idx, _, data, _ in rows}, size

    def source(self, size: int, ids: Sequence[NodeId] = ()) -> tiles.TileHashes:
        """The hashes of a tree of ``size`` from the tiles holding ``ids`` (default: its edge)."""
        wanted = tiles.TileHashes.needed(ids) if ids else [(t.level, t.index) for t in tiles.edge(size)]
        found, have = self.read_tiles(wanted)
        if not 0 <= size <= have:
            raise AuditError(f"the log has {have} entries, not {size}")
        return tiles.TileHashes(size, found)

    def hashes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """Perfect-subtree hashes by (level, index) of the current tree: a :class:`merkle.HashSource`."""
        return self.source(self.size(), ids).hashes(ids) if ids else {}

    def root(self, size: int | None = None) -> bytes:
        size = self.size() if size is None else size
        return self.source(size).root() if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size() if size is None else size
        if not 0 <= index < size:
            raise AuditError(f"entry {index} is not in a log of size {size}", entry=index)
        plan = inclusion_plan(index, size)
        return resolve(plan, self.source(size, plan_ids(plan)))

    def inclusion_proofs(self, indices: Sequence[int], size: int) -> dict[int, list[bytes]]:
        """Proofs for many entries against one size, from one read of the tiles they need."""
        plans = {i: inclusion_plan(i, size) for i in indices}
        ids = list({node for plan in plans.values() for item in plan for node in item})
        source = self.source(size, ids)
        return {i: resolve(plan, source) for i, plan in plans.items()}

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = self.size() if new is None else new
        if old == new:
            self._check_size(new)
            return []
        plan = consistency_plan(old, new)
        return resolve(plan, self.source(new, plan_ids(plan)))

    def _roots(self, sizes: Sequence[int]) -> list[bytes]:
        """Roots of trees of ``sizes`` (each at most the log's) from one read of their edge tiles."""
        found, have = self.read_tiles((t.level, t.index) for n in sizes for t in tiles.edge(n))
        for n in sizes:
            if not 0 <= n <= have:
                raise AuditError(f"the log has {have} entries, not {n}")
        return [tiles.TileHashes(n, found).root() if n else EMPTY_ROOT for n in sizes]

    def _check_size(self, size: int) -> None:
        have = self.size()
        if not 0 <= size <= have:
            raise AuditError(f"the log has {have} entries, not {size}")

    # ---------------------------------------------------------------------- entries

    def entries(self, indices: Sequence[int]) -> dict[int, bytes]:
        rows = store.run(self.con, "audit_entries_by_index", {"idxs": list(indices)}).fetchall()
        return {int(i): bytes(e) for i, e in rows}

    def entry(self, index: int) -> bytes:
        found = self.entries([index])
        if index not in found:
            raise AuditError("no such entry", entry=index)
        return found[index]

    def latest(self, entry_type: str, subject: str, month: str | None = None) -> tuple[int, bytes] | None:
        row = store.run(
            self.con, "audit_latest_subject", {"entry_type": entry_type, "subject": subject, "month": month}
        ).fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def subjects(self, entry_type: str, month: str | None = None) -> dict[str, int]:
        rows = store.run(self.con, "audit_subjects", {"entry_type": entry_type, "month": month}).fetchall()
        return {str(s): int(i) for s, i in rows if s is not None}

    def documents(self, names: Sequence[str]) -> dict[str, bytes]:
        rows = store.run(self.con, "audit_documents", {"names": list(names)}).fetchall()
        return {str(n): bytes(c) for n, _, c in rows}

    # ---------------------------------------------------------------------- appending

    def append(
        self,
        entry: Mapping[str, Any],
        documents: Mapping[str, bytes] | None = None,
        *,
        at: datetime | None = None,
    ) -> int:
        """Append one entry (and the documents it vouches for); returns its index."""
        return self.append_many([entry], documents, at=at)[0]

    def append_many(
        self,
        entries: Sequence[Mapping[str, Any]],
        documents: Mapping[str, bytes] | None = None,
        *,
        at: datetime | None = None,
    ) -> list[int]:
        """Append entries in order, in one transaction; returns their indices."""
        return self.append_encoded(encode_many(entries), documents, at=at)

    def append_encoded(
        self,
        items: Sequence[_Encoded],
        documents: Mapping[str, bytes] | None = None,
        *,
        at: datetime | None = None,
    ) -> list[int]:
        if not items:
            return []
        moment = at or datetime.now(UTC)
        docs = dict(documents or {})
        wanted: dict[str, str] = {}
        for item in items:
            for name, digest in item.refs:
                if wanted.setdefault(name, digest) != digest:
                    raise EntryError("two entries name the same document with different SHA-256", value=name)
        for name in docs:
            if name not in wanted:
                raise EntryError("a document was given that no entry names", value=name)
        with gc_paused(), atomic(self.con):  # a batch builds ~10^5 objects: see audit.gcpause
            if wanted:
                self._store_documents(wanted, docs, moment)
            size = self._append_size()
            edge = self._edge(size)
            sha = hashlib.sha256
            datas = [item.data for item in items]
            grown = tiles.grow(size, edge, [sha(b"\x00" + data).digest() for data in datas])
            n = len(items)
            metas = [item.meta for item in items]
            staged = pa.table(
                {
                    "idx": pa.array(range(size, size + n), pa.int64()),
                    "entry": pa.array(datas, pa.binary()),
                    "entry_type": pa.array([m.entry_type for m in metas], pa.string()),
                    "month": pa.array([m.month for m in metas], pa.string()),
                    "tenant": pa.array([m.tenant for m in metas], pa.string()),
                    "subject": pa.array([m.subject for m in metas], pa.string()),
                    "appended_at": _timestamps(moment, n),
                }
            )
            staged_tiles = pa.table(
                {
                    "level": pa.array([g.level for g in grown], pa.int16()),
                    "idx": pa.array([g.index for g in grown], pa.int64()),
                    "width": pa.array([g.width for g in grown], pa.int16()),
                    "hashes": pa.array([g.hashes for g in grown], pa.binary()),
                }
            )
            _register(self.con, "audit_staged_entries", staged)
            _register(self.con, "audit_staged_tiles", staged_tiles)
            try:
                store.run(self.con, "audit_insert_entries")
                store.run(self.con, "audit_store_tiles")
            finally:
                self.con.unregister("audit_staged_entries")
                self.con.unregister("audit_staged_tiles")
        return list(range(size, size + len(items)))

    def _store_documents(self, wanted: Mapping[str, str], docs: Mapping[str, bytes], moment: datetime) -> None:
        """Keep each document an entry names, unless the log already keeps it (same content)."""
        stored = dict(store.run(self.con, "audit_document_digests", {"names": list(wanted)}).fetchall())
        for name, digest in wanted.items():
            if name in stored:
                if stored[name] != digest:
                    raise EntryError("the log already keeps different content under this name", value=name)
                continue
            content = docs.get(name)
            if content is None:
                raise EntryError("an entry names a document that was not given", value=name)
            if kinds.sha256_hex(content) != digest:
                raise EntryError("document content does not match the SHA-256 its entry names", value=name)
            store.run(
                self.con,
                "audit_insert_document",
                {"name": name, "sha256": digest, "content": content, "stored_at": moment},
            )

    def _append_size(self) -> int:
        """The size to append at; refuses when the tiles and the entries disagree."""
        from_tiles, from_entries, stored = self._sizes()
        if from_tiles != from_entries:
            raise VerificationError(
                f"the stored tiles cover {from_tiles} entries but the log holds {from_entries}; "
                "run gpumeter audit check",
                entry=min(from_tiles, from_entries),
            )
        if stored != from_entries:
            raise VerificationError(
                f"{stored} entries are stored for indices 0..{from_entries - 1}; run gpumeter audit check"
            )
        return from_tiles

    def _edge(self, size: int) -> dict[int, bytes]:
        """The stored partial tile of each level (level -> hashes), checked against ``size``."""
        rows = store.run(self.con, "audit_tile_edge").fetchall()
        want = {t.level: t for t in tiles.edge(size)}
        out: dict[int, bytes] = {}
        for level, idx, width, data in rows:
            tile = want.get(int(level))
            found = tiles.Tile(int(level), int(idx), int(width))
            if tile is None or tile.index != found.index or len(data) != int(width) * HASH_SIZE:
                raise VerificationError(
                    f"a tree of {size} entries has no such partial tile; run gpumeter audit check", member=found.path
                )
            out[tile.level] = tiles.check_tile(tile, bytes(data), exact=True)
        for tile in want.values():
            if tile.level not in out:
                raise VerificationError("tile is missing; run gpumeter audit check", member=tile.path)
        return out

    # ------------------------------------------------------------------- checkpoints

    def checkpoints(self) -> list[StoredCheckpoint]:
        return [c for row in store.run(self.con, "audit_checkpoints").fetchall() if (c := stored_checkpoint(row))]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return stored_checkpoint(store.run(self.con, "audit_latest_checkpoint").fetchone())

    def checkpoint_by_id(self, checkpoint_id: int) -> StoredCheckpoint | None:
        return stored_checkpoint(store.run(self.con, "audit_checkpoint_by_id", {"id": checkpoint_id}).fetchone())

    def record_keys(self, signers: Sequence[Signer], *, at: datetime | None = None) -> list[int]:
        """Log a ``key_added`` event for each signer the log has not seen yet."""
        moment = at or datetime.now(UTC)
        new = [
            kinds.key_event(at=moment, event="key_added", key=s.vkey)
            for s in signers
            if store.run(self.con, "audit_key_logged", {"subject": s.vkey}).fetchone() is None
        ]
        return self.append_many(new, at=moment) if new else []

    def sign_checkpoint(
        self,
        signer: Signer | Sequence[Signer],
        origin: str,
        *,
        at: datetime | None = None,
        mark: Path | None = None,
    ) -> str:
        """Sign and store a checkpoint of the whole log now; returns the signed note text.

        Several signers (old and new key during a rotation) all sign the same checkpoint.
        ``mark`` is the file keeping the largest checkpoint ever signed
        (:func:`audit.highwater.mark_path`): a tree that does not extend it is refused.
        """
        return self.sign(signer, origin, at=at, mark=mark).note

    def sign(
        self,
        signer: Signer | Sequence[Signer],
        origin: str,
        *,
        at: datetime | None = None,
        mark: Path | None = None,
    ) -> StoredCheckpoint:
        """As :meth:`sign_checkpoint`, returning the stored checkpoint (id, size, root, note).

        The mark is updated here when this call owns the transaction, else by the caller
        after its commit (or, failing that, at the next signing)."""
        signers = [signer] if isinstance(signer, Signer) else list(signer)
        if not signers:
            raise AuditError("a checkpoint needs at least one signing key")
        for s in signers:
            if s.name != origin:
                raise AuditError(f"the log key's name must be the origin {origin!r}", value=s.name)
        moment = at or datetime.now(UTC)
        owned = not _in_transaction(self.con)
        with atomic(self.con):
            latest = self.latest_checkpoint()
            signed = parse_note(latest.note) if latest is not None else None
            # A key that validly signed the latest checkpoint was logged before it: only
            # the others are looked up (a scan of the entries) and logged if new.
            self.record_keys([s for s in signers if not _has_signed(s, signed)], at=moment)
            size = self._append_size()
            if latest is not None and signed is not None:
                if latest.size > size:
                    raise VerificationError(
                        f"the log has {size} entries but checkpoint #{latest.id} vouches for {latest.size}; "
                        "run gpumeter audit check",
                        entry=size,
                    )
                if parse_checkpoint(signed.text).origin != origin:
                    raise AuditError("the configured origin differs from the log's previous checkpoints", value=origin)
            roots = self._roots([size] if latest is None else [size, latest.size])
            if latest is not None and roots[1] != latest.root:
                raise VerificationError(
                    f"stored tree no longer matches checkpoint #{latest.id}; refusing to sign; run gpumeter audit check"
                )
            cp = Checkpoint(origin, size, roots[0])
            if mark is not None:
                highwater.guard(mark, self, cp.size, cp.root, latest_note=latest.note if latest else None)
            note = sign_checkpoint(cp, signers)
            row = store.run(
                self.con,
                "audit_insert_checkpoint",
                {"size": size, "root": cp.root, "note": note, "signed_at": moment},
            ).fetchone()
        if row is None:
            raise AuditError("checkpoint was not stored")
        if mark is not None and owned:
            highwater.record(mark, note)
        return StoredCheckpoint(int(row[0]), size, cp.root, note, moment)
