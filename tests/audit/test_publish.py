"""``gpumeter audit publish``: the log as static tlog-tiles that a monitor can follow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from audit import merkle, tiles
from audit.canonical import canonical
from audit.errors import AuditError, VerificationError
from audit.log import AuditLog
from audit.pinning import pinned_keys
from audit.publish import check_published, publish, published_proof
from testing.stores import new_store
from tests.audit import fleet

SIZES = (1, 255, 256, 257, 65_535, 65_536, 70_000)
TRUST = pinned_keys([fleet.signer().vkey], fleet.ORIGIN)


def _entry(k: int) -> dict[str, object]:
    return {"type": "test", "time": "2026-07-01T00:00:00Z", "n": k}


def _grow(log: AuditLog, size: int) -> None:
    """Append test entries until the log holds ``size``, then sign a checkpoint of it."""
    have = log.size()
    log.append_many([_entry(k) for k in range(have, size)], at=fleet.T0)
    assert log.sign(fleet.signer(), fleet.ORIGIN, at=fleet.T0).size == size


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """A log signed at each of SIZES (its key event is entry 0), published after each."""
    d = tmp_path_factory.mktemp("publish")
    con = new_store(d / "g.duckdb")
    log = AuditLog(con)
    log.record_keys([fleet.signer()], at=fleet.T0)
    out = d / "tlog"
    for size in SIZES:
        _grow(log, size)
        assert publish(con, out, fleet.ORIGIN).size == size
    yield con, out
    con.close()


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def test_the_layout_is_the_spec_layout(site: tuple[duckdb.DuckDBPyConnection, Path]) -> None:
    _, out = site
    files = _files(out)
    assert "checkpoint" in files and not any(f.startswith(".staging") for f in files)
    at_70000 = {t.path for t in tiles.layout(70_000)} | {b.path for b in tiles.bundles(70_000)}
    assert at_70000 <= files
    assert {"tile/0/272", "tile/0/273.p/112", "tile/1/000", "tile/1/001.p/17", "tile/2/000.p/1"} <= files
    assert "tile/entries/273.p/112" in files and "tile/3/000.p/1" not in files
    # the partial tiles of every earlier checkpoint stay served, and nothing else
    every = set().union(*({t.path for t in tiles.layout(s)} | {b.path for b in tiles.bundles(s)} for s in SIZES))
    assert files == every | {"checkpoint"}
    assert (out / "tile/0/000").stat().st_size == 8192


@pytest.mark.parametrize("size", SIZES)
def test_proofs_from_published_tiles_equal_the_stores(site: tuple[duckdb.DuckDBPyConnection, Path], size: int) -> None:
    con, out = site
    log = AuditLog(con)
    reference = merkle.MerkleTree()
    for k in range(size):  # the same entries: the key event, then the test entries
        reference.append(log.entry(k) if k == 0 else canonical(_entry(k)))
    for i in {0, size // 3, size // 2, size - 1}:
        assert published_proof(out, i, size) == log.inclusion_proof(i, size) == reference.inclusion_proof(i, size)
    assert tiles.TileHashes(size, _edge_files(out, size)).root() == reference.root(size)


def _edge_files(out: Path, size: int) -> dict[tuple[int, int], bytes]:
    return {(t.level, t.index): (out / t.path).read_bytes() for t in tiles.edge(size)}


def test_a_monitor_finds_the_published_log_whole(site: tuple[duckdb.DuckDBPyConnection, Path]) -> None:
    _, out = site
    result = check_published(out, TRUST)
    assert result.passed and result.size == 70_000, result.findings


def _signed_log(path: Path, size: int) -> tuple[duckdb.DuckDBPyConnection, AuditLog]:
    """A new store whose log (its key event first) holds ``size`` entries under a checkpoint."""
    con = new_store(path)
    log = AuditLog(con)
    log.record_keys([fleet.signer()], at=fleet.T0)
    _grow(log, size)
    return con, log


def test_publishing_again_writes_only_new_and_grown_tiles(tmp_path: Path) -> None:
    con, log = _signed_log(tmp_path / "g.duckdb", 70_000)
    out = tmp_path / "tlog"
    first = publish(con, out, fleet.ORIGIN)
    assert first.previous is None and first.written == len(_files(out))
    again = publish(con, out, fleet.ORIGIN)
    assert (again.previous, again.size, again.written) == (70_000, 70_000, 1)  # the checkpoint only
    before = _files(out)
    _grow(log, 70_300)
    grown = publish(con, out, fleet.ORIGIN)
    new = _files(out) - before
    assert new == {
        "tile/0/273",  # full now
        "tile/0/274.p/156",
        "tile/1/001.p/18",
        "tile/entries/273",
        "tile/entries/274.p/156",
    }
    assert grown.written == len(new) + 1 and check_published(out, TRUST).passed
    con.close()


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def copy(site: tuple[duckdb.DuckDBPyConnection, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(site[1], dst)
    return dst


def _finding(out: Path) -> str:
    result = check_published(out, TRUST)
    assert not result.passed
    return result.findings[0]


def test_a_monitor_names_a_missing_tile(copy: Path) -> None:
    (copy / "tile/1/000").unlink()
    assert _finding(copy) == "tile/1/000: tile is missing"


def test_a_monitor_names_a_truncated_tile(copy: Path) -> None:
    path = copy / "tile/0/100"
    path.write_bytes(path.read_bytes()[:-32])
    assert _finding(copy) == "tile/0/100: tile is truncated: 255 hashes, the tree needs 256"


def test_a_monitor_names_a_tile_whose_hashes_do_not_match_the_entries(copy: Path) -> None:
    path = copy / "tile/0/007"
    data = bytearray(path.read_bytes())
    data[40] ^= 1
    path.write_bytes(bytes(data))
    assert _finding(copy) == "entry 1793 does not match its stored leaf hash: edited or moved"
    bundle = copy / "tile/entries/009"
    raw = bytearray(bundle.read_bytes())
    raw[10] ^= 1
    bundle.write_bytes(bytes(raw))
    assert "entry 2304 does not match its stored leaf hash" in check_published(copy, TRUST).findings[1]


def test_a_monitor_names_a_partial_tile_wider_than_the_tree(copy: Path) -> None:
    path = copy / "tile/1/001.p/17"
    path.write_bytes(path.read_bytes() + b"\x00" * 32)
    assert _finding(copy) == "tile/1/001.p/17: partial tile is wider than the tree: 18 hashes, the tree needs 17"


def test_a_monitor_refuses_a_checkpoint_without_a_trusted_signature(copy: Path) -> None:
    other = pinned_keys([fleet.signer(seed=5).vkey], fleet.ORIGIN)
    assert check_published(copy, other).findings == (
        "checkpoint: note has no verifiable signatures: it is signed by "
        f"{fleet.ORIGIN}+{fleet.signer().verifier.key_id.hex()}, and the keys given are "
        f"{fleet.ORIGIN}+{fleet.signer(seed=5).verifier.key_id.hex()}",
    )


def test_publishing_over_another_log_or_a_damaged_tile_is_refused(
    site: tuple[duckdb.DuckDBPyConnection, Path], copy: Path, tmp_path: Path
) -> None:
    con, _ = site
    with pytest.raises(AuditError, match="serves another log"):
        publish(con, copy, "other.example/log")
    other, _ = _signed_log(tmp_path / "other.duckdb", 300)
    with pytest.raises(VerificationError, match="does not extend"):
        publish(other, copy, fleet.ORIGIN)  # same origin, another tree: never publish a fork over it
    other.close()
    (copy / "checkpoint").unlink()  # without its checkpoint, the files themselves are compared
    path = copy / "tile/0/005"
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="holds other bytes") as err:
        publish(con, copy, fleet.ORIGIN)
    assert err.value.member == str(path)
    assert not (copy / "checkpoint").exists()


_KILLED_MID_PUBLISH = """
import os, signal, sys
from audit import publish as p
from gpumeter import store
count = 0
write = p._Writer.write
def dying(self, path, data):
    global count
    count += 1
    if count == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    write(self, path, data)
p._Writer.write = dying
con = store.connect(sys.argv[1])
p.publish(con, sys.argv[2], sys.argv[4])
"""


def test_a_publish_killed_midway_leaves_a_consistent_folder_and_resumes(tmp_path: Path) -> None:
    con, log = _signed_log(tmp_path / "g.duckdb", 1000)
    out = tmp_path / "tlog"
    publish(con, out, fleet.ORIGIN)
    _grow(log, 5000)
    con.close()
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_PUBLISH, str(tmp_path / "g.duckdb"), str(out), "9", fleet.ORIGIN],
        capture_output=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    assert killed.returncode == -9, killed.stderr
    assert (out / ".staging").exists()  # the kill left its staging folder behind ...
    first = check_published(out, TRUST)
    assert first.passed and first.size == 1000  # ... but the folder still serves the old checkpoint, whole
    assert (out / "tile/0/004").exists() and not (out / "tile/0/019.p/136").exists()  # some new tiles, not all
    con = duckdb.connect(str(tmp_path / "g.duckdb"))
    resumed = publish(con, out, fleet.ORIGIN)
    con.close()
    assert resumed.previous == 1000 and resumed.size == 5000
    assert check_published(out, TRUST).passed and not (out / ".staging").exists()
