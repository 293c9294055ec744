"""The log side of ``tlog-witness``: submit checkpoints to witnesses, keep their cosignatures.

``[audit] witnesses = [{ name, url, vkey }, …]`` and ``quorum = K`` in gpumeter.toml name
the witnesses (run by others) and how many must cosign. :func:`gather` submits a signed
checkpoint to every witness that has not cosigned it yet:

1. The body carries a consistency proof from the size the witness last said it holds
   (``audit_witness_submissions``; 0 when it never answered), taken from the log's own
   stored hashes (:meth:`audit.log.AuditLog.consistency_proof`).
2. ``409`` answers the size the witness actually holds: the log records it and resends
   once from there. A witness holding more entries than the checkpoint is a rollback or
   a fork, reported, never papered over.
3. ``200`` must carry a valid cosignature by *that* witness's key over *this* checkpoint;
   anything else (another key, a bad signature, no signature) is a failure.
4. Every submission is recorded, answered or not (500, time-out, refused connection): a
   witness that is down loses nothing — the checkpoint stays signed and stored, the
   failure is reported, and the next checkpoint is submitted to it again.

:func:`cosign_latest` is what the export path calls: the latest checkpoint with every
cosignature gathered so far merged into its note; :func:`cosigned_note` the same for any
stored checkpoint, without asking anyone (what ``audit publish`` writes). :func:`trust_policy` is the policy the
configuration implies, and :func:`policy_text` the ``policy.txt`` a bundle ships.

HTTP is bounded (:mod:`audit.posting`): time-outs, an overall deadline, answers larger than
64 KiB refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import requests

from audit import keys, posting, report
from audit.errors import AuditError, VerificationError
from audit.log import AuditLog, StoredCheckpoint, atomic
from audit.note import Note, Signature, open_note, parse_note
from audit.trust import TrustPolicy, WitnessSpec, build_policy
from audit.trust import Witness as PolicyWitness
from audit.witness import SIZE_CONTENT_TYPE, format_submission
from gpumeter import store
from gpumeter.config import Config

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 15.0
MAX_ANSWER_BYTES = 64 * 1024
_SIZE = re.compile(r"^(0|[1-9][0-9]{0,19})\n$")


@dataclass(frozen=True)
class WitnessFailure:
    """A witness that did not cosign: its name, vkey, HTTP status (None: no answer), why."""

    name: str
    vkey: str
    status: int | None
    detail: str

    def __str__(self) -> str:
        return f"witness {self.name}: {self.detail}"


@dataclass(frozen=True)
class Gathered:
    """One checkpoint after a round of submissions."""

    checkpoint_id: int
    size: int
    note: str  # the signed checkpoint with every cosignature gathered so far
    cosigned: tuple[str, ...]  # names of the witnesses whose cosignature it carries
    failures: tuple[WitnessFailure, ...]
    quorum_met: bool
    quorum: str


def trust_policy(cfg: Config) -> TrustPolicy:
    """The policy gpumeter.toml implies: the key ring's log keys, ``[audit] witnesses``, ``quorum``."""
    ring = keys.load_keyring(cfg.audit.signing_key)
    witnesses = [WitnessSpec(w.name, w.vkey, w.url) for w in cfg.audit.witnesses]
    return build_policy(
        [v.vkey for v in ring.verifiers(cfg.audit.origin)], witnesses, cfg.audit.quorum, source=str(cfg.path)
    )


def policy_text(cfg: Config) -> str:
    """The ``policy.txt`` a bundle ships: a C2SP tlog-policy file for this log."""
    return report.policy_txt(cfg.audit.origin, trust_policy(cfg)).decode("utf-8")


def merge_cosignatures(note: str, cosignatures: Sequence[str]) -> str:
    """``note`` with the given signature lines added: the log's lines first, as they were,
    then every other line once, sorted by key name and key ID (the signed-note format fixes
    no order; this one is stable, so the same cosignatures always give the same bytes)."""
    parsed = parse_note(note)
    extra = parse_note(parsed.text + "\n" + "".join(cosignatures)).signatures if cosignatures else ()
    seen = set(parsed.signatures)
    added = sorted({s for s in extra if s not in seen}, key=lambda s: (s.name, s.key_id, s.data))
    return Note(parsed.text, (*parsed.signatures, *added)).format()


# ------------------------------------------------------------------------------ storage


def cosigned_note(con: duckdb.DuckDBPyConnection, checkpoint: StoredCheckpoint) -> str:
    """``checkpoint``'s signed note with every witness cosignature the log keeps for it
    (each checked against its witness's key when it came): what ``audit publish`` serves."""
    return merge_cosignatures(checkpoint.note, sorted(_cosignatures(con, checkpoint.id).values()))


def _cosignatures(con: duckdb.DuckDBPyConnection, checkpoint_id: int) -> dict[str, str]:
    rows = store.run(con, "audit_cosignatures_of", {"checkpoint_id": checkpoint_id}).fetchall()
    return {str(vkey): str(line) for vkey, _, line, _ in rows}


def witness_size(con: duckdb.DuckDBPyConnection, vkey: str) -> int:
    """The size of the tree head the witness holds, as it last told (0 when it never did)."""
    size = store.run(con, "audit_witness_size", {"witness": vkey}).scalar()
    return int(size) if size is not None else 0


def _record(
    con: duckdb.DuckDBPyConnection,
    w: PolicyWitness,
    cp: StoredCheckpoint,
    old: int,
    status: int | None,
    outcome: str,
    size: int | None,
    detail: str,
    *,
    at: datetime,
) -> None:
    store.run(
        con,
        "audit_insert_witness_submission",
        {
            "witness": w.verifier.vkey,
            "name": w.name,
            "checkpoint_id": cp.id,
            "old_size": old,
            "status": status,
            "outcome": outcome,
            "witness_size": size,
            "detail": detail[:500],
            "at": at,
        },
    )


# ------------------------------------------------------------------------------ talking


def _post(session: requests.Session, url: str, body: bytes) -> tuple[int, str, bytes]:
    """POST an add-checkpoint body; (status, content type, at most 64 KiB + 1 of answer)."""
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    return posting.post(
        session,
        url + "/add-checkpoint",
        body,
        headers,
        limit=MAX_ANSWER_BYTES,
        connect_s=CONNECT_TIMEOUT_S,
        total_s=READ_TIMEOUT_S,
    )


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip().split("\n", 1)[0]
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def _cosignature(cp: StoredCheckpoint, w: PolicyWitness, answer: bytes) -> Signature:
    """The witness's valid cosignature of ``cp`` in a 200 answer, or :class:`VerificationError`."""
    if len(answer) > MAX_ANSWER_BYTES:
        raise VerificationError("its answer is larger than 64 KiB")
    try:
        text = answer.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VerificationError("its answer is not UTF-8") from exc
    if not text.endswith("\n") or not text.startswith("\u2014 "):
        raise VerificationError("its answer is not signature lines")
    opened = open_note(parse_note(cp.note).text + "\n" + text, [w.verifier])
    for sig, verifier in opened.verified:
        stamp = verifier.cosigned_at(sig.data)
        if verifier == w.verifier and stamp:
            return sig
    raise VerificationError(f"no cosignature with a non-zero time by its key {w.verifier.vkey}")


def submit(
    con: duckdb.DuckDBPyConnection,
    cp: StoredCheckpoint,
    w: PolicyWitness,
    session: requests.Session,
    *,
    now: datetime | None = None,
) -> Signature | WitnessFailure:
    """Ask one witness to cosign ``cp``; records every exchange; returns its cosignature line."""
    if not w.url:
        return WitnessFailure(w.name, w.verifier.vkey, None, "no URL to submit to")
    log = AuditLog(con)
    old = witness_size(con, w.verifier.vkey)
    for _ in range(3):
        at = now or datetime.now(UTC)
        if old > cp.size:
            detail = (
                f"it holds a tree of {old} entries, more than this checkpoint's {cp.size}: "
                "the log was rolled back or forked"
            )
            _record(con, w, cp, old, None, "failed", None, detail, at=at)
            return WitnessFailure(w.name, w.verifier.vkey, None, detail)
        proof = [] if old in (0, cp.size) else log.consistency_proof(old, cp.size)
        try:
            status, ctype, answer = _post(session, w.url, format_submission(old, proof, cp.note))
        except requests.Timeout:
            detail = "timed out"
            _record(con, w, cp, old, None, "failed", None, detail, at=at)
            return WitnessFailure(w.name, w.verifier.vkey, None, detail)
        except requests.RequestException as exc:
            detail = f"unreachable ({type(exc).__name__})"
            _record(con, w, cp, old, None, "failed", None, detail, at=at)
            return WitnessFailure(w.name, w.verifier.vkey, None, detail)
        if status == 200:
            try:
                sig = _cosignature(cp, w, answer)
            except VerificationError as exc:
                detail = f"answered 200 but {exc.message}"
                _record(con, w, cp, old, 200, "failed", None, detail, at=at)
                return WitnessFailure(w.name, w.verifier.vkey, 200, detail)
            stamp = w.verifier.cosigned_at(sig.data) or 0
            with atomic(con):
                _record(con, w, cp, old, 200, "cosigned", cp.size, f"cosigned at size {cp.size}", at=at)
                store.run(
                    con,
                    "audit_insert_cosignature",
                    {
                        "checkpoint_id": cp.id,
                        "witness": w.verifier.vkey,
                        "name": w.name,
                        "signature": sig.line(),
                        "cosigned_at": datetime.fromtimestamp(min(stamp, 253402300799), UTC),
                        "received_at": at,
                    },
                )
            return sig
        text = answer.decode("ascii", "replace")
        if status == 409 and ctype.split(";")[0].strip() == SIZE_CONTENT_TYPE and _SIZE.match(text):
            held = int(text)
            _record(con, w, cp, old, 409, "conflict", held, f"it holds {held} entries, not {old}", at=at)
            if held == old:
                break
            old = held
            continue
        detail = f"HTTP {status}: {_first_line(answer) or 'no reason given'}"
        _record(con, w, cp, old, status, "failed", None, detail, at=at)
        return WitnessFailure(w.name, w.verifier.vkey, status, detail)
    detail = "it kept answering 409 (stale size); giving up for this checkpoint"
    _record(con, w, cp, old, 409, "failed", None, detail, at=now or datetime.now(UTC))
    return WitnessFailure(w.name, w.verifier.vkey, 409, detail)


def gather(
    con: duckdb.DuckDBPyConnection,
    cfg: Config,
    checkpoint: StoredCheckpoint | None = None,
    *,
    session: requests.Session | None = None,
    now: datetime | None = None,
) -> Gathered:
    """Submit ``checkpoint`` (default: the latest) to each witness that has not cosigned it."""
    policy = trust_policy(cfg)
    cp = checkpoint or AuditLog(con).latest_checkpoint()
    if cp is None:
        raise AuditError("the log has no signed checkpoint yet; run `gpumeter audit checkpoint`")
    have = _cosignatures(con, cp.id)
    failures: list[WitnessFailure] = []
    owned = session is None
    http = session or requests.Session()
    try:
        for w in policy.witnesses:
            if w.verifier.vkey in have:
                continue
            outcome = submit(con, cp, w, http, now=now)
            if isinstance(outcome, WitnessFailure):
                failures.append(outcome)
            else:
                have[w.verifier.vkey] = outcome.line()
    finally:
        if owned:
            http.close()
    known = {w.verifier.vkey for w in policy.witnesses}
    note = merge_cosignatures(cp.note, [line for vkey, line in sorted(have.items()) if vkey in known])
    check = policy.check_checkpoint(note)
    return Gathered(
        checkpoint_id=cp.id,
        size=cp.size,
        note=note,
        cosigned=check.witnesses,
        failures=tuple(failures),
        quorum_met=check.quorum_met,
        quorum=check.quorum,
    )


def cosign_latest(con: duckdb.DuckDBPyConnection, cfg: Config) -> tuple[str, int, list[WitnessFailure]]:
    """For the export path: (the latest checkpoint with every cosignature gathered so far,
    how many valid cosignatures it carries, the witnesses that failed in this round)."""
    gathered = gather(con, cfg)
    return gathered.note, len(gathered.cosigned), list(gathered.failures)
