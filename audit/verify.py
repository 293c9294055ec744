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

Two implementations make the same checks. The *reference* reads member by member through
:class:`audit.archive.SafeZip` and checks entry after entry, so its refusal names the
first member or entry that fails. The *batched* one, tried first, reads the archive once
(:class:`audit.archive.ZipIndex`), hashes every entry, parses each with orjson and
re-encodes them all in one call to compare with their bytes, rebuilds the tree once and
compares every proof file with the one :class:`audit.proof.ExpectedProofs` says it must
be, checks each entry's type, time, numbers and scope, and compares
``report/sovereignty.csv`` with the text the attestations give. It can only accept a
bundle the reference accepts (it is stricter where that is simpler: no floats, ASCII
entries, no ``extra`` proof lines, plain zip form); on any doubt it gives up and the
reference runs, whose refusal is the one reported.

:func:`verify_bundle` raises :class:`VerificationError`; :func:`check_bundle` returns a
:class:`BundleCheck` either way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import operator
import re
from bisect import bisect_left
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, compress, repeat
from pathlib import Path
from typing import Any, Protocol

import orjson
import rfc8785

from audit import report
from audit.archive import ENTRY, Limits, SafeZip, Unsupported, ZipIndex
from audit.canonical import check_entry, parse_entry
from audit.checkpoint import SignedCheckpoint, open_checkpoint, parse_checkpoint
from audit.entries import check_month, document_refs, meta
from audit.errors import AuditError, BundleError, EntryError, KeyFileError, VerificationError
from audit.gcpause import gc_paused
from audit.merkle import HASH_SIZE, MAX_PROOF_HASHES, InclusionBatch, verify_consistency
from audit.note import Verifier, b64decode, decode_note, parse_note, parse_vkey
from audit.proof import ExpectedProofs, parse_proof, verify_proof_against
from gpumeter import csvcells

REQUIRED = ("checkpoint", "policy.json", "VERIFY.md", "report/sovereignty.csv", "report/summary.md")
REPORT_FILES = ("VERIFY.md", "policy.json", "report/sovereignty.csv", "report/summary.md")


class Bundle(Protocol):
    """What the checks read: :class:`SafeZip` (reference) or :class:`ZipIndex` (batched)."""

    def names(self, prefix: str = "") -> Iterator[str]: ...

    def has(self, name: str) -> bool: ...

    def read(self, name: str) -> bytes: ...


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
    verifier: str = field(default="reference", compare=False)  # "batched" or "reference" (module doc)

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


def _open_checkpoint(bundle: Bundle, trusted: list[Verifier], origin: str | None) -> SignedCheckpoint:
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
    bundle: Bundle,
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


def _check_report(bundle: Bundle, attestations: list[tuple[int, dict[str, Any]]], policy_raw: bytes) -> str:
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


def _bundle_keys(bundle: Bundle) -> list[Verifier]:
    keys: list[Verifier] = []
    for name in sorted(bundle.names("keys/")):
        try:
            keys.append(parse_vkey(bundle.read(name).decode("utf-8")))
        except (KeyFileError, UnicodeDecodeError) as exc:
            message = exc.message if isinstance(exc, KeyFileError) else "not UTF-8"
            raise BundleError(f"not a verifier key: {message}", member=name) from exc
    return keys


def _check_documents(bundle: Bundle, refs: dict[str, tuple[str, int]]) -> None:
    for name in sorted(bundle.names("documents/")):
        if name not in refs:
            raise BundleError("document no entry names", member=name)
        if hashlib.sha256(bundle.read(name)).hexdigest() != refs[name][0]:
            raise VerificationError(f"SHA-256 differs from the one entry {refs[name][1]} names", member=name)
    for name, (_, i) in sorted(refs.items()):
        if not bundle.has(name):
            raise BundleError(f"missing document named by entry {i}", member=name, entry=i)


def _export_entry(
    bundle: Bundle, indices: Collection[int], exports: list[tuple[int, dict[str, Any]]]
) -> tuple[int, dict[str, Any]]:
    """The bundle's own (last) export entry, after checking what it commits to."""
    if not exports:
        raise BundleError("bundle holds no export entry")
    xi, export = max(exports, key=lambda t: t[0])
    others = sorted(set(indices) - {xi})
    committed = export.get("entries") or {}
    if committed.get("count") != len(others) or committed.get("sha256") != report.entry_list_digest(others):
        raise VerificationError("the entries present differ from those the export entry lists", entry=xi)
    files = export.get("files") or {}
    for name in REPORT_FILES:
        if hashlib.sha256(bundle.read(name)).hexdigest() != files.get(name):
            raise VerificationError(f"SHA-256 differs from the one export entry {xi} names", member=name)
    return xi, export


def _result(
    signed: SignedCheckpoint,
    export: dict[str, Any],
    entries: int,
    documents: int,
    latest: list[tuple[int, Any]],
    policy_id: str,
    consistency_from: int | None,
    pinned: bool,
    verifier: str,
) -> VerifyResult:
    cp = signed.checkpoint
    return VerifyResult(
        origin=cp.origin,
        checkpoint_size=cp.size,
        root=cp.root,
        month=str(export.get("month")),
        tenant=export.get("tenant"),
        entries=entries,
        documents=documents,
        attestations=len(latest),
        outside=tuple(str(e.get("job_id")) for _, e in latest if e.get("in_eu") is not True),
        policy=policy_id,
        consistency_from=consistency_from,
        key_source="pinned" if pinned else "bundle",
        keys=tuple(v.fingerprint for v in signed.log_keys),
        verifier=verifier,
    )


def verify_bundle(
    path: Path,
    keys: Sequence[str] | None = None,
    *,
    origin: str | None = None,
    limits: Limits | None = None,
) -> VerifyResult:
    """Verify a bundle; raises :class:`VerificationError` naming the first member or entry that fails."""
    pinned = _pinned(keys or [])
    result = _verify_batched(Path(path), pinned, origin, limits)
    if result is None:
        result = _verify_reference(Path(path), pinned, origin, limits)
    return result


def _verify_reference(path: Path, pinned: list[Verifier], origin: str | None, limits: Limits | None) -> VerifyResult:
    """Member by member, entry by entry: the first failure, named."""
    with SafeZip(path, limits) as bundle:
        for name in REQUIRED:
            if not bundle.has(name):
                raise BundleError("missing member", member=name)
        bundle_keys = _bundle_keys(bundle)
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

        _check_documents(bundle, refs)
        _, export = _export_entry(bundle, indices, exports)
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
        return _result(
            signed, export, len(indices), len(refs), latest, policy_id, consistency_from, bool(pinned), "reference"
        )


# ------------------------------------------------------------------------------ batched

_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER  # 53-bit integers, as RFC 8785 needs


def _verify_batched(
    path: Path, pinned: list[Verifier], origin: str | None, limits: Limits | None
) -> VerifyResult | None:
    """The batched verifier (module doc); None when it cannot vouch for the bundle."""
    try:
        with gc_paused(), ZipIndex(path, limits) as bundle:
            return _batched(bundle, pinned, origin)
    except Exception:  # any doubt, hostile input included: the reference decides and names the failure
        return None


def _batched(bundle: ZipIndex, pinned: list[Verifier], origin: str | None) -> VerifyResult:
    for name in REQUIRED:
        if not bundle.has(name):
            raise Unsupported
    bundle_keys = _bundle_keys(bundle)  # parsed even when keys are pinned, as the reference does
    trusted = pinned or bundle_keys
    if not trusted:
        raise Unsupported
    signed = _open_checkpoint(bundle, trusted, origin)
    cp = signed.checkpoint
    entries, proofs = bundle.entry_json, bundle.entry_proof
    if not entries or entries.keys() != proofs.keys():
        raise Unsupported
    indices = sorted(entries)
    if indices[-1] >= cp.size:
        raise Unsupported
    datas = bundle.contents([entries[i] for i in indices])
    sha = hashlib.sha256
    leaves = [sha(b"\x00" + d).digest() for d in datas]

    loads = orjson.loads
    values = [loads(d) for d in datas]
    refs, attestations, rotations, exports, months = _batched_entries(indices, values, datas)

    expected = ExpectedProofs(cp.size, cp.root, signed.note, indices, leaves, lambda i: bundle.contents([proofs[i]])[0])
    if not expected.matches_root:
        raise Unsupported
    members = [proofs[i] for i in indices]
    for first, files in expected.chunks():
        if not bundle.all_equal(members[first : first + len(files)], files):
            raise Unsupported

    _check_documents(bundle, refs)
    _, export = _export_entry(bundle, indices, exports)
    _batched_scope(months, export.get("month"), export.get("tenant"))
    consistency_from = _check_consistency(
        bundle, signed, _history(trusted, rotations), export.get("previous_checkpoint")
    )
    policy_id, latest = _batched_report(bundle, attestations, bundle.read("policy.json"))
    return _result(
        signed, export, len(indices), len(refs), latest, policy_id, consistency_from, bool(pinned), "batched"
    )


def _no_float(value: object) -> bool:
    t = type(value)
    if t is str or t is bool or t is int or value is None:
        return True
    if t is list:
        return all(map(_no_float, value))  # type: ignore[call-overload]
    if t is dict:
        return all(map(_no_float, value.values()))  # type: ignore[attr-defined]
    return False


def _number_table() -> bytes:
    table = bytearray(range(256))
    for c in b"0123456789":
        table[c] = ord("0")
    for c in b".eE":
        table[c] = ord(".")
    for c in b":,[":
        table[c] = ord(":")
    return bytes(table)


# In compact JSON a number follows ":" (a member), "[" or "," (an element); orjson writes a
# float as digits, then "." or an exponent. Through _NUMBERS (dropping bytes no number holds,
# keeping quotes so that a string's characters never join a preceding ":"), every float is a
# match of _FLOAT; strings may match too, and those entries are then walked.
_NUMBERS = _number_table()
_NOT_NUMBERS = bytes(c for c in range(256) if c not in b'0123456789.eE:,[-"')
_FLOAT = re.compile(rb":-?0+\.")


_CHUNK = 4096  # entries re-encoded at once: buffers of a few MB are reused, not faulted in afresh


def _canonical_chunk(values: Sequence[Any], datas: Sequence[bytes]) -> bool:
    """Whether the entries are RFC 8785 canonical and might hold a float (then raises) or a document.

    Each entry parsed on its own as one JSON value; re-encoded together they must give back
    their bytes joined. For ASCII bytes with 53-bit integers and no float, orjson's
    encoding is RFC 8785's. A float is looked for in the bytes (see _FLOAT) and, where one
    may be, in the values.
    """
    joined = b"[" + b",".join(datas) + b"]"
    if not joined.isascii() or orjson.dumps(values, option=_CANONICAL) != joined:
        raise Unsupported
    if _FLOAT.search(joined.translate(_NUMBERS, _NOT_NUMBERS)) is not None:
        ends = list(accumulate(len(d) + 1 for d in datas))  # entry k ends before ends[k] + 1
        for m in _FLOAT.finditer(joined.translate(_NUMBERS)):
            if not _no_float(values[bisect_left(ends, m.start())]):
                raise Unsupported
    return b'"document"' in joined


def _batched_entries(
    indices: Sequence[int], values: Sequence[Any], datas: Sequence[bytes]
) -> tuple[
    dict[str, tuple[str, int]],
    list[tuple[int, dict[str, Any]]],
    list[tuple[str, str]],
    list[tuple[int, dict[str, Any]]],
    list[tuple[int, dict[str, Any]]],
]:
    """What the reference's entry loop gathers, for entries that pass its checks."""
    if set(map(type, values)) != {dict}:
        raise Unsupported
    documents = False
    for a in range(0, len(values), _CHUNK):
        documents |= _canonical_chunk(values[a : a + _CHUNK], datas[a : a + _CHUNK])
    get = dict.get
    kinds = list(map(get, values, repeat("type")))
    for kind, when in set(zip(kinds, map(get, values, repeat("time")), strict=True)):
        if not check_entry({"type": kind, "time": when}).passed:  # it reads nothing else
            raise Unsupported
    refs: dict[str, tuple[str, int]] = {}
    if documents:
        for i, e, data in zip(indices, values, datas, strict=True):
            if b'"document"' in data:
                for doc, digest in document_refs(e):
                    if refs.setdefault(doc, (digest, i))[0] != digest:
                        raise Unsupported
    rows = list(zip(indices, values, strict=True))
    attestations = [row for row, kind in zip(rows, kinds, strict=True) if kind == "job_attestation"]
    exports = [row for row, kind in zip(rows, kinds, strict=True) if kind == "export"]
    months = [row for row, kind in zip(rows, kinds, strict=True) if kind != "key_event"]
    rotations = [
        (str(e.get("key")), str(e.get("previous")))
        for (_, e), kind in zip(rows, kinds, strict=True)
        if kind == "key_event" and e.get("event") == "key_rotated"
    ]
    return refs, attestations, rotations, exports, months


def _month_of(e: dict[str, Any]) -> str:
    """:func:`audit.entries.meta`'s month, before it is checked."""
    m = e.get("month") or e.get("period")
    if m is None:
        m = str(e.get("window_start") if e["type"] == "usage_window" else e["time"])[:7]
    return m if type(m) is str else str(m)


def _batched_scope(months: list[tuple[int, dict[str, Any]]], month: Any, tenant: Any) -> None:
    """The reference's scope check, with :func:`audit.entries.meta`'s month and tenant inline."""
    values = [e for _, e in months]
    get = dict.get
    stated: list[Any] = list(map(get, values, repeat("month")))
    if set(map(type, stated)) - {str} or "" in stated:
        stated = [_month_of(e) for e in values]
    months_stated = set(stated)
    for m in months_stated:
        check_month(m)
    tenants = set(map(get, values, repeat("tenant")))
    if set(map(type, tenants)) - {str, type(None)} or (tenant is not None and tenants - {tenant}):
        raise Unsupported
    if months_stated - {month}:
        for m, e in zip(stated, values, strict=True):
            if m != month and not (e["type"] == "inventory_snapshot" and tenant is None and m <= str(month)):
                raise Unsupported


def _latest(attestations: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, Any]]:
    """:func:`report.latest_attestations`, at C speed when nothing supersedes anything."""
    get = dict.get
    values = [e for _, e in attestations]
    jobs: list[Any] = list(map(get, values, repeat("job_id")))
    if any(map(operator.contains, values, repeat("supersedes"))) or set(map(type, jobs)) - {str}:
        return report.latest_attestations(attestations)
    if all(map(operator.lt, jobs, jobs[1:])):  # one per job, already in job order
        return list(attestations)
    by_job = dict(zip(jobs, attestations, strict=True))  # ascending indices: the last one stays
    return [by_job[j] for j in sorted(by_job)]


_CSV_HEADER = ",".join(report.CSV_COLUMNS) + "\n"
_CSV_SPECIAL = re.compile(r'["\r\n\x00]')  # a row holding one needs quoting (or is refused)
# a cell starting with a spreadsheet formula trigger: report.csv_row marks it, so its row is re-derived there
_CSV_FORMULA = re.compile("(?:^|,)[" + "".join(map(re.escape, csvcells.TRIGGERS)) + "]", re.MULTILINE)
_TRUE_FALSE = ("false", "true")


_CSV_FIELDS = operator.itemgetter(
    "job_id", "tenant", "hosts", "countries", "data_locations", "data_countries", "in_eu", "findings"
)


def _csv_lines(latest: list[tuple[int, Any]]) -> tuple[list[str], set[int]]:
    """``report.csv_row`` of each attestation as a line of comma-joined cells, built column
    by column, and the rows (from 1) with a cell that needs quoting or starts with a formula
    trigger (those rows are re-derived by ``report.csv_row`` itself).

    ``str.join`` of a list of strings is ``csv_row``'s ``join``; a null or a non-string
    item (which ``csv_row`` would render with ``str()``) raises TypeError instead, and a
    missing field KeyError.
    """
    if not latest:
        return [_CSV_HEADER], set()
    jobs, tenants, hosts, countries, places, data_countries, in_eu, findings = zip(
        *map(_CSV_FIELDS, (e for _, e in latest)), strict=True
    )
    if set(map(type, jobs)) - {str} or set(map(type, tenants)) - {str, type(None)}:
        raise Unsupported
    join = ";".join
    rows = list(
        map(
            ",".join,
            zip(
                jobs,
                ["" if t is None else t for t in tenants],
                map(join, hosts),
                map(join, countries),
                map(join, places),
                map(join, data_countries),
                map(_TRUE_FALSE.__getitem__, map(operator.is_, in_eu, repeat(True))),
                map(join, findings),
                strict=True,
            ),
        )
    )
    # a cell with a comma gives its row more than 7; quotes and line breaks are rare: looked for at once
    quoted = set(compress(range(1, len(rows) + 1), map(operator.ne, map(str.count, rows, repeat(",")), repeat(7))))
    if _CSV_SPECIAL.search("\x1f".join(rows)):
        quoted.update(k for k, row in enumerate(rows, start=1) if _CSV_SPECIAL.search(row))
    if _CSV_FORMULA.search("\n".join(rows)):
        quoted.update(k for k, row in enumerate(rows, start=1) if _CSV_FORMULA.search(row))
    return [_CSV_HEADER, *rows], quoted


def _batched_report(
    bundle: ZipIndex, attestations: list[tuple[int, dict[str, Any]]], policy_raw: bytes
) -> tuple[str, list[tuple[int, Any]]]:
    """The reference's report check, with ``report/sovereignty.csv`` compared as text.

    A row whose cells hold no comma, quote, line break or NUL is its cells joined by
    commas, and ``csv.reader`` splits it back exactly; any other row is written by
    ``csv.writer`` (as the exporter does) and must parse back to its cells. A row ends
    outside quotes, so the reader reads the whole text as those rows, one after another.
    """
    policy = parse_entry_like(policy_raw)
    policy_id = policy.get("id")
    if not isinstance(policy_id, str) or not isinstance(policy.get("countries"), list):
        raise Unsupported
    digest = hashlib.sha256(policy_raw).hexdigest()
    values = [e for _, e in attestations]
    if set(map(dict.get, values, repeat("policy"))) - {policy_id}:
        raise Unsupported
    if set(map(dict.get, values, repeat("policy_sha256"), repeat(digest))) - {digest}:
        raise Unsupported
    latest = _latest(attestations)
    lines, quoted = _csv_lines(latest)
    if quoted:  # written as the exporter writes them; together they must parse back to their cells
        rows = sorted(quoted)
        cells = [report.csv_row(latest[k - 1][1]) for k in rows]
        if any("\r" in c or "\x00" in c for row in cells for c in row):
            raise Unsupported
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        ends = list(accumulate(writer.writerow(row) for row in cells))
        text = out.getvalue()
        if list(csv.reader(io.StringIO(text, newline=""))) != cells:
            raise Unsupported
        for k, start, end in zip(rows, [0, *ends], ends, strict=False):
            lines[k] = text[start : end - 1]
    text = "\n".join(lines[1:])
    csv_text = _CSV_HEADER + text + "\n" if len(lines) > 1 else _CSV_HEADER
    if max(map(len, lines)) > csv.field_size_limit() or csv_text.encode() != bundle.read("report/sovereignty.csv"):
        raise Unsupported
    return policy_id, latest


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
