"""``gpumeter audit verify``: check a bundle offline, trusting nothing in it but math.

Keys come from the caller (``--key``). Without one, the bundle's own ``keys/`` are used
and the result says so loudly (a bundle can carry any key). The checks, in order, each
refusal naming the member or entry:

1. the archive is safe to read (:mod:`audit.archive`: layout, paths, sizes, counts);
2. ``checkpoint`` is a signed note whose log signature verifies with a trusted key named
   after its origin, and whose body is a strict tlog-checkpoint (32-byte root, …);
3. every ``entries/<i>.json`` is a canonical entry and its ``.tlog-proof`` carries the
   same checkpoint, index ``i`` and a path to the root (shared subtrees checked once);
4. every document an entry names is present with that SHA-256, and nothing else is;
5. the last ``export`` entry commits to exactly the other entries present, to the SHA-256
   of ``policy.json``, ``VERIFY.md`` and the two reports, and to the previous checkpoint;
6. ``consistency.json`` proves that previous checkpoint — signed by a trusted key, or by
   one a trusted key's ``key_rotated`` entry names as its predecessor — is a prefix;
7. ``policy.json`` is the boundary every attestation names, and each row of
   ``report/sovereignty.csv`` is the latest attestation of its job.

:func:`verify_bundle` raises :class:`VerificationError`; :func:`check_bundle` returns a
:class:`BundleCheck` either way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785

from audit import report
from audit.archive import ENTRY, Limits, SafeZip
from audit.canonical import parse_entry
from audit.checkpoint import SignedCheckpoint, open_checkpoint, parse_checkpoint
from audit.entries import document_refs, meta
from audit.errors import AuditError, BundleError, EntryError, KeyFileError, VerificationError
from audit.merkle import HASH_SIZE, MAX_PROOF_HASHES, InclusionBatch, verify_consistency
from audit.note import Verifier, b64decode, decode_note, parse_note, parse_vkey
from audit.proof import parse_proof, verify_proof_against

REQUIRED = ("checkpoint", "policy.json", "VERIFY.md", "report/sovereignty.csv", "report/summary.md")
REPORT_FILES = ("VERIFY.md", "policy.json", "report/sovereignty.csv", "report/summary.md")


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

    @property
    def notice(self) -> str | None:
        if self.key_source == "bundle":
            return f"verified against the key in the bundle (fingerprint {', '.join(self.keys)}); pass --key to pin it"
        return None


@dataclass(frozen=True)
class BundleCheck:
    passed: bool
    result: VerifyResult | None
    failure: str | None = None
    member: str | None = None
    entry: int | None = None
    findings: tuple[str, ...] = field(default=())


def _at(member: str, exc: AuditError, entry: int | None = None) -> VerificationError:
    """The same failure, named after the bundle member it is about."""
    cls = BundleError if isinstance(exc, BundleError) else VerificationError
    return cls(exc.message, member=exc.member or member, entry=entry if entry is not None else exc.entry)


def _pinned(keys: Sequence[str]) -> list[Verifier]:
    out = []
    for k in keys:
        try:
            out.append(parse_vkey(k.strip()))
        except KeyFileError as exc:
            raise KeyFileError(f"--key is not a verifier key: {exc.message}") from exc
    return out


def _index(name: str) -> int:
    m = ENTRY.match(name)
    if m is None:
        raise BundleError("not an entry member", member=name)
    return int(m.group(1))


def _open_checkpoint(bundle: SafeZip, trusted: list[Verifier], origin: str | None) -> SignedCheckpoint:
    try:
        text = decode_note(bundle.read("checkpoint"))
        claimed = parse_checkpoint(parse_note(text).text).origin
        if origin is not None and claimed != origin:
            raise VerificationError(f"checkpoint origin {claimed!r} is not the expected {origin!r}")
        log_keys = [v for v in trusted if v.is_log_key]
        if not log_keys:
            raise VerificationError("no Ed25519 log key to verify with (cosignature keys cannot sign checkpoints)")
        signed = open_checkpoint(text, log_keys, origin=claimed)
    except AuditError as exc:
        raise _at("checkpoint", exc) from exc
    if not any(v.name == signed.checkpoint.origin for v in signed.log_keys):
        raise VerificationError("checkpoint is not signed by a key named after its origin", member="checkpoint")
    return signed


def _history(trusted: list[Verifier], rotations: list[tuple[str, str]]) -> list[Verifier]:
    """Trusted keys plus their predecessors named by logged ``key_rotated`` entries."""
    keys = {v.vkey: v for v in trusted}
    changed = True
    while changed:
        changed = False
        for new, old in rotations:
            if new in keys and old not in keys:
                try:
                    keys[old] = parse_vkey(old)
                except KeyFileError:
                    continue
                changed = True
    return list(keys.values())


def _check_consistency(
    bundle: SafeZip,
    signed: SignedCheckpoint,
    trusted: list[Verifier],
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
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"not UTF-8 JSON: {exc}", member=name) from exc
    if not isinstance(doc, dict) or set(doc) != {"old_checkpoint", "proof"}:
        raise BundleError('must be {"old_checkpoint": "<note>", "proof": [base64, ...]}', member=name)
    old_note, proof_b64 = doc["old_checkpoint"], doc["proof"]
    if not isinstance(old_note, str) or not isinstance(proof_b64, list):
        raise BundleError("old_checkpoint must be a string and proof a list", member=name)
    if len(proof_b64) > MAX_PROOF_HASHES:
        raise BundleError(f"proof holds {len(proof_b64)} hashes; at most {MAX_PROOF_HASHES}", member=name)
    try:
        proof = []
        for k, h in enumerate(proof_b64):
            if not isinstance(h, str):
                raise BundleError(f"proof hash {k} is not a string")
            value = b64decode(h, what=f"proof hash {k}")
            if len(value) != HASH_SIZE:
                raise BundleError(f"proof hash {k} is {len(value)} bytes, not {HASH_SIZE}")
            proof.append(value)
        if hashlib.sha256(old_note.encode("utf-8")).hexdigest() != expected.get("sha256"):
            raise VerificationError("old checkpoint is not the one the export entry names")
        old = open_checkpoint(old_note, [v for v in trusted if v.is_log_key], origin=signed.checkpoint.origin)
        if old.checkpoint.size != expected.get("size"):
            raise VerificationError("old checkpoint size differs from the export entry's")
        new = signed.checkpoint
        verify_consistency(old.checkpoint.size, new.size, old.checkpoint.root, new.root, proof)
    except AuditError as exc:
        raise _at(name, exc) from exc
    return old.checkpoint.size


def _check_report(bundle: SafeZip, attestations: list[tuple[int, dict[str, Any]]], policy_raw: bytes) -> str:
    try:
        policy = parse_entry_like(policy_raw)
    except AuditError as exc:
        raise _at("policy.json", exc) from exc
    policy_id = policy.get("id")
    if not isinstance(policy_id, str) or not isinstance(policy.get("countries"), list):
        raise BundleError("policy.json must name an id and its countries", member="policy.json")
    digest = hashlib.sha256(policy_raw).hexdigest()
    for i, e in attestations:
        if e.get("policy") != policy_id or e.get("policy_sha256", digest) != digest:
            raise VerificationError("attestation was made under another policy than policy.json", entry=i)
    name = "report/sovereignty.csv"
    try:
        rows = report.parse_sovereignty_csv(bundle.read(name))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"not UTF-8 CSV: {exc}", member=name) from exc
    if not rows or tuple(rows[0]) != report.CSV_COLUMNS:
        raise BundleError(f"header must be {','.join(report.CSV_COLUMNS)}", member=name)
    latest = report.latest_attestations(attestations)
    if len(rows) - 1 != len(latest):
        raise VerificationError(f"has {len(rows) - 1} job rows; the attestations give {len(latest)}", member=name)
    for row, (i, att) in zip(rows[1:], latest, strict=True):
        if row != report.csv_row(att):
            raise VerificationError(f"row for job {row[0] if row else '?'} differs from attestation {i}", member=name)
    return policy_id


def parse_entry_like(raw: bytes) -> dict[str, Any]:
    """A canonical JSON object (policy.json is canonical like entries, without type/time)."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"not UTF-8 JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BundleError("must be a JSON object")
    try:
        canonical = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise BundleError(f"cannot be canonicalised: {exc}") from exc
    if canonical != raw:
        raise BundleError("is not RFC 8785 canonical JSON")
    out: dict[str, Any] = value
    return out


def verify_bundle(
    path: Path,
    keys: Sequence[str] | None = None,
    *,
    origin: str | None = None,
    limits: Limits | None = None,
) -> VerifyResult:
    """Verify a bundle; raises :class:`VerificationError` naming the first member or entry that fails."""
    pinned = _pinned(keys or [])
    with SafeZip(Path(path), limits) as bundle:
        for name in REQUIRED:
            if not bundle.has(name):
                raise BundleError("missing member", member=name)
        bundle_keys: list[Verifier] = []
        for name in sorted(bundle.names("keys/")):
            try:
                bundle_keys.append(parse_vkey(bundle.read(name).decode("utf-8")))
            except (KeyFileError, UnicodeDecodeError) as exc:
                message = exc.message if isinstance(exc, KeyFileError) else "not UTF-8"
                raise BundleError(f"not a verifier key: {message}", member=name) from exc
        trusted = pinned or bundle_keys
        if not trusted:
            raise BundleError("no verifier key: pass --key (the bundle carries none)", member="keys/")
        signed = _open_checkpoint(bundle, trusted, origin)
        cp = signed.checkpoint
        batch = InclusionBatch(cp.size, cp.root)

        indices: set[int] = set()
        for name in bundle.names("entries/"):
            indices.add(_index(name))
        if not indices:
            raise BundleError("bundle holds no entries", member="entries/")
        refs: dict[str, tuple[str, int]] = {}
        attestations: list[tuple[int, dict[str, Any]]] = []
        rotations: list[tuple[str, str]] = []
        exports: list[tuple[int, dict[str, Any]]] = []
        months: list[tuple[int, dict[str, Any]]] = []
        for i in sorted(indices):
            jname, pname = f"entries/{i}.json", f"entries/{i}.tlog-proof"
            if not bundle.has(jname):
                raise BundleError("proof without its entry", member=pname, entry=i)
            if not bundle.has(pname):
                raise BundleError("entry without its tlog-proof", member=jname, entry=i)
            data = bundle.read(jname)
            try:
                p = parse_proof(bundle.read(pname))
                if p.index != i:
                    raise VerificationError(f"proof is for index {p.index}")
                verify_proof_against(p, data, signed, batch=batch)
            except AuditError as exc:
                raise _at(pname, exc, i) from exc
            try:
                entry = parse_entry(data)
                entry_refs = list(document_refs(entry)) if b'"document"' in data else []
            except EntryError as exc:
                raise _at(jname, exc, i) from exc
            for doc, digest in entry_refs:
                if refs.setdefault(doc, (digest, i))[0] != digest:
                    raise VerificationError(
                        f"names {doc} with another SHA-256 than entry {refs[doc][1]}", member=jname, entry=i
                    )
            kind = entry["type"]
            if kind == "job_attestation":
                attestations.append((i, entry))
            elif kind == "export":
                exports.append((i, entry))
            elif kind == "key_event" and entry.get("event") == "key_rotated":
                rotations.append((str(entry.get("key")), str(entry.get("previous"))))
            if kind != "key_event":
                months.append((i, entry))

        for name in sorted(bundle.names("documents/")):
            if name not in refs:
                raise BundleError("document no entry names", member=name)
            if hashlib.sha256(bundle.read(name)).hexdigest() != refs[name][0]:
                raise VerificationError(f"SHA-256 differs from the one entry {refs[name][1]} names", member=name)
        for name, (_, i) in sorted(refs.items()):
            if not bundle.has(name):
                raise BundleError(f"missing document named by entry {i}", member=name, entry=i)

        if not exports:
            raise BundleError("bundle holds no export entry")
        xi, export = max(exports, key=lambda t: t[0])
        others = sorted(indices - {xi})
        committed = export.get("entries") or {}
        if committed.get("count") != len(others) or committed.get("sha256") != report.entry_list_digest(others):
            raise VerificationError("the entries present differ from those the export entry lists", entry=xi)
        files = export.get("files") or {}
        for name in REPORT_FILES:
            if hashlib.sha256(bundle.read(name)).hexdigest() != files.get(name):
                raise VerificationError(f"SHA-256 differs from the one export entry {xi} names", member=name)
        month, tenant = export.get("month"), export.get("tenant")
        for i, e in months:
            try:
                info = meta(e)
            except (AuditError, KeyError) as exc:
                raise VerificationError(f"entry lacks a field its type needs: {exc}", entry=i) from exc
            earlier_inventory = info.entry_type == "inventory_snapshot" and tenant is None and info.month <= str(month)
            if (info.month != month and not earlier_inventory) or (tenant is not None and info.tenant != tenant):
                raise VerificationError(f"entry is outside the bundle's scope ({month}, {tenant})", entry=i)

        consistency_from = _check_consistency(
            bundle, signed, _history(trusted, rotations), export.get("previous_checkpoint")
        )
        policy_id = _check_report(bundle, attestations, bundle.read("policy.json"))
        latest = report.latest_attestations(attestations)
        return VerifyResult(
            origin=cp.origin,
            checkpoint_size=cp.size,
            root=cp.root,
            month=str(month),
            tenant=tenant,
            entries=len(indices),
            documents=len(refs),
            attestations=len(latest),
            outside=tuple(str(e.get("job_id")) for _, e in latest if e.get("in_eu") is not True),
            policy=policy_id,
            consistency_from=consistency_from,
            key_source="pinned" if pinned else "bundle",
            keys=tuple(v.fingerprint for v in signed.log_keys),
        )


def check_bundle(
    path: Path,
    keys: Sequence[str] | None = None,
    *,
    origin: str | None = None,
    limits: Limits | None = None,
) -> BundleCheck:
    """As :func:`verify_bundle`, returning the failure instead of raising it."""
    try:
        result = verify_bundle(path, keys, origin=origin, limits=limits)
    except VerificationError as exc:
        return BundleCheck(False, None, exc.explain(), exc.member, exc.entry, (exc.explain(),))
    return BundleCheck(True, result)
