"""The largest checkpoint the log ever signed, kept beside its key: no silent fork.

A log must never sign two checkpoints that cannot be proven consistent (C2SP
``tlog-checkpoint``). The store already refuses to sign a tree that does not extend its own
latest checkpoint, but a store restored from an old backup has forgotten its later
checkpoints and would sign a fork of what auditors and witnesses already hold. So the
signer also keeps, outside the database and beside the signing key, the largest signed
checkpoint (``<key>.largest-checkpoint``: the signed note, public) and refuses to sign a
tree head that is not provably an extension of it.

* :func:`check_extends` is the rule, pure: a size at least as large, and a consistency
  proof from the recorded tree head to the new one that verifies.
* :func:`guard` applies it before signing (the proof comes from the log's own stored
  hashes), first catching the file up with the store's latest checkpoint when that one is
  newer and consistent (a checkpoint signed inside a caller's transaction is recorded
  this way, at the next signing, if not by the caller after commit).
* :func:`record` replaces the file atomically and durably once a checkpoint is committed;
  it never moves the mark backwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from audit.checkpoint import parse_checkpoint
from audit.errors import KeyFileError, VerificationError
from audit.merkle import verify_consistency
from audit.note import MAX_NOTE_BYTES, parse_note
from gpumeter.files import atomic_write


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: bytes


class ConsistencySource(Protocol):
    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]: ...


def mark_path(key_path: Path) -> Path:
    """Where the largest signed checkpoint of the log whose key is at ``key_path`` is kept."""
    return key_path.with_name(key_path.name + ".largest-checkpoint")


def check_extends(prior: TreeHead | None, size: int, root: bytes, proof: Sequence[bytes]) -> None:
    """Raise unless the tree head (``size``, ``root``) extends ``prior`` by ``proof``."""
    if prior is None:
        return
    if size < prior.size:
        raise VerificationError(
            f"this log once signed a checkpoint of {prior.size} entries but the store holds {size}: "
            "restored from an old backup? Refusing to sign a fork of what was published"
        )
    try:
        verify_consistency(prior.size, size, prior.root, root, proof, allow_empty_old=True)
    except VerificationError as exc:
        raise VerificationError(
            f"the store's tree of {size} entries is not consistent with the checkpoint of {prior.size} entries "
            f"this log signed before ({exc.message}); refusing to sign a fork"
        ) from exc


def head_of(note: str) -> TreeHead:
    cp = parse_checkpoint(parse_note(note).text)
    return TreeHead(cp.size, cp.root)


def load(path: Path) -> TreeHead | None:
    """The recorded tree head; None when nothing was recorded yet."""
    try:
        data = path.read_bytes()[: MAX_NOTE_BYTES + 1]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyFileError(f"cannot read the largest signed checkpoint: {exc.strerror}", member=str(path)) from exc
    try:
        return head_of(data.decode("utf-8"))
    except (VerificationError, UnicodeDecodeError) as exc:
        raise KeyFileError(
            "the largest signed checkpoint is damaged; restore it, it guards against signing a fork",
            member=str(path),
        ) from exc


def _proof(log: ConsistencySource, prior: TreeHead, size: int) -> list[bytes]:
    return [] if prior.size in (0, size) else log.consistency_proof(prior.size, size)


def guard(path: Path, log: ConsistencySource, size: int, root: bytes, *, latest_note: str | None = None) -> None:
    """Before signing (``size``, ``root``): it must extend the largest checkpoint ever signed.

    ``latest_note`` is the store's latest signed checkpoint; when it is larger than the
    recorded one and consistent with it, it becomes the record first.
    """
    prior = load(path)
    if latest_note is not None:
        latest = head_of(latest_note)
        # A latest checkpoint larger than the tree is the caller's own finding (shrunken store).
        if (prior is None or latest.size > prior.size) and latest.size <= size:
            check_extends(prior, latest.size, latest.root, [] if prior is None else _proof(log, prior, latest.size))
            record(path, latest_note)
            prior = latest
    if prior is not None:
        check_extends(prior, size, root, _proof(log, prior, size) if size >= prior.size else [])


def record(path: Path, note: str) -> None:
    """Keep ``note`` as the largest signed checkpoint, unless a larger one is kept already."""
    head = head_of(note)
    prior = load(path)
    if prior is not None and prior.size > head.size:
        return
    if prior is not None and prior.size == head.size and prior.root != head.root:
        raise VerificationError(f"two different roots were signed for {head.size} entries")
    atomic_write(path, note.encode("utf-8"), durable=True)
