"""What the verifier trusts, pinned from outside the bundle: log keys, witnesses, a TSA.

:class:`Trust` is the verifier's one seam for deciding a checkpoint. Its implementation,
:class:`PolicyTrust`, is a C2SP tlog-policy (:class:`audit.trust.TrustPolicy`, the one
parser and quorum rule) plus, optionally, a pinned TSA certificate. Every way of pinning
becomes one: ``--key`` (and ``--witness``/``--quorum``) through
:func:`audit.trust.build_policy`, ``--policy FILE`` through :func:`audit.trust.parse_policy`,
the key ring and witnesses of a ``gpumeter.toml`` through :func:`audit.cosign.trust_policy`.

A checkpoint is accepted when the policy accepts it: a log key of the policy, named after
the checkpoint's origin, signed it, and the witnesses that cosigned it meet the quorum.
The *previous* checkpoint of ``consistency.json`` needs only a log signature (by a pinned
key or a predecessor it names in ``key_rotated`` entries): the witnesses vouch for the
current checkpoint, having checked that it extends everything they saw before.

The bundle's own ``keys/`` make a trust too (``source == "bundle"``), for showing what
they say; the command line never exits 0 on it. ``policy.txt`` in a bundle is never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from audit.checkpoint import SignedCheckpoint, open_checkpoint
from audit.errors import KeyFileError, TrustPolicyError, VerificationError
from audit.note import Note, Verifier, parse_note, parse_vkey
from audit.timestamp import verify_timestamp
from audit.trust import TrustPolicy, WitnessSpec, build_policy


class Trust(Protocol):
    """What decides that a checkpoint note is the log's.

    ``verify_checkpoint`` returns the opened checkpoint or raises :class:`VerificationError`.
    ``with_predecessors`` is a trust accepting a log signature by the pinned keys or by
    ``keys`` (rotated-away keys that logged ``key_rotated`` entries name), with no witness
    quorum: for the previous checkpoint of ``consistency.json``. ``check_timestamp`` gives
    the genTime of the checkpoint's RFC 3161 token when a TSA is pinned (None when none
    is). ``source`` is ``"pinned"``, or ``"bundle"`` when the keys came from the bundle.
    """

    @property
    def source(self) -> str: ...

    @property
    def log_keys(self) -> tuple[Verifier, ...]: ...

    @property
    def quorum(self) -> str: ...

    def verify_checkpoint(self, note: str) -> SignedCheckpoint: ...

    def with_predecessors(self, keys: Sequence[Verifier]) -> Trust: ...

    def check_timestamp(self, note: str, tsr: bytes | None) -> datetime | None: ...


@dataclass(frozen=True)
class PolicyTrust:
    """A tlog-policy, the origin expected (None: the note's own) and maybe a pinned TSA (PEM)."""

    policy: TrustPolicy
    origin: str | None = None
    tsa_cert: bytes | None = None
    source: str = "pinned"

    @property
    def log_keys(self) -> tuple[Verifier, ...]:
        return tuple(k.verifier for k in self.policy.logs)

    @property
    def quorum(self) -> str:
        return self.policy.describe_quorum()

    def verify_checkpoint(self, note: str) -> SignedCheckpoint:
        check = self.policy.check_checkpoint(note, origin=self.origin)
        if not check.passed or check.origin is None:
            raise VerificationError(check.findings[0] if check.findings else "checkpoint is not accepted")
        witnesses = [w.verifier for w in self.policy.witnesses]
        return open_checkpoint(note, self.log_keys, origin=check.origin, witnesses=witnesses)

    def with_predecessors(self, keys: Sequence[Verifier]) -> PolicyTrust:
        known = {v.vkey for v in self.log_keys}
        vkeys = [*known, *(k.vkey for k in keys if k.vkey not in known)]
        return PolicyTrust(build_policy(sorted(vkeys), source="the log keys"), self.origin, None, self.source)

    def check_timestamp(self, note: str, tsr: bytes | None) -> datetime | None:
        if self.tsa_cert is None:
            return None
        if tsr is None:
            raise VerificationError("a TSA certificate is pinned but the bundle carries no time stamp")
        return verify_timestamp(tsr, log_signed(note), self.tsa_cert)


def log_signed(note: str) -> str:
    """The note as the log signed it (what its time stamp covers): its text and the
    signature lines named after its origin, without the witnesses' cosignatures."""
    parsed = parse_note(note)
    origin = parsed.text.split("\n", 1)[0]
    return Note(parsed.text, tuple(s for s in parsed.signatures if s.name == origin)).format()


def pinned_keys(
    keys: Sequence[str],
    origin: str | None = None,
    *,
    witnesses: Sequence[str | WitnessSpec] = (),
    quorum: int | None = None,
    tsa_cert: bytes | None = None,
    source: str = "--key",
) -> PolicyTrust:
    """A :class:`PolicyTrust` from vkey strings (``--key``), witness vkeys (``--witness``)
    and how many of them must cosign (``--quorum``; None: all of them).

    A value that is no vkey at all is a :class:`KeyFileError`; keys that cannot pin this
    (a cosignature key given as a log key, a quorum larger than the witnesses) refuse the
    verification: :class:`VerificationError`."""
    for k in [*keys, *(w for w in witnesses if isinstance(w, str))]:
        try:
            parse_vkey(k.strip())
        except KeyFileError as exc:
            raise KeyFileError(f"{source} is not a verifier key: {exc.message}") from exc
    try:
        policy = build_policy([k.strip() for k in keys], witnesses, quorum, source=source)
    except TrustPolicyError as exc:
        raise VerificationError(exc.explain()) from exc
    return PolicyTrust(policy, origin, tsa_cert)


def bundle_trust(keys: Sequence[Verifier], origin: str | None) -> PolicyTrust:
    """The keys the bundle carries, no witness: what a forger would carry too."""
    return PolicyTrust(build_policy([v.vkey for v in keys], source="keys/"), origin, source="bundle")
