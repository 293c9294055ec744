"""The largest signed checkpoint, kept beside the key: the log never signs a fork of it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import highwater
from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.entries import key_event
from audit.errors import KeyFileError, VerificationError
from audit.log import AuditLog
from audit.merkle import EMPTY_ROOT, MerkleTree
from audit.note import Signer
from gpumeter import store

ORIGIN = "gpumeter.example.eu/mark"
AT = datetime(2026, 10, 1, tzinfo=UTC)


def tree(n: int, seed: bytes = b"") -> MerkleTree:
    t = MerkleTree()
    for i in range(n):
        t.append(seed + b"%d" % i)
    return t


def test_check_extends_is_the_consistency_rule() -> None:
    t = tree(9)
    prior = highwater.TreeHead(5, t.root(5))
    highwater.check_extends(None, 3, t.root(3), [])
    highwater.check_extends(prior, 9, t.root(9), t.consistency_proof(5, 9))
    highwater.check_extends(prior, 5, t.root(5), [])
    highwater.check_extends(highwater.TreeHead(0, EMPTY_ROOT), 9, t.root(9), [])
    with pytest.raises(VerificationError, match="once signed a checkpoint of 5 entries but the store holds 4"):
        highwater.check_extends(prior, 4, t.root(4), [])
    with pytest.raises(VerificationError, match="not consistent"):
        highwater.check_extends(prior, 5, tree(5, b"x").root(), [])
    fork = tree(9, b"x")
    with pytest.raises(VerificationError, match="not consistent"):
        highwater.check_extends(prior, 9, fork.root(), fork.consistency_proof(5, 9))


def test_the_mark_follows_signing_and_refuses_a_restored_store(tmp_path: Path) -> None:
    mark = tmp_path / "keys" / "audit.key.largest-checkpoint"
    assert highwater.mark_path(tmp_path / "keys" / "audit.key") == mark
    signer = Signer(ORIGIN, Ed25519PrivateKey.generate())
    con = store.memory()
    log = AuditLog(con)
    log.append_many([key_event(at=AT, event="key_added", key=f"k{i}") for i in range(4)], at=AT)
    first = log.sign(signer, ORIGIN, at=AT, mark=mark)
    assert highwater.load(mark) == highwater.TreeHead(first.size, first.root)
    assert mark.read_text() == first.note
    log.append(key_event(at=AT, event="key_added", key="k4"), at=AT)
    second = log.sign(signer, ORIGIN, at=AT, mark=mark)
    assert highwater.load(mark) == highwater.TreeHead(second.size, second.root)
    # a store restored from before the second checkpoint: same key, fewer entries
    restored = store.memory()
    again = AuditLog(restored)
    again.append_many([key_event(at=AT, event="key_added", key=f"k{i}") for i in range(4)], at=AT)
    again.sign(signer, ORIGIN, at=AT)  # (no mark: the restored store's own first checkpoint)
    with pytest.raises(VerificationError, match=f"once signed a checkpoint of {second.size} entries"):
        again.sign(signer, ORIGIN, at=AT, mark=mark)
    again.append(key_event(at=AT, event="key_added", key="something else"), at=AT)
    again.append(key_event(at=AT, event="key_added", key="and more"), at=AT)
    with pytest.raises(VerificationError, match="not consistent"):
        again.sign(signer, ORIGIN, at=AT, mark=mark)
    assert highwater.load(mark) == highwater.TreeHead(second.size, second.root)  # unchanged by refusals
    # a mark that never moves backwards, and one that names two roots for a size
    highwater.record(mark, first.note)
    assert highwater.load(mark) == highwater.TreeHead(second.size, second.root)
    other = sign_checkpoint(Checkpoint(ORIGIN, second.size, bytes(32)), [signer])
    with pytest.raises(VerificationError, match=f"two different roots were signed for {second.size} entries"):
        highwater.record(mark, other)


def test_a_checkpoint_signed_in_a_callers_transaction_is_caught_up_at_the_next(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    signer = Signer(ORIGIN, Ed25519PrivateKey.generate())
    con = store.memory()
    log = AuditLog(con)
    with store.transaction(con):
        log.append(key_event(at=AT, event="key_added", key="a"), at=AT)
        inner = log.sign(signer, ORIGIN, at=AT, mark=mark)
    assert highwater.load(mark) is None  # not committed when sign returned: not recorded there
    log.append(key_event(at=AT, event="key_added", key="b"), at=AT)
    log.sign(signer, ORIGIN, at=AT, mark=mark)
    head = highwater.load(mark)
    assert head is not None and head.size == inner.size + 1


def test_a_damaged_mark_is_refused_not_ignored(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    mark.write_text("not a checkpoint\n")
    with pytest.raises(KeyFileError, match="damaged"):
        highwater.load(mark)
    signer = Signer(ORIGIN, Ed25519PrivateKey.generate())
    with pytest.raises(KeyFileError, match="damaged"):
        AuditLog(store.memory()).sign(signer, ORIGIN, at=AT, mark=mark)
