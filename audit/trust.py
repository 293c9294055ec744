"""Trust policies (C2SP ``tlog-policy``): which log keys, which witnesses, what quorum.

A policy says when a checkpoint is to be believed: signed by one of its ``log`` keys, and
cosigned by witnesses so that its ``quorum`` holds. The file is line based::

    log <vkey> [<url>]
    witness <name> <vkey> [<url>]
    group <name> <k|any|all> <member>...
    quorum <name|none>

Items are separated by spaces and tabs only; blank lines and ``#`` comment lines are
ignored. Witnesses and groups share one namespace; ``none`` is predefined and may only be
the quorum. A group may name only witnesses and groups defined on earlier lines (so there
are no cycles), each at most once, and a name may belong to one group only (each witness
counts towards the quorum in one way). ``k`` is decimal, ``1 <= k <= n``. Exactly one
quorum line. Two keys wrapping the same public key are refused anywhere in the file (a
witness that is the log itself, or one witness under two names, is no independent check).

gpumeter reads the file as UTF-8 (names are compared as exact strings), allows only tab
and newline among control characters, and bounds it: at most :data:`MAX_POLICY_BYTES`
bytes and :data:`MAX_NAMES` logs, witnesses and groups. Every refusal is one
:class:`~audit.errors.TrustPolicyError` naming the source and line.

:meth:`TrustPolicy.check_checkpoint` returns a frozen result (which log key signed, which
witnesses cosigned and when, whether the quorum holds); :meth:`TrustPolicy.verify_checkpoint`
raises :class:`~audit.errors.VerificationError` for gates. :func:`build_policy` makes a
policy from ``--key/--witness/--quorum`` options or from configuration, and
:meth:`TrustPolicy.format` writes the file a bundle ships as ``policy.txt``.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from audit.checkpoint import parse_checkpoint
from audit.errors import KeyFileError, TrustPolicyError, VerificationError
from audit.note import SIG_COSIGNATURE_V1, SIG_ED25519, Verifier, open_note, parse_vkey

NONE = "none"
MAX_POLICY_BYTES = 64 * 1024
MAX_NAMES = 256
MAX_COSIGNATURE_TIME = (1 << 63) - 1
_FIELDS = re.compile(r"[ \t]+")
_BAD_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_K = re.compile(r"^[1-9][0-9]{0,3}$")
_QUORUM_GROUP = "witnesses"


@dataclass(frozen=True)
class LogKey:
    verifier: Verifier
    url: str | None = None


@dataclass(frozen=True)
class Witness:
    name: str
    verifier: Verifier
    url: str | None = None


@dataclass(frozen=True)
class Group:
    name: str
    threshold: int
    members: tuple[str, ...]

    def spelled(self) -> str:
        """``all``, ``any`` or ``k`` as written in a policy file."""
        n = len(self.members)
        return "all" if self.threshold == n else "any" if self.threshold == 1 else str(self.threshold)


@dataclass(frozen=True)
class Cosigned:
    """One valid witness cosignature: the witness's policy name, its vkey, and its time."""

    name: str
    vkey: str
    time: datetime


@dataclass(frozen=True)
class CheckpointCheck:
    """What a policy makes of one signed checkpoint."""

    passed: bool
    findings: tuple[str, ...]
    origin: str | None = None
    size: int | None = None
    root: bytes | None = None
    log_keys: tuple[str, ...] = ()  # vkeys of the log keys whose signature verified
    cosignatures: tuple[Cosigned, ...] = ()
    quorum_met: bool = False
    quorum: str = ""

    @property
    def witnesses(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cosignatures)


@dataclass(frozen=True)
class TrustPolicy:
    logs: tuple[LogKey, ...]
    witnesses: tuple[Witness, ...]
    groups: tuple[Group, ...]
    quorum: str

    # ------------------------------------------------------------------ the quorum rule

    def satisfied(self, witnessed: Collection[str]) -> bool:
        """Whether the quorum holds when exactly the witnesses named in ``witnessed`` cosigned."""
        if self.quorum == NONE:
            return True
        known = {w.name for w in self.witnesses}
        done = {name for name in witnessed if name in known}
        for group in self.groups:  # members are defined before their group: one pass suffices
            if sum(1 for m in group.members if m in done) >= group.threshold:
                done.add(group.name)
        return self.quorum in done

    def describe_quorum(self) -> str:
        """The quorum in words, e.g. ``2 of w1, w2, w3`` or ``none``."""
        groups = {g.name: g for g in self.groups}

        def words(name: str) -> str:
            group = groups.get(name)
            if group is None:
                return name
            inner = ", ".join(words(m) for m in group.members)
            return f"{group.spelled()} of ({inner})" if len(group.members) > 1 else inner

        return NONE if self.quorum == NONE else words(self.quorum)

    # ------------------------------------------------------------------- checkpoints

    def check_checkpoint(self, note: str | bytes, *, origin: str | None = None) -> CheckpointCheck:
        """Open a signed checkpoint under this policy; never raises for a bad note."""
        quorum = self.describe_quorum()
        verifiers = [k.verifier for k in self.logs] + [w.verifier for w in self.witnesses]
        if not self.logs:
            return CheckpointCheck(False, ("the policy names no log key",), quorum=quorum)
        try:
            opened = open_note(note, verifiers)
            cp = parse_checkpoint(opened.text, origin=origin)
        except VerificationError as exc:
            return CheckpointCheck(False, (exc.message,), quorum=quorum)
        findings: list[str] = []
        log_keys = tuple(v.vkey for v in opened.verifiers if v.is_log_key and v.name == cp.origin)
        if not log_keys:
            findings.append(f"checkpoint of {cp.origin!r} has no valid signature by a log key of the policy")
        by_key = {w.verifier: w for w in self.witnesses}
        cosigned: list[Cosigned] = []
        for sig, verifier in opened.verified:
            witness = by_key.get(verifier)
            stamp = verifier.cosigned_at(sig.data)
            if witness is None or stamp is None:
                continue
            if not 0 < stamp <= MAX_COSIGNATURE_TIME:
                findings.append(f"witness {witness.name} cosigned with timestamp {stamp}")
                continue
            cosigned.append(Cosigned(witness.name, verifier.vkey, _posix(stamp)))
        met = self.satisfied({c.name for c in cosigned})
        if not met:
            names = ", ".join(c.name for c in cosigned) or "no witness"
            findings.append(f"witness quorum not met: {names} cosigned, the policy needs {quorum}")
        return CheckpointCheck(
            passed=not findings,
            findings=tuple(findings),
            origin=cp.origin,
            size=cp.size,
            root=cp.root,
            log_keys=log_keys,
            cosignatures=tuple(cosigned),
            quorum_met=met,
            quorum=quorum,
        )

    def verify_checkpoint(self, note: str | bytes, *, origin: str | None = None) -> CheckpointCheck:
        """As :meth:`check_checkpoint`, raising :class:`VerificationError` at the first finding."""
        result = self.check_checkpoint(note, origin=origin)
        if not result.passed:
            raise VerificationError(result.findings[0])
        return result

    # ---------------------------------------------------------------------- the file

    def format(self, comment: str | None = None) -> str:
        """The policy as a ``tlog-policy`` file (what a bundle ships as ``policy.txt``)."""
        lines = [f"# {line}".rstrip() for line in (comment or "").splitlines()]
        lines += [" ".join(filter(None, ("log", k.verifier.vkey, k.url))) for k in self.logs]
        lines += [" ".join(filter(None, ("witness", w.name, w.verifier.vkey, w.url))) for w in self.witnesses]
        lines += [" ".join(("group", g.name, g.spelled(), *g.members)) for g in self.groups]
        lines.append(f"quorum {self.quorum}")
        return "\n".join(lines) + "\n"


def _posix(stamp: int) -> datetime:
    try:
        return datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.max.replace(tzinfo=UTC)


# ----------------------------------------------------------------------------- parsing


class _Builder:
    """Collects definitions in order, enforcing every rule of the format as it goes."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.logs: list[LogKey] = []
        self.witnesses: list[Witness] = []
        self.groups: list[Group] = []
        self.names: set[str] = set()
        self.grouped: set[str] = set()
        self.keys: dict[bytes, str] = {}
        self.quorum: str | None = None
        self.line: int | None = None

    def fail(self, message: str, value: object = None) -> TrustPolicyError:
        return TrustPolicyError(message, source=self.source, line=self.line, value=value)

    def _key(self, text: str, sig_type: int, what: str) -> Verifier:
        try:
            verifier = parse_vkey(text)
        except KeyFileError as exc:
            raise self.fail(f"{what} key: {exc.message}", text[:80]) from exc
        if verifier.sig_type != sig_type:
            want = "0x01 (Ed25519 log signature)" if sig_type == SIG_ED25519 else "0x04 (Ed25519 cosignature)"
            raise self.fail(f"{what} key must be of type {want}", text[:80])
        earlier = self.keys.get(verifier.public_key)
        if earlier is not None:
            raise self.fail(f"{what} key wraps the same public key as {earlier}", text[:80])
        self.keys[verifier.public_key] = what
        return verifier

    def _new_name(self, name: str) -> None:
        if name == NONE:
            raise self.fail("'none' is reserved for 'quorum none'")
        if name in self.names:
            raise self.fail("name defined twice", name)
        if len(self.names) + len(self.logs) >= MAX_NAMES:
            raise self.fail(f"more than {MAX_NAMES} logs, witnesses and groups")
        self.names.add(name)

    def log(self, vkey: str, url: str | None) -> None:
        if len(self.names) + len(self.logs) >= MAX_NAMES:
            raise self.fail(f"more than {MAX_NAMES} logs, witnesses and groups")
        self.logs.append(LogKey(self._key(vkey, SIG_ED25519, "log"), url))

    def witness(self, name: str, vkey: str, url: str | None) -> None:
        self._new_name(name)
        self.witnesses.append(Witness(name, self._key(vkey, SIG_COSIGNATURE_V1, f"witness {name}"), url))

    def group(self, name: str, k: str, members: Sequence[str]) -> None:
        if not members:
            raise self.fail("a group needs at least one member", name)
        seen: set[str] = set()
        for member in members:
            if member == NONE:
                raise self.fail("'none' cannot be a group member")
            if member not in self.names:
                raise self.fail("group member is not a witness or group defined on an earlier line", member)
            if member in seen:
                raise self.fail("group lists a member twice", member)
            if member in self.grouped:
                raise self.fail("a name may be a member of one group only", member)
            seen.add(member)
        n = len(members)
        if k == "all":
            threshold = n
        elif k == "any":
            threshold = 1
        elif _K.match(k):
            threshold = int(k)
            if threshold > n:
                raise self.fail(f"group threshold {threshold} is larger than its {n} member(s)", name)
        else:
            raise self.fail("group threshold must be 'all', 'any' or a decimal k >= 1", k[:40])
        self._new_name(name)
        self.grouped.update(members)
        self.groups.append(Group(name, threshold, tuple(members)))

    def set_quorum(self, name: str) -> None:
        if self.quorum is not None:
            raise self.fail("a policy has exactly one quorum line; this is a second")
        if name != NONE and name not in self.names:
            raise self.fail("quorum names no witness or group defined on an earlier line", name)
        self.quorum = name

    def build(self) -> TrustPolicy:
        if self.quorum is None:
            self.line = None
            raise self.fail("the policy has no quorum line ('quorum none' if no witness is required)")
        return TrustPolicy(tuple(self.logs), tuple(self.witnesses), tuple(self.groups), self.quorum)


def parse_policy(data: str | bytes, *, source: str = "policy") -> TrustPolicy:
    """A ``tlog-policy`` file; raises :class:`TrustPolicyError` naming ``source`` and the line."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    b = _Builder(source)
    if len(raw) > MAX_POLICY_BYTES:
        raise b.fail(f"a policy file is at most {MAX_POLICY_BYTES} bytes; this one has {len(raw)}")
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        b.line = number
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise b.fail(f"not valid UTF-8 at byte {exc.start}") from exc
        bad = _BAD_CHAR.search(line)
        if bad is not None:
            raise b.fail(f"control character U+{ord(bad.group()):04X} (only tab and newline are allowed)")
        fields = [f for f in _FIELDS.split(line.strip(" \t")) if f]
        if not fields or fields[0].startswith("#"):
            continue
        keyword, args = fields[0], fields[1:]
        if keyword == "log" and len(args) in (1, 2):
            b.log(args[0], args[1] if len(args) == 2 else None)
        elif keyword == "witness" and len(args) in (2, 3):
            b.witness(args[0], args[1], args[2] if len(args) == 3 else None)
        elif keyword == "group" and len(args) >= 2:
            b.group(args[0], args[1], args[2:])
        elif keyword == "quorum" and len(args) == 1:
            b.set_quorum(args[0])
        elif keyword in ("log", "witness", "group", "quorum"):
            usage = {
                "log": "log <vkey> [<url>]",
                "witness": "witness <name> <vkey> [<url>]",
                "group": "group <name> <k|any|all> <member>...",
                "quorum": "quorum <name|none>",
            }[keyword]
            raise b.fail(f"expected '{usage}'")
        else:
            raise b.fail("unknown line: expected log, witness, group or quorum", keyword[:40])
    return b.build()


# ---------------------------------------------------------------------------- building


@dataclass(frozen=True)
class WitnessSpec:
    """A witness as options or configuration give it: a policy name, a vkey, maybe a URL."""

    name: str
    vkey: str
    url: str | None = None


def build_policy(
    log_vkeys: Sequence[str],
    witnesses: Sequence[WitnessSpec | str] = (),
    quorum: int | None = None,
    *,
    source: str = "options",
) -> TrustPolicy:
    """A policy from log keys, witnesses and a count: ``quorum`` of the witnesses must cosign.

    A witness given as a bare vkey is named by its key name. ``quorum=None`` means all the
    witnesses; ``0`` means none. Errors name ``source`` (e.g. ``--witness`` or the config file).
    """
    b = _Builder(source)
    specs = [w if isinstance(w, WitnessSpec) else WitnessSpec(_key_name(w), w) for w in witnesses]
    for vkey in log_vkeys:
        b.log(vkey.strip(), None)
    for spec in specs:
        if not spec.name or _FIELDS.search(spec.name) or _BAD_CHAR.search(spec.name):
            raise b.fail("a witness name must be non-empty, without spaces or control characters", spec.name)
        b.witness(spec.name, spec.vkey.strip(), spec.url)
    n = len(specs)
    k = n if quorum is None else quorum
    if not 0 <= k <= n:
        raise b.fail(f"quorum {k} is not between 0 and the {n} witness(es) given", k)
    if k == 0:
        b.set_quorum(NONE)
    elif n == 1:
        b.set_quorum(specs[0].name)
    else:
        group = _QUORUM_GROUP
        while group in b.names:
            group += "-quorum"
        b.group(group, str(k), [s.name for s in specs])
        b.set_quorum(group)
    return b.build()


def _key_name(vkey: str) -> str:
    return vkey.strip().split("+", 1)[0]
