"""The audit log in DuckDB: append-only entries, stored subtree hashes, signed checkpoints.

Tables (``sql/schema/0003_audit.sql``): ``audit_entries`` (exact entry bytes and index
columns), ``audit_tree`` (every complete perfect subtree, level 0 = leaf hashes),
``audit_documents``, ``audit_checkpoints``, ``audit_exports``. Rows are only inserted.

* Appending reads the frontier (≤ 64 stored hashes), computes the leaf hash and the
  subtrees it completes, and inserts them: O(log n). :meth:`AuditLog.append_many` does the
  same for a batch with one insert per table (DuckDB is fast in bulk, slow row by row).
* A root, an inclusion path or a consistency proof is a plan of O(log n) node ids
  (:mod:`audit.merkle`) resolved by one query; bundles resolve all their proofs at once.
* Every write runs in one transaction — the caller's, when it already opened one (so
  billing can finalize an invoice and log it atomically), else its own.
* Before signing, the log re-derives the last checkpoint's root from stored hashes and
  refuses to sign a tree head that is not an extension of it; a signing key enters the
  log as a ``key_event`` before its first checkpoint.

:mod:`audit.check` recomputes everything from the entry bytes (``gpumeter audit check``).
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
from audit import highwater
from audit.canonical import canonical
from audit.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from audit.errors import AuditError, EntryError, VerificationError
from audit.gcpause import gc_paused
from audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    NodeId,
    Plan,
    consistency_plan,
    fold,
    inclusion_plan,
    position,
    resolve,
    root_plan,
)
from audit.note import Signer, parse_note
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


class AuditLog:
    """The audit log over one DuckDB connection (the single writer)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    # ------------------------------------------------------------------ reading the tree

    def size(self) -> int:
        row = store.run(self.con, "audit_size").fetchone()
        return int(row[0]) if row else 0

    def hashes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """Stored perfect-subtree hashes by (level, index): a :class:`merkle.HashSource`."""
        if not ids:
            return {}
        if len(ids) > 256:
            return self._hashes_bulk(ids)
        by_pos = {position(lv, i): (lv, i) for lv, i in ids}
        rows = store.run(self.con, "audit_tree_hashes", {"positions": list(by_pos)}).fetchall()
        return {by_pos[int(p)]: bytes(h) for p, h in rows}

    def _hashes_bulk(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        by_pos = {position(lv, i): (lv, i) for lv, i in ids}
        wanted = pa.table({"pos": pa.array(list(by_pos), pa.int64())})
        _register(self.con, "audit_wanted", wanted)
        try:
            result = store.frame(self.con, "audit_tree_hashes_staged")
        finally:
            self.con.unregister("audit_wanted")
        found = result.get_column("hash").to_list()
        return {by_pos[int(p)]: bytes(h) for p, h in zip(result.get_column("pos").to_list(), found, strict=True)}

    def root(self, size: int | None = None) -> bytes:
        size = self.size() if size is None else size
        self._check_size(size)
        return resolve(root_plan(size), self)[0] if size else EMPTY_ROOT

    def _roots(self, sizes: Sequence[int]) -> list[bytes] | None:
        """Roots of trees of ``sizes`` (each at most the log's size) from one read of stored
        subtrees; None when a size is beyond the log or a subtree is missing (then
        :meth:`root` says which)."""
        plans = [root_plan(n) for n in sizes]
        ids = list(dict.fromkeys(node for plan in plans for item in plan for node in item))
        found = self.hashes(ids)
        if len(found) != len(ids):
            return None
        return [fold([found[node] for node in plan[0]]) if plan else EMPTY_ROOT for plan in plans]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size() if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise AuditError(f"entry {index} is not in a log of size {size}", entry=index)
        return resolve(inclusion_plan(index, size), self)

    def inclusion_proofs(self, indices: Sequence[int], size: int) -> dict[int, list[bytes]]:
        """Proofs for many entries against one size, from one bulk read."""
        self._check_size(size)
        plans: dict[int, Plan] = {i: inclusion_plan(i, size) for i in indices}
        ids = list({node for plan in plans.values() for item in plan for node in item})
        found = self._hashes_bulk(ids) if ids else {}
        if len(found) != len(ids):
            raise VerificationError("stored tree lacks nodes needed for proofs; run gpumeter audit check")
        return {i: [fold([found[n] for n in item]) for item in plan] for i, plan in plans.items()}

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = self.size() if new is None else new
        self._check_size(new)
        if old == new:
            return []
        return resolve(consistency_plan(old, new), self)

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
        with atomic(self.con):
            if wanted:
                self._store_documents(wanted, docs, moment)
            size = self.size()
            frontier = self._frontier(size)
            sha = hashlib.sha256
            datas = [item.data for item in items]
            leaves = [sha(b"\x00" + data).digest() for data in datas]
            n = len(items)
            levels: list[int] = [0] * n
            idxs: list[int] = list(range(size, size + n))
            hashes: list[bytes] = list(leaves)
            for level, first, made in frontier.extend(leaves):
                levels += [level] * len(made)
                idxs += range(first, first + len(made))
                hashes += made
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
            tree = pa.table(
                {
                    "level": pa.array(levels, pa.uint8()),
                    "idx": pa.array(idxs, pa.int64()),
                    "hash": pa.array(hashes, pa.binary()),
                }
            )
            _register(self.con, "audit_staged_entries", staged)
            _register(self.con, "audit_staged_tree", tree)
            try:
                store.run(self.con, "audit_insert_entries")
                store.run(self.con, "audit_insert_tree")
            finally:
                self.con.unregister("audit_staged_entries")
                self.con.unregister("audit_staged_tree")
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

    def _frontier(self, size: int) -> Frontier:
        ids = Frontier.ids(size)
        found = self.hashes(ids)
        missing = [n for n in ids if n not in found]
        if missing:
            raise VerificationError(
                f"stored tree lacks frontier node {missing[0]} (level, index); run gpumeter audit check"
            )
        return Frontier(size, [found[n] for n in ids])

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
            self.record_keys(signers, at=moment)
            size = self.size()
            latest = self.latest_checkpoint()
            roots = self._roots([size] if latest is None else [size, latest.size])
            if latest is not None:
                if latest.size > size:
                    raise VerificationError(
                        f"the log has {size} entries but checkpoint #{latest.id} vouches for {latest.size}; "
                        "run gpumeter audit check",
                        entry=size,
                    )
                if (roots[1] if roots else self.root(latest.size)) != latest.root:
                    raise VerificationError(
                        f"stored tree no longer matches checkpoint #{latest.id}; refusing to sign; "
                        "run gpumeter audit check"
                    )
                if parse_checkpoint(parse_note(latest.note).text).origin != origin:
                    raise AuditError("the configured origin differs from the log's previous checkpoints", value=origin)
            cp = Checkpoint(origin, size, roots[0] if roots else self.root(size))
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
