"""The human- and spreadsheet-readable files of a bundle, rendered from entries (pure).

``policy.json`` is the canonical JSON of the boundary (attestations carry its SHA-256);
``report/sovereignty.csv`` has one row per job — its latest attestation in the bundle —
with the columns docs/formats.md lists, lists joined by ``;``, a cell that a spreadsheet would run as a
formula prefixed with ``'`` (:func:`csv_rows`); ``report/summary.md`` and ``VERIFY.md``
are prose. The bundle's ``export`` entry names the SHA-256 of all four, so they are
covered by the log like everything else, and ``gpumeter audit verify`` also re-derives
the CSV rows from the attestations.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from itertools import compress
from operator import is_not, itemgetter
from typing import Any

import rfc8785

from audit.note import parse_vkey
from audit.policy import Policy
from audit.trust import TrustPolicy
from gpumeter.csvcells import TRIGGERS, text_cell

CSV_COLUMNS = ("job_id", "tenant", "hosts", "countries", "data_locations", "data_countries", "in_eu", "findings")


def policy_json(boundary: Policy) -> bytes:
    data: bytes = rfc8785.dumps(boundary.document())
    return data


def latest_of(attestations: Iterable[tuple[int, str, object]]) -> list[int]:
    """Per job, the index of the attestation no other one supersedes (the highest such).

    ``attestations`` are (index, job id, the entry's ``supersedes`` value); the result is
    in job order. The one rule for which attestation a report row shows.
    """
    rows = sorted(attestations, key=itemgetter(0))
    indices = [i for i, _, _ in rows]
    picked = latest_positions(indices, [j for _, j, _ in rows], [s for _, _, s in rows])
    return [indices[k] for k in picked]


def latest_positions(indices: Sequence[int], jobs: Sequence[str], supersedes: Sequence[object]) -> list[int]:
    """:func:`latest_of` of attestations given as columns in ascending index order: the
    positions of those it picks, in job order."""
    named = [s for s in filter(partial(is_not, None), supersedes) if isinstance(s, int)]
    keep = bytearray(b"\x01") * len(indices)
    for s in set(named):  # the attestations superseded: found by bisection, the indices being sorted
        k = bisect_left(indices, s)
        if k < len(indices) and indices[k] == s:
            keep[k] = 0
    # in index order: each job's highest stays
    latest = dict(compress(zip(jobs, range(len(indices)), strict=True), keep))
    return list(map(latest.__getitem__, sorted(latest)))


def latest_attestations(entries: Iterable[tuple[int, Mapping[str, Any]]]) -> list[tuple[int, Mapping[str, Any]]]:
    """Per job, the attestation no other attestation in ``entries`` supersedes, by job id."""
    atts = {i: e for i, e in entries if e.get("type") == "job_attestation"}
    return [(i, atts[i]) for i in latest_of((i, str(e.get("job_id")), e.get("supersedes")) for i, e in atts.items())]


def _join(value: Any) -> str:
    """A list's items joined by ``;`` (``str()`` of each); any other value as ``str()``, none as ""."""
    if value is None or value == [] or value == "":
        return ""
    if type(value) is not list:
        return str(value)
    try:
        return ";".join(value)  # the usual case, strings: the same text, at C speed
    except TypeError:
        return ";".join(str(v) for v in value)


def _joined(values: Sequence[Any]) -> list[str]:
    """:func:`_join` of each value (lists of strings joined at C speed)."""
    if set(map(type, values)) == {list}:
        try:
            return list(map(";".join, values))
        except TypeError:  # a list holding other than strings
            pass
    return [_join(v) for v in values]


def _texts(values: Sequence[Any]) -> Sequence[str]:
    """``str()`` of each value."""
    return values if set(map(type, values)) <= {str} else [str(v) for v in values]


CSV_DEFAULTS: dict[str, Any] = {**dict.fromkeys(CSV_COLUMNS), "job_id": ""}  # a field the attestation lacks


def csv_lines(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The lines ``report/sovereignty.csv`` holds for the attestations ``entries`` (each with its newline)."""
    return csv_rows([[e.get(key, absent) for e in entries] for key, absent in CSV_DEFAULTS.items()])


def csv_rows(fields: Sequence[Sequence[Any]]) -> list[str]:
    """The report's lines (each with its newline) from the attestations' values of
    :data:`CSV_COLUMNS`, one sequence per column, a field an attestation lacks given as in
    :data:`CSV_DEFAULTS`. The exporter writes these lines and the verifier re-derives them
    here: one rule for both.

    Every column is text: a cell a spreadsheet would run as a formula (a job id ``=cmd|…``)
    gets a leading ``'`` (:func:`gpumeter.csvcells.text_cell`), and :mod:`csv` with
    ``QUOTE_MINIMAL`` quotes a cell holding a comma, a quote or a line break. The lines are
    first written as the cells joined by commas; the cells are marked only when
    :func:`_may_start_a_formula` says one may need it, and a row holding a special character
    is written again by :mod:`csv`.
    """
    jobs, tenants, *lists, in_eu, findings = fields
    columns: list[Sequence[str]] = [
        _texts(jobs),
        _texts(["" if t is None else t for t in tenants]),
        *(_joined(column) for column in lists),
        ["true" if v is True else "false" for v in in_eu],
        _joined(findings),
    ]
    lines = [",".join(row) + "\n" for row in zip(*columns, strict=True)]
    if _may_start_a_formula(lines):
        columns = [list(map(text_cell, column)) for column in columns]
        lines = [",".join(row) + "\n" for row in zip(*columns, strict=True)]
    quoted: set[int] = set()
    for column in columns:
        text = "".join(column)
        if any(c in text for c in _CSV_SPECIALS):
            quoted.update(compress(range(len(column)), map(_CSV_SPECIAL.search, column)))
    for k in quoted:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow([column[k] for column in columns])
        lines[k] = out.getvalue()
    return lines


def _may_start_a_formula(lines: list[str]) -> bool:
    """False when no cell of ``lines`` (cells joined by commas, then a newline) starts with a
    formula trigger (:data:`gpumeter.csvcells.TRIGGERS`).

    Every cell starts the text or follows a comma or a newline (whatever its cells hold).
    So with a newline put first and the text mapped through :data:`_STARTS` (a trigger to
    ``=``, a comma or newline to ``,``, every other byte, UTF-8 beyond ASCII included, to
    ``x``), a cell can start with a trigger only where ``,=`` occurs."""
    text = ("\n" + "".join(lines)).encode("utf-8", "surrogatepass")
    return b",=" in text.translate(_STARTS)


_STARTS = bytes(ord("=") if chr(c) in TRIGGERS else ord(",") if chr(c) in ",\n" else ord("x") for c in range(256))
_CSV_SPECIALS = ',"\r\n'  # a cell holding one is quoted by csv.writer (QUOTE_MINIMAL)
_CSV_SPECIAL = re.compile(f"[{_CSV_SPECIALS}]")


CSV_HEADER = ",".join(CSV_COLUMNS) + "\n"


def sovereignty_csv(attestations: Sequence[tuple[int, Mapping[str, Any]]]) -> bytes:
    return (CSV_HEADER + "".join(csv_lines([e for _, e in attestations]))).encode("utf-8")


def parse_sovereignty_csv(data: bytes) -> list[list[str]]:
    """Rows of the CSV (header first); raises ValueError when it is not UTF-8 CSV."""
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    return [row for row in reader]


def _md(text: str) -> str:
    """Make a value safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def summary_md(
    *,
    origin: str,
    month: str,
    tenant: str | None,
    boundary: Mapping[str, Any],
    entries: Sequence[tuple[int, Mapping[str, Any]]],
    documents: Mapping[str, str],
    previous_size: int | None,
    key_fingerprints: Sequence[str],
) -> bytes:
    """``report/summary.md``: what the bundle holds and what it shows, for a reader."""
    scope = f"tenant {_md(tenant)}" if tenant is not None else "the whole log"
    lines = [
        f"# Sovereignty audit, {month}: {scope}",
        "",
        f"Log `{_md(origin)}`. Boundary **{_md(str(boundary.get('id')))}**: "
        f"{', '.join(str(c) for c in boundary.get('countries', []))}.",
        "",
        "Every file in this bundle is covered by the log's signed checkpoint: entries by their "
        "inclusion proofs, documents by the SHA-256 an entry names, and this summary, "
        "`policy.json`, `VERIFY.md` and `report/sovereignty.csv` by the SHA-256 the bundle's "
        "`export` entry names. See `VERIFY.md`.",
        "",
    ]
    atts = latest_attestations(entries)
    outside = [(i, e) for i, e in atts if e.get("in_eu") is not True]
    lines += [
        "## Jobs",
        "",
        f"{len(atts)} job(s) attested for {month}; {len(atts) - len(outside)} inside the boundary, "
        f"{len(outside)} outside.",
        "",
    ]
    if atts:
        lines += [
            "| job | tenant | GPU-seconds | countries | data countries | inside | entry |",
            "|---|---|---:|---|---|---|---:|",
        ]
        for i, e in atts:
            lines.append(
                f"| {_md(str(e.get('job_id')))} | {_md(str(e.get('tenant') or '-'))} "
                f"| {_md(str(e.get('gpu_seconds')))} "
                f"| {_md(', '.join(e.get('countries') or []) or '-')} "
                f"| {_md(', '.join(e.get('data_countries') or []) or '-')} "
                f"| {'yes' if e.get('in_eu') is True else '**no**'} | {i} |"
            )
        lines.append("")
    if outside:
        lines += ["### Findings", ""]
        for _, e in outside:
            for f in e.get("findings") or []:
                lines.append(f"- {_md(str(e.get('job_id')))}: {_md(str(f))}")
        lines.append("")
    counts = Counter(str(e.get("type")) for _, e in entries)
    lines += ["## Entries", "", "| type | count |", "|---|---:|"]
    lines += [f"| {_md(t)} | {n} |" for t, n in sorted(counts.items())]
    if entries:
        lines += ["", f"Indices {entries[0][0]} to {entries[-1][0]} (plus this bundle's `export` entry)."]
    lines += ["", "## Continuity", ""]
    if previous_size is None:
        lines.append("No earlier bundle: this is the log's first month, or no earlier month was exported.")
    else:
        lines.append(
            f"`consistency.json` proves the log of {previous_size} entries that the previous month's "
            "bundle carried is a prefix of this bundle's checkpoint: nothing was changed or removed since."
        )
    lines += ["", "## Keys", ""]
    lines += [f"- `{_md(fp)}`" for fp in key_fingerprints]
    if documents:
        lines += ["", "## Documents", "", "| file | SHA-256 |", "|---|---|"]
        lines += [f"| `{_md(n)}` | `{d}` |" for n, d in sorted(documents.items())]
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def verify_md(*, origin: str, month: str, tenant: str | None) -> bytes:
    """``VERIFY.md``: how to check the bundle with gpumeter and with standard tooling."""
    scope = f"tenant `{_md(tenant)}`" if tenant is not None else "the whole log"
    text = f"""# How to verify this bundle

Audit log `{_md(origin)}`, month {month}, {scope}.

Nothing in this bundle can tell you which key is the log's: a forger re-signing it would
replace `keys/` and `policy.txt` too. So pin, from outside the bundle:

- the log's verifier key (a C2SP *vkey*, `{_md(origin)}+<key ID>+<base64>`), from a channel
  the operator cannot change afterwards: every invoice prints its fingerprint;
- each witness's key (a cosignature vkey), from the witness itself: a witness is run by
  someone other than the operator and cosigns a checkpoint only if it extends every
  checkpoint it cosigned before, so the log cannot show different histories to different
  readers without a witness noticing;
- the certificate of the time-stamping authority, if the operator uses one, from that
  authority.

`policy.txt` shows the operator's own statement of all this as a C2SP tlog-policy file; it
is for convenience and comparison, never trusted.

## With gpumeter

    gpumeter audit verify bundle.zip --key '<vkey>'             # or --key FILE with the vkey(s)
    gpumeter audit verify bundle.zip --key '<vkey>' --witness '<witness vkey>' --witness '<…>' --quorum 2
    gpumeter audit verify bundle.zip --policy my-policy.txt --tsa-cert tsa.pem

- `--key` pins the log key; repeat it for a key the log rotated away from.
- `--witness` (repeatable) names a witness key, and `--quorum K` how many of them must have
  cosigned `checkpoint` (default: all of them).
- `--policy FILE` pins all of it at once as a C2SP tlog-policy: `log <vkey>` lines, `witness
  <name> <vkey>` lines, `group <name> <k|any|all> <member>…` lines and one `quorum` line. Write
  it yourself, or take `policy.txt` and compare every key in it with yours first.
- `--tsa-cert FILE` pins a time-stamping authority's certificate (PEM): `checkpoint.tsr`, an
  RFC 3161 token over the checkpoint as the log signed it, must then verify, and the output
  gives its time. Without a time stamp, the times in the entries are the operator's clock.

Exit status 0 means every signature, cosignature quorum, time stamp (when a certificate is
pinned), inclusion proof, consistency proof and SHA-256 below holds against what you pinned;
3 names the first entry or file that fails (a checkpoint signed by another key, a quorum not
met, a bad time stamp included); 4 means the bundle's checks hold but nothing outside it
pinned its key (the output shows the key's fingerprint): pass `--key` or `--policy`; 1 is
any other error (an unreadable file, a malformed policy). At the operator's site, the key
ring, `[audit] witnesses` and `quorum` of its `gpumeter.toml` pin them instead.

## By hand, with standard C2SP / RFC 6962 tools

1. `checkpoint` is a C2SP signed note holding a tlog-checkpoint: origin, tree size, base64
   RFC 6962 root. Check its Ed25519 signature with the vkey, e.g. Go
   `golang.org/x/mod/sumdb/note`: `note.Open(data, note.VerifierList(note.NewVerifier(vkey)))`,
   and that the origin line is `{_md(origin)}`. The witnesses' lines are C2SP
   tlog-cosignature/v1 signatures (type 0x04): an 8-byte big-endian time in seconds, then
   the witness key's Ed25519 signature of `cosignature/v1\\ntime <seconds>\\n` followed
   by the note's text.
2. Each `entries/<index>.json` is the exact entry bytes (RFC 8785 canonical JSON). Its leaf
   hash is `SHA-256(0x00 || bytes)`. `entries/<index>.tlog-proof` is a
   `c2sp.org/tlog-proof@v1` file: the `index`, the inclusion path (base64 hashes, leaf's
   sibling first) and the same signed checkpoint. Check it with
   `github.com/transparency-dev/merkle/proof.VerifyInclusion(rfc6962.DefaultHasher, index,
   size, leafHash, path, root)`.
3. `consistency.json` (absent for the log's first month) holds the previous month's signed
   checkpoint and an RFC 9162 consistency proof to this one:
   `proof.VerifyConsistency(rfc6962.DefaultHasher, oldSize, newSize, proof, oldRoot, newRoot)`.
4. Entries that vouch for a file name it as `{{"document": "documents/<file>", "sha256": "<hex>"}}`;
   compare with `sha256sum documents/<file>`.
5. The bundle's last `export` entry names the SHA-256 of `policy.json`, `policy.txt`,
   `VERIFY.md`, `report/sovereignty.csv` and `report/summary.md`, the number and digest of
   the entries it carries (SHA-256 of their indices, one per line), and the previous
   checkpoint (its size and the SHA-256 of its note). `keys/` holds the keys the
   `key_event` entries name.

What this proves: these entries were in the log, unchanged, in this order, when the
checkpoint was signed, and the log only grew since the previous bundle. It does not prove
that the entries are true or complete, nor where hardware physically was: that rests on
the logged inventory (`inventory_snapshot` entries) and on the operator's controls.
"""
    return text.encode("utf-8")


def consistency_json(old_checkpoint: str, proof: Sequence[bytes]) -> bytes:
    """``consistency.json``: the previous checkpoint's note and the proof from it, exactly
    as written (a verifier accepts these bytes and no other spelling of them)."""
    doc = {"old_checkpoint": old_checkpoint, "proof": [base64.b64encode(h).decode("ascii") for h in proof]}
    return json.dumps(doc, indent=2).encode("utf-8") + b"\n"


def policy_txt(origin: str, policy: TrustPolicy) -> bytes:
    """``policy.txt``: the log's C2SP tlog-policy (log keys, witnesses, quorum), for convenience.

    ``gpumeter audit verify`` never trusts it: a bundle can carry any key, so the key
    must be pinned from outside (``--key``, ``--policy``, the key ring of the site).
    """
    comment = (
        f"Trust policy of the gpumeter audit log {origin} (C2SP tlog-policy), as this bundle states it.\n"
        "A checkpoint counts when one log key signed it and the quorum of witnesses cosigned it.\n"
        "Do not trust it from the bundle: compare each key with one you got from a channel the\n"
        "operator cannot change afterwards (e.g. the fingerprint printed on your invoices)."
    )
    return policy.format(comment).encode("utf-8")


def key_file_name(vkey: str) -> str:
    """``keys/<name, other than [A-Za-z0-9._-] as _>+<key ID>.vkey``: names hold ``/`` and
    rotated keys share a name."""
    v = parse_vkey(vkey)
    return "keys/" + re.sub(r"[^A-Za-z0-9._-]", "_", v.name) + f"+{v.key_id.hex()}.vkey"


def key_file(vkey: str) -> bytes:
    return vkey.encode("utf-8") + b"\n"


def entry_list_digest(indices: Iterable[int]) -> str:
    """SHA-256 hex of the sorted indices, one decimal per line (the export entry's commitment)."""
    ordered = sorted(indices)
    text = "\n".join(map(str, ordered)) + "\n" if ordered else ""
    return hashlib.sha256(text.encode("ascii")).hexdigest()
