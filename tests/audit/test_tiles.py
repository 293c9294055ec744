"""The tree as C2SP tlog-tiles: layout, proofs from tiles, the store's tiles, migration."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import merkle, tiles
from audit.check import check_log
from audit.errors import VerificationError
from audit.log import AuditLog
from gpumeter import store
from gpumeter.errors import StoreError
from testing.stores import new_store
from tests.audit import fleet

SIZES = (1, 255, 256, 257, 65_535, 65_536, 70_000)
N = max(SIZES)


def _entry(k: int) -> dict[str, object]:
    return {"type": "test", "time": "2026-07-01T00:00:00Z", "n": k}


@pytest.fixture(scope="module")
def reference() -> merkle.MerkleTree:
    """The in-memory RFC 6962 tree (every perfect subtree kept) over the same entries."""
    from audit.canonical import canonical

    tree = merkle.MerkleTree()
    for k in range(N):
        tree.append(canonical(_entry(k)))
    return tree


def test_paths_follow_the_spec() -> None:
    assert tiles.index_path(0) == "000"
    assert tiles.index_path(1234067) == "x001/x234/067"
    assert tiles.Tile(2, 1234067, 17).path == "tile/2/x001/x234/067.p/17"
    assert tiles.Tile(tiles.ENTRIES, 5).path == "tile/entries/005"
    for tile in (tiles.Tile(0, 0), tiles.Tile(63, 999_999, 255), tiles.Tile(tiles.ENTRIES, 1000, 1)):
        assert tiles.parse_path(tile.path) == tile
    for bad in ("tile/0/1", "tile/0/x000", "tile/0/001.p/256", "tile/0/001.p/0", "tile/64/000", "tile/0/x01/000"):
        with pytest.raises(ValueError):
            tiles.parse_path(bad)


def test_the_layout_at_70000_is_the_spec_example() -> None:
    partial = [t for t in tiles.layout(70_000) if not t.full]
    full = [t for t in tiles.layout(70_000) if t.full]
    assert sum(t.level == 0 for t in full) == 273 and sum(t.level == 1 for t in full) == 1
    assert [(t.level, t.width) for t in partial] == [(0, 112), (1, 17), (2, 1)]
    assert [t.path for t in tiles.layout(256)] == ["tile/0/000", "tile/1/000.p/1"]
    assert list(tiles.layout(0)) == []


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 600), st.lists(st.integers(1, 600), min_size=1, max_size=5))
def test_growing_in_any_batches_gives_the_same_tiles(start: int, batches: list[int]) -> None:
    leaves = [merkle.leaf_hash(k.to_bytes(4, "big")) for k in range(start + sum(batches))]
    at_once: dict[tuple[int, int], bytes] = {}
    for g in tiles.grow(0, {}, leaves):
        at_once[(g.level, g.index)] = g.hashes
    stepwise: dict[tuple[int, int], bytes] = {}
    size = 0
    for b in [start, *batches]:
        edge = {t.level: stepwise[(t.level, t.index)] for t in tiles.edge(size)}
        for g in tiles.grow(size, edge, leaves[size : size + b]):
            assert (
                g.width == tiles.WIDTH
                or (g.level, g.index) not in stepwise
                or len(stepwise[(g.level, g.index)]) < len(g.hashes)
            )  # only partial tiles are ever replaced, and only by longer ones
            stepwise[(g.level, g.index)] = g.hashes
        size += b
    assert stepwise == at_once
    assert sorted((lv, i, len(h) // 32) for (lv, i), h in at_once.items()) == sorted(
        (t.level, t.index, t.width) for t in tiles.layout(size)
    )


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    """A store grown through each of SIZES in uneven batches."""
    con = new_store(tmp_path_factory.mktemp("tiles") / "g.duckdb")
    log = AuditLog(con)
    rng = random.Random(7)
    size = 0
    for target in SIZES:
        while size < target:
            step = min(target - size, rng.choice([1, 3, 255, 256, 1000, 9000]))
            log.append_many([_entry(k) for k in range(size, size + step)], at=fleet.T0)
            size += step
    yield con
    con.close()


@pytest.mark.parametrize("size", SIZES)
def test_proofs_from_the_stored_tiles_equal_the_full_tree(
    grown: duckdb.DuckDBPyConnection, reference: merkle.MerkleTree, size: int
) -> None:
    log = AuditLog(grown)
    assert log.root(size) == reference.root(size)
    rng = random.Random(size)
    for i in {0, size - 1, size // 2, *rng.sample(range(size), min(size, 40))}:
        assert log.inclusion_proof(i, size) == reference.inclusion_proof(i, size), i
    for m in {1, size, *rng.sample(range(1, size + 1), min(size, 20))}:
        assert log.consistency_proof(m, size) == reference.consistency_proof(m, size), m


def test_the_store_keeps_tiles_not_subtrees(grown: duckdb.DuckDBPyConnection) -> None:
    con = grown
    rows = con.execute("SELECT level, idx, width FROM audit_tiles ORDER BY level, idx").fetchall()
    assert rows == [(t.level, t.index, t.width) for t in tiles.layout(N)]
    assert len(rows) == 273 + 1 + 1 + 1 + 1  # ~n/256 rows, where the old store kept ~2n subtree rows
    result = check_log(con, [fleet.signer().verifier], fleet.ORIGIN)
    assert result.size == N and result.findings == (
        "the log has no signed checkpoint yet; run gpumeter audit checkpoint",
    )


# -------------------------------------------------------------------------------- damage


@pytest.fixture
def small(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A signed log of 601 entries (600 and the key event): two full level-0 tiles, a partial
    one, a level-1 partial."""
    con = new_store(tmp_path / "g.duckdb")
    log = AuditLog(con)
    log.append_many([_entry(k) for k in range(600)], at=fleet.T0)
    log.sign(fleet.signer(), fleet.ORIGIN, at=fleet.T0)
    yield con
    con.close()


def _findings(con: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    result = check_log(con, [fleet.signer().verifier], fleet.ORIGIN)
    assert not result.passed
    return result.findings


def test_a_missing_tile_is_named(small: duckdb.DuckDBPyConnection) -> None:
    small.execute("DELETE FROM audit_tiles WHERE level = 1")
    assert "tile/1/000.p/2: tile is missing" in _findings(small)
    with pytest.raises(VerificationError, match=r"tile/1/000\.p/2"):
        AuditLog(small).inclusion_proof(3, 600)
    with pytest.raises(VerificationError) as err:
        AuditLog(small).append(_entry(600), at=fleet.T0)
    assert err.value.member == "tile/1/000.p/2"


def test_a_truncated_tile_is_named(small: duckdb.DuckDBPyConnection) -> None:
    small.execute("UPDATE audit_tiles SET hashes = hashes[:7999] WHERE level = 0 AND idx = 1")
    assert "tile/0/001: tile is 7999 bytes, not a whole number of 32-byte hashes" in _findings(small)
    with pytest.raises(VerificationError, match="tile/0/001"):
        AuditLog(small).inclusion_proof(300, 600)


def test_a_tile_whose_hashes_do_not_match_the_entries_is_named(small: duckdb.DuckDBPyConnection) -> None:
    small.execute("UPDATE audit_tiles SET hashes = hashes[:32] || hashes[:32] || hashes[65:] WHERE level = 1")
    found = _findings(small)
    assert "tile/1/000.p/2: hash 1 over entries 256..511 differs from the one recomputed from the entries" in found


def test_a_partial_tile_wider_than_the_tree_is_named(small: duckdb.DuckDBPyConnection) -> None:
    small.execute("UPDATE audit_tiles SET hashes = hashes || hashes[:32], width = 3 WHERE level = 1")
    assert "tile/1/000.p/2: partial tile is wider than the tree: 3 hashes, the tree needs 2" in _findings(small)
    with pytest.raises(VerificationError) as err:
        AuditLog(small).append(_entry(600), at=fleet.T0)
    assert err.value.member == "tile/1/000.p/2" and "wider than the tree" in err.value.message


def test_appending_refuses_when_tiles_and_entries_disagree(small: duckdb.DuckDBPyConnection) -> None:
    small.execute("DELETE FROM audit_entries WHERE idx = 600")  # the key event signing logged last
    with pytest.raises(VerificationError, match="tiles cover 601 entries but the log holds 600"):
        AuditLog(small).append(_entry(600), at=fleet.T0)


def test_an_entry_too_long_for_an_entry_bundle_is_refused(small: duckdb.DuckDBPyConnection) -> None:
    from audit.errors import EntryError

    with pytest.raises(EntryError, match="at most 65535"):
        AuditLog(small).append({**_entry(1), "pad": "x" * 70_000}, at=fleet.T0)
    assert AuditLog(small).size() == 601


# ------------------------------------------------------------------------------ migration


def _old_store(path: Path, n: int) -> duckdb.DuckDBPyConnection:
    """A store as the previous schema (0003) left it: entries plus every perfect subtree in
    ``audit_tree`` keyed by append position, and a signed checkpoint of the first n − 1."""
    from audit.canonical import canonical
    from audit.checkpoint import Checkpoint, sign_checkpoint

    con = store.connect(path)
    for version, name, sql in store.migrations():
        if version < 8:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES ($v, $n, now())", {"v": version, "n": name})
    tree = merkle.MerkleTree()
    for k in range(n):
        data = canonical(_entry(k))
        tree.append(data)
        con.execute(
            "INSERT INTO audit_entries VALUES ($i, $e, 'test', '2026-07', NULL, NULL, $t)",
            {"i": k, "e": data, "t": fleet.T0},
        )
    rows = []
    for level, hashes in enumerate(tree._levels):
        for index, h in enumerate(hashes):
            e = ((index + 1) << level) - 1  # the old key: 2e - popcount(e) + level
            rows.append((2 * e - bin(e).count("1") + level, h))
    con.executemany("INSERT INTO audit_tree VALUES (?, ?)", rows)
    note = sign_checkpoint(Checkpoint(fleet.ORIGIN, n - 1, tree.root(n - 1)), [fleet.signer()])
    con.execute(
        "INSERT INTO audit_checkpoints VALUES (1, $s, $r, $n, $t)",
        {"s": n - 1, "r": tree.root(n - 1), "n": note, "t": fleet.T0},
    )
    return con


def test_migration_rebuilds_the_tiles_from_the_entries(tmp_path: Path) -> None:
    con = _old_store(tmp_path / "old.duckdb", 1000)
    assert store.migrate(con) == [v for v, _, _ in store.migrations() if v >= 8]
    assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'audit_tree'").fetchone() == (
        0,
    )
    fresh = new_store(tmp_path / "fresh.duckdb")
    AuditLog(fresh).append_many([_entry(k) for k in range(1000)], at=fleet.T0)
    query = "SELECT level, idx, width, hashes FROM audit_tiles ORDER BY level, idx"
    assert con.execute(query).fetchall() == fresh.execute(query).fetchall()
    assert check_log(con, [fleet.signer().verifier], fleet.ORIGIN).passed
    AuditLog(con).append(_entry(1000), at=fleet.T0)  # and the log goes on
    assert check_log(con, [fleet.signer().verifier], fleet.ORIGIN).passed
    fresh.close()
    con.close()


def test_migration_refuses_entries_that_do_not_give_the_signed_root(tmp_path: Path) -> None:
    con = _old_store(tmp_path / "old.duckdb", 300)
    con.close()
    for damage in ("UPDATE audit_entries SET entry = entry || ' '::BLOB WHERE idx = 17", "DELETE FROM audit_entries"):
        shutil.copy(tmp_path / "old.duckdb", tmp_path / "bad.duckdb")
        con = store.connect(tmp_path / "bad.duckdb")
        con.execute(damage)
        with pytest.raises(StoreError, match="do not give the root of the latest signed checkpoint"):
            store.migrate(con)
        assert store.schema_version(con) < 8  # left as it was, the old tree still there
        assert con.execute("SELECT count(*) FROM audit_tree").fetchone() == (2 * 300 - bin(300).count("1"),)
        con.close()
