"""A signed checkpoint, sealed: time-stamped by the TSA and cosigned by the witnesses.

What ``gpumeter audit checkpoint`` and ``gpumeter audit export`` do after signing (and
committing) a checkpoint, as configured in ``[audit]``: ``tsa_url`` → an RFC 3161 token of
the note (:mod:`audit.timestamp`, kept in the store; a token stored before is reused);
``witnesses`` → the note submitted to each witness and every cosignature gathered merged
into it (:mod:`audit.cosign`). Neither may run inside the transaction that signs: a
witness that saw a checkpoint the log then rolled back would see a fork at the next one.

A failure never loses the checkpoint: it stays signed and stored, the failure is in
``problems`` (quorum not met, no time stamp) or ``warnings`` (each witness that failed),
and the next checkpoint is submitted again.

:func:`sign_and_seal` is the one way a checkpoint of the whole log is published on its own,
whoever asks: ``gpumeter audit checkpoint`` and ``gpumeter serve`` (every ``[audit]
checkpoint_every``): signed under the largest-signed-checkpoint guard
(:mod:`audit.highwater`), committed, then sealed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from audit import cosign, highwater, timestamp
from audit.errors import VerificationError
from audit.log import AuditLog, StoredCheckpoint
from audit.note import Signer
from gpumeter.config import Config


@dataclass(frozen=True)
class Sealed:
    size: int
    note: str  # the signed checkpoint with every cosignature gathered so far
    tsr: bytes | None  # the RFC 3161 token of ``StoredCheckpoint.note`` (without cosignatures)
    gen_time: datetime | None
    tsa_url: str | None
    cosigned: tuple[str, ...]  # names of the witnesses whose cosignature the note carries
    witnesses: int  # how many witnesses are configured
    warnings: tuple[str, ...]
    problems: tuple[str, ...]

    def shortfall(self) -> str:
        """One sentence on what failed (empty when nothing did)."""
        if not self.problems:
            return ""
        return (
            f"checkpoint size {self.size} is signed and kept, but: {'; '.join(self.problems)}; "
            "it is submitted again at the next checkpoint"
        )


def sign_and_seal(con: duckdb.DuckDBPyConnection, cfg: Config, signer: Signer, *, at: datetime | None = None) -> Sealed:
    """Sign a checkpoint of the whole log (at ``at``, default now), then seal it.

    ``con`` must not be inside a transaction: the checkpoint is committed before any
    witness sees it (see the module docstring)."""
    stored = AuditLog(con).sign(signer, cfg.audit.origin, at=at, mark=highwater.mark_path(cfg.audit.signing_key))
    return seal(con, cfg, stored, now=at)


def seal(
    con: duckdb.DuckDBPyConnection, cfg: Config, stored: StoredCheckpoint, *, now: datetime | None = None
) -> Sealed:
    """Time-stamp and cosign ``stored`` as ``cfg`` says (each a no-op when not configured);
    ``now`` is when the token and the cosignatures are recorded as received (default: now)."""
    problems: list[str] = []
    stamp = timestamp.timestamp_of(con, stored.id) if cfg.audit.tsa_url else None
    if cfg.audit.tsa_url and stamp is None:
        try:
            stamp = timestamp.stamp_checkpoint(
                con, stored.id, stored.note, cfg.audit.tsa_url, tsa_cert=cfg.audit.tsa_cert, now=now
            )
        except VerificationError as exc:
            problems.append(f"time stamp: {exc.message}")
    note = stored.note
    cosigned: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    if cfg.audit.witnesses:
        gathered = cosign.gather(con, cfg, stored, now=now)
        note, cosigned = gathered.note, gathered.cosigned
        warnings = tuple(str(f) for f in gathered.failures)
        if not gathered.quorum_met:
            problems.append(f"witness quorum not met (needs {gathered.quorum})")
    return Sealed(
        size=stored.size,
        note=note,
        tsr=stamp.tsr if stamp else None,
        gen_time=stamp.gen_time if stamp else None,
        tsa_url=stamp.tsa_url if stamp else None,
        cosigned=tuple(cosigned),
        witnesses=len(cfg.audit.witnesses),
        warnings=warnings,
        problems=tuple(problems),
    )
