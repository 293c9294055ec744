"""``gpumeter audit check``: the local log against its signed checkpoints.

:func:`check_log` streams every entry and every stored subtree in append order (one pass,
O(log n) memory), recomputes leaf hashes, subtrees and roots from the entry bytes, and
compares them with what is stored and with *every* stored checkpoint. It names the first
entry that was edited, deleted or moved, a truncated log, an old checkpoint replayed as
the latest, and a checkpoint that no key of the ring signed. When only roots disagree
(bytes and hashes rewritten consistently) it names the range between the last matching
and the first failing checkpoint. :func:`verify_log` raises instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import duckdb

from audit.checkpoint import open_checkpoint
from audit.errors import VerificationError
from audit.log import AuditLog, StoredCheckpoint
from audit.merkle import EMPTY_ROOT, Frontier, leaf_hash, position
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


def _rows(con: duckdb.DuckDBPyConnection, name: str) -> Iterator[tuple[int, bytes]]:
    """Stream a two-column query (int, blob) on a cursor of its own, in batches."""
    cur = con.cursor()
    try:
        cur.execute(store.statements(name)[0])
        while rows := cur.fetchmany(8192):
            for key, blob in rows:
                yield int(key), bytes(blob)
    finally:
        cur.close()


def _check_tree(
    con: duckdb.DuckDBPyConnection,
    cps: Sequence[StoredCheckpoint],
    want_roots: Mapping[int, Sequence[StoredCheckpoint]],
    findings: list[str],
    bad: list[int],
    coarse: list[int],
) -> int:
    """One pass over entries and stored subtrees in append order; returns the log size.

    Entry k's leaf sits at ``position(0, k)``, followed by the subtrees it completes, so the
    recomputed sequence and the stored one are compared element by element. A missing
    entry is bridged with its stored leaf hash so later entries are still checked.
    """
    tree = _rows(con, "audit_check_tree")
    pending: list[tuple[int, bytes]] = []

    def stored(pos: int) -> bytes | None:
        """The stored hash at ``pos``, consuming rows up to it (extra rows are reported)."""
        while True:
            row = pending.pop() if pending else next(tree, None)
            if row is None:
                return None
            if row[0] == pos:
                return row[1]
            if row[0] > pos:
                pending.append(row)
                return None
            findings.append(f"the stored tree holds a subtree at position {row[0]} that appending never makes")

    frontier = Frontier()
    node_reported = False
    k = 0
    for idx, data in _rows(con, "audit_check_entries"):
        while k <= idx:
            leaf = stored(position(0, k))
            if k < idx:
                findings.append(f"entry {k} is missing (the next stored entry is {idx})")
                bad.append(k)
                if leaf is None:
                    findings.append(f"entry {k}'s leaf hash is missing too: later subtrees cannot be checked")
                    return idx
                h = leaf
            else:
                h = leaf_hash(data)
                if leaf != h:
                    findings.append(f"entry {k} does not match its stored leaf hash: edited or moved")
                    bad.append(k)
            for node in frontier.append(h):
                if stored(position(node.level, node.index)) != node.hash and not node_reported:
                    node_reported = True
                    first = node.index << node.level
                    findings.append(
                        f"stored subtree ({node.level}, {node.index}) over entries {first}.."
                        f"{first + (1 << node.level) - 1} differs from the one recomputed"
                    )
                    coarse.append(first)
            k += 1
            for cp in want_roots.get(k, ()):
                if frontier.root() != cp.root:
                    prior = max((c.size for c in cps if c.size < k), default=0)
                    findings.append(
                        f"checkpoint #{cp.id} (size {cp.size}) does not match the entries: "
                        f"an entry in {prior}..{cp.size - 1} was altered"
                    )
                    coarse.append(prior)
    if (pending[-1] if pending else next(tree, None)) is not None:
        findings.append("the stored tree holds subtrees beyond the last entry")
    return k


def verify_log(con: duckdb.DuckDBPyConnection, log_keys: Sequence[Verifier], origin: str) -> LogCheck:
    """As :func:`check_log`, raising :class:`VerificationError` on the first problem."""
    result = check_log(con, log_keys, origin)
    if not result.passed:
        raise VerificationError(result.findings[0], entry=result.first_bad_entry)
    return result
