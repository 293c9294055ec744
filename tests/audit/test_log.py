"""The DuckDB log: proofs equal the in-memory tree, O(log n) work, tampering is caught."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from audit import attest, merkle, policy, record, tiles
from audit import entries as kinds
from audit.canonical import canonical
from audit.check import check_log, verify_log
from audit.errors import AuditError, EntryError, VerificationError
from audit.log import AuditLog
from gpumeter import store
from testing.stores import new_store
from tests.audit import fleet

EU = policy.policy(["EU"])


def _entry(n: int) -> dict[str, object]:
    return {"type": "test", "time": "2026-07-01T00:00:00Z", "n": n}


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = new_store(tmp_path / "g.duckdb")
    yield c
    c.close()


def test_proofs_from_the_store_equal_the_in_memory_tree(con: duckdb.DuckDBPyConnection) -> None:
    log = AuditLog(con)
    tree = merkle.MerkleTree()
    batches = [1, 1, 5, 2, 30, 1, 17]  # single appends and batches crossing subtree borders
    n = 0
    for b in batches:
        items = [_entry(n + k) for k in range(b)]
        assert log.append_many(items, at=fleet.T0) == list(range(n, n + b))
        for e in items:
            tree.append(canonical(e))
        n += b
        assert log.size() == n and log.root() == tree.root()
    for size in (1, 2, 3, 8, 31, n):
        assert log.root(size) == tree.root(size)
        for i in range(size):
            assert log.inclusion_proof(i, size) == tree.inclusion_proof(i, size)
        for m in range(1, size + 1):
            assert log.consistency_proof(m, size) == tree.consistency_proof(m, size)
    assert log.inclusion_proofs(list(range(n)), n) == {i: tree.inclusion_proof(i, n) for i in range(n)}
    with pytest.raises(AuditError):
        log.inclusion_proof(n, n)


def test_appending_reads_only_the_edge_and_proofs_read_few_tiles(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(con)
    log.append_many([_entry(k) for k in range(1000)], at=fleet.T0)
    edges: list[int] = []
    reads: list[int] = []
    original_edge, original_read = AuditLog._edge, AuditLog.read_tiles

    def counting_edge(self: AuditLog, size: int) -> dict[int, bytes]:
        found = original_edge(self, size)
        edges.append(len(found))
        return found

    def counting_read(self: AuditLog, wanted):  # type: ignore[no-untyped-def]
        wanted = list(wanted)
        reads.append(len(set(wanted)))
        return original_read(self, wanted)

    monkeypatch.setattr(AuditLog, "_edge", counting_edge)
    monkeypatch.setattr(AuditLog, "read_tiles", counting_read)
    for k in range(1000, 1100):
        edges.clear()
        reads.clear()
        log.append(_entry(k), at=fleet.T0)
        assert edges == [len(tiles.edge(k))] and reads == []  # the partial tile of each level, nothing else
    for i in (0, 511, 777, 1099):
        reads.clear()
        log.inclusion_proof(i, 1100)
        assert reads and sum(reads) <= 3 * 2  # at most three tiles per tile level
    stored = con.execute(
        "SELECT level, idx, width, octet_length(hashes) FROM audit_tiles ORDER BY level, idx"
    ).fetchall()
    assert stored == [(t.level, t.index, t.width, 32 * t.width) for t in tiles.layout(1100)]
    assert [t.path for t in tiles.layout(1100)] == [
        "tile/0/000", "tile/0/001", "tile/0/002", "tile/0/003", "tile/0/004.p/76", "tile/1/000.p/4",
    ]  # fmt: skip


def test_documents_are_kept_and_checked(con: duckdb.DuckDBPyConnection) -> None:
    log = AuditLog(con)
    pdf, js = b"%PDF-1.7 invoice", b'{"number": "F-1"}'
    idx = record.record_invoice_finalized(
        con,
        number="F-2026-0001",
        tenant="acme",
        period="2026-07",
        totals={"net": "100.00", "vat": "20.00", "total": "120.00"},
        currency="EUR",
        json_document=js,
        pdf_document=pdf,
        at=fleet.T0,
    )
    entry = json.loads(log.entry(idx))
    assert entry["pdf"]["document"] == "documents/F-2026-0001.pdf"
    assert log.documents([entry["pdf"]["document"], entry["json"]["document"]]) == {
        "documents/F-2026-0001.pdf": pdf,
        "documents/F-2026-0001.json": js,
    }
    ref = {"document": "documents/x.bin", "sha256": "0" * 64}
    with pytest.raises(EntryError, match="not given"):
        log.append({"type": "t", "time": "2026-07-01T00:00:00Z", "file": ref})
    with pytest.raises(EntryError, match="does not match"):
        log.append({"type": "t", "time": "2026-07-01T00:00:00Z", "file": ref}, {"documents/x.bin": b"other"})
    with pytest.raises(EntryError, match="no entry names"):
        log.append(_entry(1), {"documents/y.bin": b"y"})
    with pytest.raises(EntryError):
        log.append({"type": "t", "time": "2026-07-01T00:00:00Z", "file": {"document": "../x", "sha256": "0" * 64}})
    assert log.size() == idx + 1  # the refused appends left nothing behind


def test_append_joins_the_callers_transaction(con: duckdb.DuckDBPyConnection) -> None:
    log = AuditLog(con)
    log.append(_entry(0), at=fleet.T0)
    with pytest.raises(RuntimeError), store.transaction(con):
        record.record(con, _entry(1), at=fleet.T0)
        assert AuditLog(con).size() == 2
        raise RuntimeError("the caller fails after logging")
    assert log.size() == 1
    with store.transaction(con):
        record.record(con, _entry(1), at=fleet.T0)
    assert log.size() == 2


# ------------------------------------------------------------------------------ tampering


def _logged(con: duckdb.DuckDBPyConnection) -> AuditLog:
    """A log of the July fleet with two checkpoints."""
    fleet.july(con)
    attest.sync_inventory(con, at=fleet.T0)
    attest.sync_usage_windows(con, "2026-07", at=fleet.T0)
    log = AuditLog(con)
    note = log.sign_checkpoint(fleet.signer(), fleet.ORIGIN, at=fleet.T0)
    assert note.startswith(fleet.ORIGIN + "\n") and note == log.checkpoints()[-1].note
    attest.attest_month(con, "2026-07", EU, at=fleet.T0 + timedelta(days=31))
    log.sign_checkpoint([fleet.signer()], fleet.ORIGIN, at=fleet.T0 + timedelta(days=31))
    return log


def _check(con: duckdb.DuckDBPyConnection):  # type: ignore[no-untyped-def]
    return check_log(con, [fleet.signer().verifier], fleet.ORIGIN)


def test_untouched_log_checks(con: duckdb.DuckDBPyConnection) -> None:
    log = _logged(con)
    result = verify_log(con, [fleet.signer().verifier], fleet.ORIGIN)
    assert result.passed and result.size == log.size() == result.checkpoint_size


def test_edited_usage_digest_is_named(con: duckdb.DuckDBPyConnection) -> None:
    _logged(con)
    row = con.execute(
        "SELECT idx, entry FROM audit_entries WHERE entry_type = 'usage_window' ORDER BY idx LIMIT 1 OFFSET 1"
    ).fetchone()
    assert row is not None
    idx, data = row
    entry = json.loads(bytes(data))
    entry["digest"] = "0" * 64
    con.execute("UPDATE audit_entries SET entry = $e WHERE idx = $i", {"e": canonical(entry), "i": idx})
    result = _check(con)
    assert not result.passed and result.first_bad_entry == idx
    with pytest.raises(VerificationError) as err:
        verify_log(con, [fleet.signer().verifier], fleet.ORIGIN)
    assert err.value.entry == idx and f"entry {idx}" in str(err.value)


def _set_leaf(con: duckdb.DuckDBPyConnection, k: int, leaf: bytes) -> None:
    """Overwrite entry ``k``'s hash in its level-0 tile (what an attacker with the database can do)."""
    con.execute(
        "UPDATE audit_tiles SET hashes = hashes[:$a] || $h || hashes[$b:] WHERE level = 0 AND idx = $t",
        {"a": (k % 256) * 32, "b": (k % 256) * 32 + 33, "h": leaf, "t": k // 256},
    )


def _truncate_tile(con: duckdb.DuckDBPyConnection, width: int) -> None:
    """Cut the first level-0 tile to ``width`` hashes."""
    con.execute(
        "UPDATE audit_tiles SET hashes = hashes[:$n], width = $w WHERE level = 0 AND idx = 0",
        {"n": 32 * width, "w": width},
    )


def test_edit_with_recomputed_leaf_hash_is_still_caught(con: duckdb.DuckDBPyConnection) -> None:
    log = _logged(con)
    first = log.checkpoints()[0]
    entry = json.loads(log.entry(6))
    entry["rows"] = 99
    data = canonical(entry)
    con.execute("UPDATE audit_entries SET entry = $e WHERE idx = 6", {"e": data})
    _set_leaf(con, 6, merkle.leaf_hash(data))
    result = _check(con)
    # in a partial tile nothing but the signed checkpoints holds the old leaf: the range they bound is named
    assert not result.passed and first.size > 6 and result.first_bad_entry == 0
    assert result.findings[0] == (
        f"checkpoint #{first.id} (size {first.size}) does not match the entries: "
        f"an entry in 0..{first.size - 1} was altered"
    )


def test_edit_with_recomputed_leaf_hash_in_a_full_tile_names_the_tile(con: duckdb.DuckDBPyConnection) -> None:
    log = AuditLog(con)
    log.append_many([_entry(k) for k in range(300)], at=fleet.T0)
    log.sign_checkpoint([fleet.signer()], fleet.ORIGIN, at=fleet.T0)
    data = canonical(_entry(-7))
    con.execute("UPDATE audit_entries SET entry = $e WHERE idx = 70", {"e": data})
    _set_leaf(con, 70, merkle.leaf_hash(data))
    result = _check(con)
    assert not result.passed and result.first_bad_entry == 0
    assert "tile/1/000.p/1: hash 0 over entries 0..255 differs from the one recomputed from the entries" in (
        result.findings
    )


def test_deleted_entry_is_named(con: duckdb.DuckDBPyConnection) -> None:
    _logged(con)
    con.execute("DELETE FROM audit_entries WHERE idx = 5")
    result = _check(con)
    assert not result.passed and result.first_bad_entry == 5
    assert result.findings == ("entry 5 is missing (the next stored entry is 6)",)  # the rest still checks out
    _truncate_tile(con, 5)  # its leaf hash (and every later one) gone too
    result = _check(con)
    assert not result.passed and result.first_bad_entry == 5
    assert result.findings[:3] == (
        "the stored tiles cover 5 entries but the log holds 12",
        "tile/0/000.p/12: tile is truncated: 5 hashes, the tree needs 12",
        "entry 5 is missing (the next stored entry is 6)",
    )


def test_entry_stored_twice_is_named_and_appending_refuses(con: duckdb.DuckDBPyConnection) -> None:
    """The entries table has no key (migration 0016): a copy of an entry under its own index
    is damage the check names and the append refuses to build on."""
    log = _logged(con)
    n = log.size()
    con.execute("INSERT INTO audit_entries SELECT * FROM audit_entries WHERE idx = 4")
    result = _check(con)
    assert not result.passed and result.first_bad_entry == 4
    assert "entry 4 is stored twice" in result.findings
    with pytest.raises(VerificationError, match=f"{n + 1} entries are stored for indices 0..{n - 1}"):
        log.append(kinds.key_event(at=fleet.T0, event="key_added", key="x"))
    assert log.size() == n


def test_reordered_entries_are_named(con: duckdb.DuckDBPyConnection) -> None:
    _logged(con)
    con.execute("UPDATE audit_entries SET idx = CASE idx WHEN 3 THEN 9 ELSE 3 END WHERE idx IN (3, 9)")
    result = _check(con)
    assert not result.passed and result.first_bad_entry == 3
    assert "entry 3 does not match" in result.findings[0]


def test_truncated_log_is_named(con: duckdb.DuckDBPyConnection) -> None:
    log = _logged(con)
    n = log.size()
    con.execute("DELETE FROM audit_entries WHERE idx >= $n", {"n": n - 2})
    _truncate_tile(con, n - 2)
    result = _check(con)
    assert not result.passed and result.first_bad_entry == n - 2
    assert any("truncated" in f for f in result.findings)
    with pytest.raises(VerificationError):  # the log refuses to sign over it
        log.sign_checkpoint([fleet.signer()], fleet.ORIGIN)


def test_replayed_old_checkpoint_is_caught(con: duckdb.DuckDBPyConnection) -> None:
    _logged(con)
    first = AuditLog(con).checkpoints()[0]
    con.execute(
        "INSERT INTO audit_checkpoints VALUES (3, $s, $r, $n, $t)",
        {"s": first.size, "r": first.root, "n": first.note, "t": fleet.T0 + timedelta(days=40)},
    )
    result = _check(con)
    assert not result.passed and any("replayed" in f for f in result.findings)


def test_swapped_key_is_caught(con: duckdb.DuckDBPyConnection) -> None:
    log = _logged(con)
    latest = log.latest_checkpoint()
    assert latest is not None
    from audit.checkpoint import Checkpoint, sign_checkpoint

    forged = sign_checkpoint(Checkpoint(fleet.ORIGIN, latest.size, latest.root), [fleet.signer(seed=9)])
    con.execute("UPDATE audit_checkpoints SET note = $n WHERE id = $i", {"n": forged, "i": latest.id})
    result = _check(con)
    assert not result.passed and "does not verify against the key ring" in result.findings[0]


def test_signing_refuses_a_tree_that_no_longer_matches(con: duckdb.DuckDBPyConnection) -> None:
    log = _logged(con)  # 12 entries: one partial tile
    _set_leaf(con, 0, b"\x00" * 32)
    with pytest.raises(VerificationError, match="refusing to sign"):
        log.sign_checkpoint([fleet.signer()], fleet.ORIGIN)
    with pytest.raises(AuditError, match="origin"):
        log.sign_checkpoint([fleet.signer()], "other.example/log")


# --------------------------------------------------------------------------- attestations


def test_attestations_are_appended_once_and_superseded_on_late_usage(con: duckdb.DuckDBPyConnection) -> None:
    fleet.july(con)
    first = attest.attest_month(con, "2026-07", EU, at=fleet.T0)
    assert first.jobs == 4 and len(first.appended) == 4 and first.outside == ("acme-train-2",)
    again = attest.attest_month(con, "2026-07", EU, at=fleet.T0 + timedelta(days=1))
    assert again.appended == () and again.unchanged == 4
    log = AuditLog(con)
    by_job = {json.loads(log.entry(i))["job_id"]: i for i in first.appended}
    entry = json.loads(log.entry(by_job["acme-train-1"]))
    assert entry == {
        "type": "job_attestation",
        "time": "2026-07-01T00:00:00Z",
        "job_id": "acme-train-1",
        "tenant": "acme",
        "month": "2026-07",
        "gpu_seconds": "10800",
        "hosts": ["gpu-de-1", "gpu-fr-1"],
        "countries": ["DE", "FR"],
        "data_locations": ["s3://eu-bucket/acme"],
        "data_countries": ["DE"],
        "policy": "EU/v1",
        "policy_sha256": attest.policy_digest(EU),
        "in_eu": True,
        "findings": [],
    }
    # late usage for one job: a new attestation supersedes the old one, nothing is edited
    fleet.meter(con, fleet.T0 + timedelta(hours=5), {"acme-train-1": ("gpu-ch-1", 60)})
    late = attest.attest_month(con, "2026-07", EU, at=fleet.T0 + timedelta(days=2))
    assert len(late.appended) == 1 and late.superseded == (by_job["acme-train-1"],)
    new = json.loads(log.entry(late.appended[0]))
    assert new["supersedes"] == by_job["acme-train-1"] and new["gpu_seconds"] == "10860"
    assert new["in_eu"] is False and "host gpu-ch-1 is in CH, outside the boundary" in new["findings"]
    assert json.loads(log.entry(by_job["acme-train-1"])) == entry
    # another boundary is another policy: everything is re-attested under it
    ch = attest.attest_month(con, "2026-07", policy.policy(["EU", "CH"]), at=fleet.T0 + timedelta(days=3))
    assert len(ch.appended) == 4 and "acme-train-1" not in ch.outside


def test_usage_windows_and_inventory_sync_idempotently(con: duckdb.DuckDBPyConnection) -> None:
    fleet.july(con)
    w = attest.sync_usage_windows(con, "2026-07", at=fleet.T0)
    inv = attest.sync_inventory(con, at=fleet.T0)
    assert len(w.appended) == 3 and len(inv.appended) == 4
    assert attest.sync_usage_windows(con, at=fleet.T0).appended == ()
    assert attest.sync_inventory(con, at=fleet.T0).appended == ()
    log = AuditLog(con)
    snap = json.loads(log.entry(inv.appended[0]))
    assert (
        snap["file"]["document"].startswith("documents/inventory-")
        and len(log.documents([snap["file"]["document"]])) == 1
    )
    fleet.meter(con, fleet.T0, {"acme-train-1": ("gpu-fr-1", 1)})  # the window is re-metered
    again = attest.sync_usage_windows(con, at=fleet.T0)
    assert len(again.appended) == 1 and again.superseded == (w.appended[0],)
    # the revision names what it revises: the old entry and its digest, and the new digest
    old, new = json.loads(log.entry(w.appended[0])), json.loads(log.entry(again.appended[0]))
    assert new["window_start"] == old["window_start"] and new["supersedes"] == w.appended[0]
    assert new["previous_digest"] == old["digest"] != new["digest"]
    stored = con.execute(
        "SELECT digest FROM collected_windows WHERE window_start = ?", [datetime.fromisoformat(new["window_start"])]
    ).fetchone()
    assert stored is not None and new["digest"] == stored[0]
    record.after_collect(con, None, at=fleet.T0)  # type: ignore[arg-type]  # metering's hook: nothing new
    assert log.size() == 8


@pytest.mark.parametrize("month", ["2026-13", "1999-12", " 2026-07", "2026-7", 202607])
def test_an_entry_with_a_bad_month_is_a_bad_entry(con: duckdb.DuckDBPyConnection, month: object) -> None:
    """The month rule is gpumeter.months.Month's, exactly; inside an entry it fails as EntryError."""
    with pytest.raises(EntryError, match="YYYY-MM"):
        AuditLog(con).append({**_entry(1), "month": month})
    assert AuditLog(con).size() == 0
