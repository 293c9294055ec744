"""The human- and spreadsheet-readable files of a bundle, rendered from entries (pure).

``policy.json`` is the canonical JSON of the boundary (attestations carry its SHA-256);
``report/sovereignty.csv`` has one row per job — its latest attestation in the bundle —
with the columns docs/formats.md lists, lists joined by ``;``, a cell that a spreadsheet would run as a
formula prefixed with ``'`` (:func:`csv_row`); ``report/summary.md`` and ``VERIFY.md``
are prose. The bundle's ``export`` entry names the SHA-256 of all four, so they are
covered by the log like everything else, and ``gpumeter audit verify`` also re-derives
the CSV rows from the attestations.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import rfc8785

from audit.policy import Policy
from gpumeter.csvcells import text_cell

CSV_COLUMNS = ("job_id", "tenant", "hosts", "countries", "data_locations", "data_countries", "in_eu", "findings")


def policy_json(boundary: Policy) -> bytes:
    data: bytes = rfc8785.dumps(boundary.document())
    return data


def latest_attestations(entries: Iterable[tuple[int, Mapping[str, Any]]]) -> list[tuple[int, Mapping[str, Any]]]:
    """Per job, the attestation no other attestation in ``entries`` supersedes, by job id."""
    atts = [(i, e) for i, e in entries if e.get("type") == "job_attestation"]
    replaced = {e["supersedes"] for _, e in atts if isinstance(e.get("supersedes"), int)}
    latest: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for i, e in atts:
        if i in replaced:
            continue
        key = str(e.get("job_id"))
        if key not in latest or latest[key][0] < i:
            latest[key] = (i, e)
    return [latest[k] for k in sorted(latest)]


def csv_row(e: Mapping[str, Any]) -> list[str]:
    """The report's cells of one attestation. Every column is text: a cell a spreadsheet
    would run as a formula (a job id ``=cmd|…``) gets a leading ``'`` (:mod:`gpumeter.csvcells`).
    The exporter writes these cells and the verifier re-derives them here: one rule for both."""

    def join(value: Any) -> str:
        return ";".join(str(v) for v in value or [])

    cells = [
        str(e.get("job_id", "")),
        "" if e.get("tenant") is None else str(e["tenant"]),
        join(e.get("hosts")),
        join(e.get("countries")),
        join(e.get("data_locations")),
        join(e.get("data_countries")),
        "true" if e.get("in_eu") is True else "false",
        join(e.get("findings")),
    ]
    return [text_cell(c) for c in cells]


def sovereignty_csv(attestations: Sequence[tuple[int, Mapping[str, Any]]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for _, e in attestations:
        writer.writerow(csv_row(e))
    return out.getvalue().encode("utf-8")


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

Get the log's verifier key (a C2SP *vkey*, `{_md(origin)}+<key ID>+<base64>`) from the
operator through a channel you trust. The copy in `keys/` lets you start, but a bundle can
carry any key: pin yours.

## With gpumeter

    gpumeter audit verify bundle.zip --key '<vkey>'

Exit status 0 means every signature, inclusion proof, consistency proof and SHA-256 below
holds; otherwise one line names the first entry or file that fails.

## By hand, with standard C2SP / RFC 6962 tools

1. `checkpoint` is a C2SP signed note holding a tlog-checkpoint: origin, tree size, base64
   RFC 6962 root. Check its Ed25519 signature with the vkey, e.g. Go
   `golang.org/x/mod/sumdb/note`: `note.Open(data, note.VerifierList(note.NewVerifier(vkey)))`,
   and that the origin line is `{_md(origin)}`.
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
5. The bundle's last `export` entry names the SHA-256 of `policy.json`, `VERIFY.md`,
   `report/sovereignty.csv` and `report/summary.md`, the number and digest of the entries
   it carries (SHA-256 of their indices, one per line), and the previous checkpoint.

What this proves: these entries were in the log, unchanged, in this order, when the
checkpoint was signed, and the log only grew since the previous bundle. It does not prove
that the entries are true or complete, nor where hardware physically was: that rests on
the logged inventory (`inventory_snapshot` entries) and on the operator's controls.
"""
    return text.encode("utf-8")


def entry_list_digest(indices: Iterable[int]) -> str:
    """SHA-256 hex of the sorted indices, one decimal per line (the export entry's commitment)."""
    ordered = sorted(indices)
    text = "\n".join(map(str, ordered)) + "\n" if ordered else ""
    return hashlib.sha256(text.encode("ascii")).hexdigest()
