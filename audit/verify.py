"""``gpumeter audit verify``: check a bundle offline, trusting nothing in it but math.

One implementation of every check, streaming (memory holds the leaf hashes and a few
facts per entry, never the entries). In order, each refusal naming the member or entry:

1. the archive is safe to read (:class:`audit.archive.BundleReader`: layout, paths,
   sizes, compression ratios, counts) and holds the required members;
2. ``checkpoint`` is accepted by the :class:`audit.pinning.Trust` — a C2SP tlog-policy
   pinned from outside the bundle: a log key of the policy, named after the origin,
   signed it, and witness cosignatures meet the policy's quorum; the body is a strict
   tlog-checkpoint. With a TSA certificate pinned, ``checkpoint.tsr`` must be an RFC 3161
   token over the note as the log signed it, and its genTime is reported;
3. entries are read in index order a few thousand at a time, each hashed as a leaf and
   checked (:func:`audit.canonical.parse_entries`), and what later checks need is kept;
4. the tree is computed once (:class:`audit.proof.ProofTree`): it must reach the
   checkpoint's root, and every ``entries/<i>.tlog-proof`` must be the proof it gives for
   entry ``i`` (an optional ``extra`` line aside). A proof that is not is explained by
   parsing it: wrong index, another checkpoint, a malformed path, a path that does not
   lead to the root;
5. ``keys/`` holds exactly the keys the ``key_event`` entries name; every document an
   entry names is present with that SHA-256, and nothing else is;
6. the last ``export`` entry commits to exactly the other entries present, to the SHA-256
   of each report file (``policy.json``, ``VERIFY.md``, both reports, ``policy.txt``) and
   to the previous checkpoint; every entry is in the bundle's scope;
7. ``consistency.json`` proves that previous checkpoint — accepted by the trust, or
   signed by a key a trusted key's ``key_rotated`` entry names as its predecessor — is a
   prefix of this one; its bytes are exactly what the exporter writes for them;
8. ``policy.json`` is the boundary every attestation names, and ``report/sovereignty.csv``
   is exactly the text the latest attestation of each job gives.

Steps 3 and 8 live in :mod:`audit.verify_entries`, the trust in :mod:`audit.pinning`.
:func:`verify_bundle` raises :class:`VerificationError`; :func:`check_bundle` returns a
:class:`BundleCheck` either way. Whether the keys were pinned is in the result
(``key_source``): the CLI refuses a bundle verified only with its own keys.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress
from pathlib import Path
from typing import Any

from audit import report
from audit.archive import BundleReader, Limits
from audit.checkpoint import SignedCheckpoint
from audit.errors import AuditError, BundleError, KeyFileError, VerificationError
from audit.gcpause import gc_paused
from audit.merkle import HASH_SIZE, decompose_inclusion, verify_consistency
from audit.note import Verifier, b64decode, decode_note, parse_vkey
from audit.pinning import Trust, bundle_trust, pinned_keys
from audit.proof import ProofTree, TlogProof, parse_proof, root_of
from audit.verify_entries import Entries, check_report, member_json, named, read_entries

TIMESTAMP = "checkpoint.tsr"  # the RFC 3161 token of the checkpoint as the log signed it, when there is one
REQUIRED = ("checkpoint", "policy.json", "VERIFY.md", "report/sovereignty.csv", "report/summary.md")
REPORT_FILES = ("VERIFY.md", "policy.json", "policy.txt", "report/sovereignty.csv", "report/summary.md")
MAX_CONSISTENCY_HASHES = 63  # C2SP tlog-witness: at most 63 consistency proof lines


# ------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class VerifyResult:
    """What a verified bundle shows."""

    origin: str
    checkpoint_size: int
    root: bytes
    month: str
    tenant: str | None
    entries: int
    documents: int
    attestations: int
    outside: tuple[str, ...]
    policy: str
    consistency_from: int | None
    key_source: str  # "pinned" or "bundle"
    keys: tuple[str, ...]  # fingerprints of the keys whose signatures verified the checkpoint
    witnesses: tuple[str, ...] = ()  # key names of the witnesses whose cosignatures verified
    quorum: str = "none"  # the witness quorum the trust asked for, in words
    timestamp: datetime | None = None  # genTime of checkpoint.tsr, checked against the pinned TSA
    timestamped: bool = False  # the bundle carries checkpoint.tsr (checked or not)

    @property
    def pinned(self) -> bool:
        return self.key_source == "pinned"

    @property
    def notice(self) -> str | None:
        if not self.pinned:
            return f"verified against the key in the bundle (fingerprint {', '.join(self.keys)}); pass --key to pin it"
        if self.timestamped and self.timestamp is None:
            return "the bundle carries a time stamp (checkpoint.tsr); pass --tsa-cert to check it"
        return None


@dataclass(frozen=True)
class BundleCheck:
    passed: bool
    result: VerifyResult | None
    failure: str | None = None
    member: str | None = None
    entry: int | None = None
    findings: tuple[str, ...] = field(default=())


# ------------------------------------------------------------------------------- proofs


def _problem(bundle: BundleReader, i: int, entry: bytes, signed: SignedCheckpoint) -> VerificationError | None:
    """What is wrong with entry ``i``'s proof file, checked on its own: parsed, then its index,
    checkpoint and path (RFC 9162). This only explains a refusal: acceptance is the
    comparison with the tree (:func:`_check_proofs`)."""
    name = f"entries/{i}.tlog-proof"
    cp = signed.checkpoint
    try:
        proof = parse_proof(bundle.proof(i))
        if proof.index != i:
            return VerificationError(f"proof is for index {proof.index}", member=name, entry=i)
        if proof.checkpoint != signed.note:
            return VerificationError("tlog-proof carries a different checkpoint", member=name, entry=i)
        if root_of(proof, entry, cp.size) != cp.root:
            return VerificationError(
                f"inclusion proof for leaf {i} does not lead to the root of size {cp.size}", member=name, entry=i
            )
    except AuditError as exc:
        return named(name, exc, i)
    return None


def _refuse(bundle: BundleReader, i: int, entry: bytes, signed: SignedCheckpoint) -> VerificationError:
    name = f"entries/{i}.tlog-proof"
    problem = _problem(bundle, i, entry, signed)
    return problem or VerificationError(
        "is not the proof the checkpoint's tree gives for its entry", member=name, entry=i
    )


def _check_proofs(bundle: BundleReader, found: Entries, signed: SignedCheckpoint) -> None:
    """Step 4: the tree, computed once, reaches the checkpoint's root, and every proof file
    is the one it gives for its entry."""
    cp = signed.checkpoint
    indices = found.indices

    entry_bytes = bundle.entry
    beyond = [i for i in indices if i >= cp.size]
    if beyond:
        raise _refuse(bundle, beyond[0], entry_bytes(beyond[0]), signed)
    tree = ProofTree(cp.size, signed.note, indices, found.leaves)
    parsed: dict[int, TlogProof] = {}
    for need in tree.needs:  # subtrees without entries here: the hash a neighbour's proof names
        proof = parsed.get(need.index)
        if proof is None:
            try:
                proof = parsed[need.index] = parse_proof(bundle.proof(need.index))
            except AuditError as exc:
                raise named(f"entries/{need.index}.tlog-proof", exc, need.index) from exc
        if proof.index != need.index or len(proof.path) != sum(decompose_inclusion(need.index, cp.size)):
            raise _refuse(bundle, need.index, entry_bytes(need.index), signed)
        tree.give(need, proof.path[need.position])
    if tree.root != cp.root:
        for i in indices:
            problem = _problem(bundle, i, entry_bytes(i), signed)
            if problem is not None:
                raise problem
        raise VerificationError(
            "the entries and their proofs do not lead to the checkpoint's root", member="checkpoint"
        )
    for first, texts in tree.texts():
        run = indices[first : first + len(texts)]
        got = bundle.proofs(run)
        for k in compress(range(len(run)), map(operator.ne, got, texts)):
            if _without_extra(got[k]) != texts[k]:
                raise _refuse(bundle, run[k], entry_bytes(run[k]), signed)


def _without_extra(data: bytes) -> bytes | None:
    """A proof file without its optional (unauthenticated) ``extra`` line, if it has one."""
    head, sep, rest = data.partition(b"\n")
    line, sep2, tail = rest.partition(b"\n")
    if not (sep and sep2 and line.startswith(b"extra ")):
        return None
    try:
        b64decode(line[len(b"extra ") :].decode("ascii"), what="tlog-proof extra")
    except (AuditError, UnicodeDecodeError):
        return None
    return head + b"\n" + tail


# ------------------------------------------------------------------------ other members


def _bundle_keys(bundle: BundleReader) -> list[Verifier]:
    keys: list[Verifier] = []
    for name in sorted(bundle.names("keys/")):
        try:
            keys.append(parse_vkey(bundle.read(name).decode("utf-8")))
        except (KeyFileError, UnicodeDecodeError) as exc:
            message = exc.message if isinstance(exc, KeyFileError) else "not UTF-8"
            raise BundleError(f"not a verifier key: {message}", member=name) from exc
    return keys


def _check_keys(bundle: BundleReader, key_events: dict[str, int]) -> None:
    """``keys/`` holds exactly the keys the bundle's ``key_event`` entries name, as the exporter writes them."""
    expected: dict[str, bytes] = {}
    for vkey, i in key_events.items():
        try:
            expected[report.key_file_name(vkey)] = report.key_file(vkey)
        except KeyFileError as exc:
            raise VerificationError(f"key_event names no verifier key: {exc.message}", entry=i) from exc
    for name in sorted(bundle.names("keys/")):
        if expected.get(name) != bundle.read(name):
            raise BundleError("not a key the bundle's key_event entries name", member=name)
    for name in sorted(expected.keys() - set(bundle.names("keys/"))):
        raise BundleError("missing: a key_event entry names this key", member=name)


def _check_documents(bundle: BundleReader, refs: dict[str, tuple[str, int]]) -> None:
    for name in sorted(bundle.names("documents/")):
        if name not in refs:
            raise BundleError("document no entry names", member=name)
        if hashlib.sha256(bundle.read(name)).hexdigest() != refs[name][0]:
            raise VerificationError(f"SHA-256 differs from the one entry {refs[name][1]} names", member=name)
    for name, (_, i) in sorted(refs.items()):
        if not bundle.has(name):
            raise BundleError(f"missing document named by entry {i}", member=name, entry=i)


def _export_entry(bundle: BundleReader, found: Entries) -> dict[str, Any]:
    """The bundle's own (last) export entry, after checking what it commits to."""
    if not found.exports:
        raise BundleError("bundle holds no export entry")
    xi, export = max(found.exports, key=lambda t: t[0])
    others = [i for i in found.indices if i != xi]
    committed = export.get("entries") or {}
    if committed.get("count") != len(others) or committed.get("sha256") != report.entry_list_digest(others):
        raise VerificationError("the entries present differ from those the export entry lists", entry=xi)
    files = export.get("files") or {}
    for name in REPORT_FILES:
        if name not in files and name not in REQUIRED and not bundle.has(name):
            continue  # an optional file this bundle does not carry (older bundles: policy.txt)
        if hashlib.sha256(bundle.read(name)).hexdigest() != files.get(name):
            raise VerificationError(f"SHA-256 differs from the one export entry {xi} names", member=name)
    return export


def _check_scope(found: Entries, month: Any, tenant: Any) -> None:
    for (m, t, inventory), i in sorted(found.scopes.items(), key=lambda kv: kv[1]):
        earlier_inventory = inventory and tenant is None and m <= str(month)
        if (m != month and not earlier_inventory) or (tenant is not None and t != tenant):
            raise VerificationError(f"entry is outside the bundle's scope ({month}, {tenant})", entry=i)


def _history(trusted: Iterable[Verifier], rotations: list[tuple[str, str]]) -> list[Verifier]:
    """Keys that logged ``key_rotated`` entries name as predecessors of trusted keys."""
    keys = {v.vkey: v for v in trusted}
    older: list[Verifier] = []
    changed = True
    while changed:
        changed = False
        for new, old in rotations:
            if new in keys and old not in keys:
                try:
                    keys[old] = parse_vkey(old)
                except KeyFileError:
                    continue
                older.append(keys[old])
                changed = True
    return older


def _check_consistency(
    bundle: BundleReader,
    signed: SignedCheckpoint,
    trust: Trust,
    rotations: list[tuple[str, str]],
    expected: dict[str, Any] | None,
) -> int | None:
    name = "consistency.json"
    if expected is None:
        if bundle.has(name):
            raise VerificationError("the export entry names no previous checkpoint, yet one is present", member=name)
        return None
    if not bundle.has(name):
        raise VerificationError("missing: the export entry names a previous checkpoint", member=name)
    raw = bundle.read(name)
    doc = member_json(raw, name)
    if not isinstance(doc, dict) or set(doc) != {"old_checkpoint", "proof"}:
        raise BundleError('must be {"old_checkpoint": "<note>", "proof": [base64, ...]}', member=name)
    old_note, proof_b64 = doc["old_checkpoint"], doc["proof"]
    if not isinstance(old_note, str) or not isinstance(proof_b64, list):
        raise BundleError("old_checkpoint must be a string and proof a list", member=name)
    if len(proof_b64) > MAX_CONSISTENCY_HASHES:
        raise BundleError(f"proof holds {len(proof_b64)} hashes; at most {MAX_CONSISTENCY_HASHES}", member=name)
    try:
        proof = []
        for k, h in enumerate(proof_b64):
            if not isinstance(h, str):
                raise BundleError(f"proof hash {k} is not a string")
            value = b64decode(h, what=f"proof hash {k}")
            if len(value) != HASH_SIZE:
                raise BundleError(f"proof hash {k} is {len(value)} bytes, not {HASH_SIZE}")
            proof.append(value)
        if report.consistency_json(old_note, proof) != raw:
            raise BundleError("is not written as gpumeter writes it (every byte must be accounted for)")
        if hashlib.sha256(old_note.encode("utf-8")).hexdigest() != expected.get("sha256"):
            raise VerificationError("old checkpoint is not the one the export entry names")
        old = trust.with_predecessors(_history(trust.log_keys, rotations)).verify_checkpoint(old_note)
        if old.checkpoint.origin != signed.checkpoint.origin:
            raise VerificationError("old checkpoint is of another log")
        if old.checkpoint.size != expected.get("size"):
            raise VerificationError("old checkpoint size differs from the export entry's")
        new = signed.checkpoint
        verify_consistency(old.checkpoint.size, new.size, old.checkpoint.root, new.root, proof)
    except AuditError as exc:
        raise named(name, exc) from exc
    return old.checkpoint.size


# --------------------------------------------------------------------------------- main


def verify_bundle(
    path: Path,
    keys: Sequence[str] | None = None,
    *,
    origin: str | None = None,
    limits: Limits | None = None,
    trust: Trust | None = None,
) -> VerifyResult:
    """Verify a bundle; raises :class:`VerificationError` naming the first member or entry that fails.

    ``trust`` decides the checkpoint (default: the log keys ``keys``, no witness); with
    neither, the bundle's own ``keys/`` are used and the result says so (``key_source``).
    """
    pinned = trust if trust is not None else pinned_keys(keys, origin) if keys else None
    with gc_paused(), BundleReader(Path(path), limits) as bundle:
        return _verify(bundle, pinned, origin)


def _verify(bundle: BundleReader, pinned: Trust | None, origin: str | None) -> VerifyResult:
    for name in REQUIRED:
        if not bundle.has(name):
            raise BundleError("missing member", member=name)
    bundle_keys = _bundle_keys(bundle)
    trust: Trust
    if pinned is not None:
        trust = pinned
    elif bundle_keys:
        try:
            trust = bundle_trust(bundle_keys, origin)
        except AuditError as exc:
            raise named("keys/", exc) from exc
    else:
        raise BundleError("no verifier key: pass --key (the bundle carries none)", member="keys/")
    try:
        note = decode_note(bundle.read("checkpoint"))
        signed = trust.verify_checkpoint(note)
    except AuditError as exc:
        raise named("checkpoint", exc) from exc
    tsr = bundle.read(TIMESTAMP) if bundle.has(TIMESTAMP) else None
    try:
        stamped = trust.check_timestamp(note, tsr)
    except AuditError as exc:
        raise named(TIMESTAMP, exc) from exc

    found = read_entries(bundle)
    _check_proofs(bundle, found, signed)
    if found.first_error is not None:
        i, problem = found.first_error
        raise named(f"entries/{i}.json", problem, i)
    _check_keys(bundle, found.key_events)
    _check_documents(bundle, found.refs)
    export = _export_entry(bundle, found)
    _check_scope(found, export.get("month"), export.get("tenant"))
    consistency_from = _check_consistency(bundle, signed, trust, found.rotations, export.get("previous_checkpoint"))
    shown = check_report(bundle, found)
    cp = signed.checkpoint
    return VerifyResult(
        origin=cp.origin,
        checkpoint_size=cp.size,
        root=cp.root,
        month=str(export.get("month")),
        tenant=export.get("tenant"),
        entries=len(found.indices),
        documents=len(found.refs),
        attestations=shown.jobs,
        outside=shown.outside,
        policy=shown.policy,
        consistency_from=consistency_from,
        key_source=trust.source,
        keys=tuple(v.fingerprint for v in signed.log_keys),
        witnesses=tuple(v.name for v in signed.cosigners),
        quorum=trust.quorum,
        timestamp=stamped,
        timestamped=tsr is not None,
    )


def check_bundle(
    path: Path,
    keys: Sequence[str] | None = None,
    *,
    origin: str | None = None,
    limits: Limits | None = None,
    trust: Trust | None = None,
) -> BundleCheck:
    """As :func:`verify_bundle`, returning the failure instead of raising it."""
    try:
        result = verify_bundle(path, keys, origin=origin, limits=limits, trust=trust)
    except VerificationError as exc:
        return BundleCheck(False, None, exc.explain(), exc.member, exc.entry, (exc.explain(),))
    return BundleCheck(True, result)
