"""Publishing a checkpoint: sign the whole log, time-stamp it, have the witnesses cosign it.

:func:`publish_checkpoint` is the one way a checkpoint is published, whoever asks:
``gpumeter audit checkpoint`` and ``gpumeter serve`` (every ``[audit] checkpoint_every``).

1. The log is signed under the largest-signed-checkpoint guard (:mod:`audit.highwater`).
2. With ``[audit] tsa_url``, the note is time-stamped (RFC 3161, :mod:`audit.timestamp`)
   and the token kept.
3. With ``[audit] witnesses``, each witness that has not cosigned it yet is asked
   (:func:`audit.cosign.gather`).

The checkpoint is kept even when the time stamp or a witness fails: the failures come back
in :attr:`Published.problems`, and the next checkpoint is submitted to them again.
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
class Published:
    """A checkpoint once published: what it carries and what failed on the way."""

    checkpoint: StoredCheckpoint
    note: str  # the signed checkpoint with every cosignature gathered
    stamp: timestamp.Stamp | None  # None without [audit] tsa_url, or when the TSA failed
    gathered: cosign.Gathered | None  # None without [audit] witnesses
    problems: tuple[str, ...]  # the time stamp that failed, the witness quorum not met

    def shortfall(self) -> str:
        """One sentence on what failed (empty when nothing did)."""
        if not self.problems:
            return ""
        return (
            f"checkpoint size {self.checkpoint.size} is signed and kept, but: {'; '.join(self.problems)}; "
            "it is submitted again at the next checkpoint"
        )


def publish_checkpoint(
    con: duckdb.DuckDBPyConnection, cfg: Config, signer: Signer, *, at: datetime | None = None
) -> Published:
    """Sign, time-stamp and witness a checkpoint of the whole log now (see the module docstring)."""
    stored = AuditLog(con).sign(signer, cfg.audit.origin, at=at, mark=highwater.mark_path(cfg.audit.signing_key))
    problems: list[str] = []
    stamp = None
    if cfg.audit.tsa_url:
        try:
            stamp = timestamp.stamp_checkpoint(
                con, stored.id, stored.note, cfg.audit.tsa_url, tsa_cert=cfg.audit.tsa_cert, now=at
            )
        except VerificationError as exc:
            problems.append(f"time stamp: {exc.message}")
    gathered = None
    if cfg.audit.witnesses:
        gathered = cosign.gather(con, cfg, stored, now=at)
        if not gathered.quorum_met:
            problems.append(f"witness quorum not met (needs {gathered.quorum})")
    note = gathered.note if gathered is not None else stored.note
    return Published(stored, note, stamp, gathered, tuple(problems))
