"""The verifier's reading of a bundle's entries, and the report checked against them.

Part of :mod:`audit.verify` (its steps 3 and 8), apart to keep each module short:
:func:`read_entries` reads every entry in index order a batch at a time, hashes it as a
leaf, checks it (:func:`audit.canonical.parse_entries`) and keeps only the facts later
checks need; :func:`check_report` checks ``policy.json`` and ``report/sovereignty.csv``
against those facts. :func:`named` and :func:`member_json` are the verifier's way of
naming the member a refusal is about.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple

import orjson
import rfc8785

from audit import report
from audit.archive import BundleReader
from audit.canonical import parse_entries
from audit.entries import document_refs, scope
from audit.errors import AuditError, BundleError, EntryError, VerificationError

BATCH = 4096  # entries read, hashed and checked at once ...
BATCH_BYTES = 16 << 20  # ... or fewer, when their entries and proofs are large


def named(member: str, exc: AuditError, entry: int | None = None) -> VerificationError:
    """The same failure, named after the bundle member it is about."""
    cls = BundleError if isinstance(exc, BundleError) else VerificationError
    return cls(exc.message, member=exc.member or member, entry=entry if entry is not None else exc.entry)


def member_json(raw: bytes, name: str) -> Any:
    """A bundle member's JSON value (strict; deep nesting is a refusal, not a traceback)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"not UTF-8 JSON: {exc}", member=name) from exc


# ------------------------------------------------------------------------------ entries


Parsed = dict[str, Any] | EntryError  # an entry as parse_entries gives it back


@dataclass
class Entries:
    """What the checks after the proofs need from the entries (a few facts each)."""

    indices: list[int] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)
    first_error: tuple[int, EntryError] | None = None
    refs: dict[str, tuple[str, int]] = field(default_factory=dict)  # document -> (SHA-256, first entry)
    policies: dict[tuple[object, object], int] = field(default_factory=dict)  # (policy, policy_sha256) -> entry
    exports: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    rotations: list[tuple[str, str]] = field(default_factory=list)
    key_events: dict[str, int] = field(default_factory=dict)  # vkey a key_event names -> first entry
    scopes: dict[tuple[str, str | None, bool], int] = field(default_factory=dict)  # (month, tenant, inventory)
    # the job attestations, column by column: index, job id, supersedes, report line, inside the boundary
    att_index: list[int] = field(default_factory=list)
    att_job: list[str] = field(default_factory=list)
    att_supersedes: list[object] = field(default_factory=list)
    att_line: list[str] = field(default_factory=list)
    att_inside: list[bool] = field(default_factory=list)
    _scope_of: dict[tuple[str, str | None, str], tuple[str, str | None, bool]] = field(default_factory=dict)

    def fail(self, index: int, exc: EntryError) -> None:
        if self.first_error is None:
            self.first_error = (index, exc)

    def add(
        self, indices: Sequence[int], datas: Sequence[bytes], values: Sequence[dict[str, Any] | EntryError]
    ) -> None:
        """The facts of a batch of entries (``values``: :func:`audit.canonical.parse_entries` of ``datas``).

        Each entry's fields are taken in one step (:data:`_FIELDS`, absent ones as in
        :data:`_ABSENT`); an entry's document references are looked for only when its bytes
        name a document, its scope computed once per (month, tenant, type)."""
        documents = b'"document"' in b"".join(datas)
        atts: list[tuple[Any, ...]] = []
        att_index: list[int] = []
        scope_of, scopes, absent, pick = self._scope_of, self.scopes, _ABSENT, _PICK
        for index, data, entry in zip(indices, datas, values, strict=True):
            if type(entry) is not dict:
                self.fail(index, entry)  # type: ignore[arg-type]  # an EntryError, the only other kind
                continue
            row = pick({**absent, **entry})
            kind, month, tenant = row[_TYPE], row[_MONTH] or row[_PERIOD], row[_TENANT]
            try:
                refs = list(document_refs(entry)) if documents and b'"document"' in data else ()
                if kind == "key_event":
                    where = None
                elif type(month) is str and (tenant is None or type(tenant) is str):  # scope() depends on these alone
                    where = scope_of.get((month, tenant, kind))
                    if where is None:
                        where = scope_of[(month, tenant, kind)] = (*scope(entry), kind == "inventory_snapshot")
                else:
                    where = (*scope(entry), kind == "inventory_snapshot")
            except (EntryError, KeyError) as exc:
                message = exc.message if isinstance(exc, EntryError) else f"entry lacks a field its type needs: {exc}"
                self.fail(index, EntryError(message))
                continue
            for doc, digest in refs:
                if self.refs.setdefault(doc, (digest, index))[0] != digest:
                    self.fail(index, EntryError(f"names {doc} with another SHA-256 than entry {self.refs[doc][1]}"))
            if where is not None:
                scopes.setdefault(where, index)
            if kind == "job_attestation":
                atts.append(row)
                att_index.append(index)
            elif kind == "export":
                self.exports.append((index, entry))
            elif kind == "key_event":
                self.key_events.setdefault(str(entry.get("key")), index)
                if entry.get("event") == "key_rotated":
                    self.rotations.append((str(entry.get("key")), str(entry.get("previous"))))
        if atts:
            self._attestations(att_index, list(zip(*atts, strict=True)))

    def _attestations(self, indices: list[int], columns: list[tuple[Any, ...]]) -> None:
        """The facts of a batch's job attestations, given as the columns of their :data:`_FIELDS`."""
        names = _names(columns[_POLICY], unset=False)
        digests = _names(columns[_POLICY_SHA256], unset=True)
        pairs = zip(reversed(names), reversed(digests), strict=True)
        first = dict(zip(pairs, reversed(indices), strict=True))  # each pair's first entry
        for key, i in first.items():
            self.policies.setdefault(key, i)
        jobs = columns[_JOB]
        self.att_index += indices
        self.att_job += [str(None if j is _NO_JOB else j) for j in jobs]  # as str(entry.get("job_id"))
        self.att_supersedes += columns[_SUPERSEDES]
        self.att_inside += [v is True for v in columns[_IN_EU]]
        cells: list[Sequence[Any]] = list(columns[: len(report.CSV_COLUMNS)])
        cells[_JOB] = ["" if j is _NO_JOB else j for j in jobs]  # as report.CSV_DEFAULTS gives it
        self.att_line += report.csv_rows(cells)


_UNSET = object()  # an attestation without policy_sha256 (older entries): only its id is compared
_NOT_A_NAME = object()  # a policy or digest that is not a string (a list, an object): matches no policy.json
_NO_JOB = object()  # an attestation without job_id


def _names(column: tuple[Any, ...], *, unset: bool) -> tuple[Any, ...] | list[Any]:
    """A policy column with every value but a string (or, when ``unset``, :data:`_UNSET`) as
    :data:`_NOT_A_NAME`: hashable, and matching no policy.json unless a string."""
    if set(map(type, column)) <= {str}:
        return column
    return [v if type(v) is str or (unset and v is _UNSET) else _NOT_A_NAME for v in column]


# What the verifier takes from every entry: the report's columns first (audit.report.CSV_COLUMNS),
# then the type, scope and attestation fields; the value of a field an entry lacks.
_FIELDS = (*report.CSV_COLUMNS, "type", "month", "period", "policy", "policy_sha256", "supersedes")
_ABSENT = {**report.CSV_DEFAULTS, **dict.fromkeys(_FIELDS[len(report.CSV_COLUMNS) :]), "job_id": _NO_JOB}
_ABSENT["policy_sha256"] = _UNSET
_PICK = itemgetter(*_FIELDS)
_JOB, _TENANT, _IN_EU = (_FIELDS.index(f) for f in ("job_id", "tenant", "in_eu"))
_TYPE, _MONTH, _PERIOD, _POLICY, _POLICY_SHA256, _SUPERSEDES = (
    _FIELDS.index(f) for f in ("type", "month", "period", "policy", "policy_sha256", "supersedes")
)


def read_entries(bundle: BundleReader) -> Entries:
    """Step 3: every entry read in index order, hashed and checked, its facts kept."""
    found = Entries()
    order = bundle.entry_indices
    unpaired = bundle.unpaired()
    if unpaired is not None:
        i, no_entry = unpaired
        if no_entry:
            raise BundleError("proof without its entry", member=f"entries/{i}.tlog-proof", entry=i)
        raise BundleError("entry without its tlog-proof", member=f"entries/{i}.json", entry=i)
    if not order:
        raise BundleError("bundle holds no entries", member="entries/")
    sha = hashlib.sha256
    for chunk in bundle.chunks(order, BATCH, BATCH_BYTES):
        datas = bundle.entries(chunk)
        found.indices += chunk
        found.leaves += [sha(b"\x00" + d).digest() for d in datas]
        found.add(chunk, datas, parse_entries(datas))
    return found


class Report(NamedTuple):
    """What the checked report shows: the policy, the jobs it has a row for, those outside."""

    policy: str
    jobs: int
    outside: tuple[str, ...]


def check_report(bundle: BundleReader, found: Entries) -> Report:
    policy_raw = bundle.read("policy.json")
    policy = member_json(policy_raw, "policy.json")
    if not isinstance(policy, dict):
        raise BundleError("must be a JSON object", member="policy.json")
    try:
        canonical = rfc8785.dumps(policy)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise BundleError(f"cannot be canonicalised: {exc}", member="policy.json") from exc
    if canonical != policy_raw:
        raise BundleError("is not RFC 8785 canonical JSON", member="policy.json")
    policy_id = policy.get("id")
    if not isinstance(policy_id, str) or not isinstance(policy.get("countries"), list):
        raise BundleError("policy.json must name an id and its countries", member="policy.json")
    digest = hashlib.sha256(policy_raw).hexdigest()
    for (name, sha), i in sorted(found.policies.items(), key=lambda kv: kv[1]):
        if name != policy_id or sha not in (_UNSET, digest):
            raise VerificationError("attestation was made under another policy than policy.json", entry=i)
    chosen = report.latest_positions(found.att_index, found.att_job, found.att_supersedes)  # read in index order
    lines = found.att_line
    member = "report/sovereignty.csv"
    raw = bundle.read(member)
    view, pos = memoryview(raw), len(_CSV_HEADER)
    same = view[:pos] == _CSV_HEADER
    for lo in range(0, len(chosen), BATCH):  # compared a batch of rows at a time: never the whole text
        if not same:
            break
        text = "".join([lines[k] for k in chosen[lo : lo + BATCH]]).encode("utf-8")
        same = view[pos : pos + len(text)] == text
        pos += len(text)
    if not same or pos != len(raw):
        raise _csv_difference(raw, [(found.att_index[k], lines[k]) for k in chosen], member)
    outside = tuple(found.att_job[k] for k in chosen if not found.att_inside[k])
    return Report(policy_id, len(chosen), outside)


_CSV_HEADER = report.CSV_HEADER.encode("utf-8")


def _csv_difference(raw: bytes, latest: list[tuple[int, str]], member: str) -> VerificationError:
    """How ``report/sovereignty.csv`` differs from what the attestations give (named)."""
    try:
        rows = report.parse_sovereignty_csv(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        return BundleError(f"not UTF-8 CSV: {exc}", member=member)
    if not rows or tuple(rows[0]) != report.CSV_COLUMNS:
        return BundleError(f"header must be {','.join(report.CSV_COLUMNS)}", member=member)
    if len(rows) - 1 != len(latest):
        return VerificationError(f"has {len(rows) - 1} job rows; the attestations give {len(latest)}", member=member)
    for row, (index, line) in zip(rows[1:], latest, strict=True):
        if report.parse_sovereignty_csv(_CSV_HEADER + line.encode("utf-8"))[1:] != [row]:
            return VerificationError(
                f"row for job {row[0] if row else '?'} differs from attestation {index}", member=member
            )
    return VerificationError("differs from the text the attestations give", member=member)
