"""Inventory files: nodes.csv, storage.csv, jobs.csv, tenants.csv (docs/formats.md, "Inputs").

Loading is pure (bytes in, frozen records out) and all-or-nothing: every file is parsed
and checked before anything is stored, and the first bad value stops the load with an
:class:`InputError` naming the file, the line (the header is line 1) and the value. Given
``Problems(keep=True)`` (``gpumeter check``), a load instead reports every bad row and
returns what the good rows hold.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gpumeter.config import InventoryConfig
from gpumeter.countries import EU27, ISO_ALPHA2
from gpumeter.errors import InputError, Problems, strict
from metering.einvoice import FACTURX, FORMATS, PEPPOL, belgian_peppol_id, default_format, peppol_id_problem

NODES_COLUMNS = ("hostname", "site", "country", "provider")
STORAGE_COLUMNS = ("location", "country")
JOBS_COLUMNS = ("job_id", "tenant", "project", "data_locations")
JOBS_OPTIONAL = ("class",)
#: The values of jobs.csv's optional ``class`` column; the first is the default.
JOB_CLASSES = ("on_demand", "spot", "reserved")
TENANTS_COLUMNS = ("tenant", "legal_name", "country", "vat_id")
TENANTS_OPTIONAL = ("email", "address", "stripe_customer", "einvoice", "peppol_id")

_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


@dataclass(frozen=True)
class Node:
    hostname: str
    site: str
    country: str
    provider: str


@dataclass(frozen=True)
class StorageLocation:
    location: str
    country: str


@dataclass(frozen=True)
class Job:
    job_id: str
    tenant: str
    project: str
    data_locations: tuple[str, ...]
    job_class: str = JOB_CLASSES[0]  # jobs.csv ``class``: on_demand | spot | reserved


@dataclass(frozen=True)
class Tenant:
    tenant: str
    legal_name: str
    country: str
    vat_id: str
    email: str | None = None
    address: str | None = None
    stripe_customer: str | None = None
    einvoice: str = FACTURX  # facturx | peppol (metering.einvoice)
    peppol_id: str | None = None  # <scheme>:<id>, set when einvoice is peppol


@dataclass(frozen=True)
class SourceFile:
    kind: str
    path: Path
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Inventory:
    nodes: dict[str, Node]
    storage: tuple[StorageLocation, ...]
    jobs: dict[str, Job]
    tenants: dict[str, Tenant]
    sources: tuple[SourceFile, ...]

    def node_country(self, hostname: str) -> str | None:
        node = self.nodes.get(hostname)
        return node.country if node else None

    def location_country(self, uri: str) -> str | None:
        """Country of a storage URI by the longest storage.csv prefix that covers it."""
        match = match_location(uri, self.storage)
        return match.country if match else None


def match_location(uri: str, storage: tuple[StorageLocation, ...]) -> StorageLocation | None:
    """Longest prefix match on whole path segments: ``s3://a`` covers ``s3://a/x``, not ``s3://ab``."""
    best: StorageLocation | None = None
    for loc in storage:
        prefix = loc.location
        covered = uri == prefix or uri.startswith(prefix if prefix.endswith("/") else prefix + "/")
        if covered and (best is None or len(prefix) > len(best.location)):
            best = loc
    return best


def read_source(kind: str, path: Path) -> SourceFile:
    try:
        return SourceFile(kind, path, path.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {kind} file: {exc.strerror or exc}", file=path) from exc


def _rows(
    src: SourceFile, problems: Problems, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) of each non-blank row; a bad header or CSV stops the file, a short row is a problem."""
    try:
        text = src.content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=src.path) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("empty file: expected a header line", file=src.path, line=1) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", file=src.path, line=1) from exc
    header = [h.strip() for h in header]
    allowed = set(required) | set(optional)
    for name in header:
        if name not in allowed:
            raise InputError(
                f"unknown column {name!r}; expected {', '.join(required)}", file=src.path, line=1, value=name
            )
    for name in required:
        if name not in header:
            raise InputError(f"missing column {name!r}", file=src.path, line=1, value=name)
    if len(set(header)) != len(header):
        raise InputError("a column appears twice", file=src.path, line=1, value=header)
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                problems.add(
                    InputError(
                        f"expected {len(header)} fields, found {len(row)}",
                        file=src.path,
                        line=line,
                        value=",".join(row),
                    )
                )
                continue
            yield line, {h: v.strip() for h, v in zip(header, row, strict=True)}
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", file=src.path, line=reader.line_num) from exc


def _need(value: str, column: str, src: SourceFile, line: int) -> str:
    if not value:
        raise InputError(f"empty {column}", file=src.path, line=line, value=value)
    return value


def _country(value: str, src: SourceFile, line: int) -> str:
    if value not in ISO_ALPHA2:
        raise InputError("unknown country code (ISO 3166-1 alpha-2 expected)", file=src.path, line=line, value=value)
    return value


RowCheck = Callable[[int, dict[str, str]], None]


def _each_row(
    src: SourceFile, problems: Problems, check: RowCheck, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> None:
    """Run ``check(line, row)`` on every row; a bad row is one problem, and the next row follows."""
    for line, row in _rows(src, problems, required, optional):
        with problems.guard():
            check(line, row)


def parse_nodes(src: SourceFile, problems: Problems | None = None) -> dict[str, Node]:
    out: dict[str, Node] = {}

    def row(line: int, r: dict[str, str]) -> None:
        host = _need(r["hostname"], "hostname", src, line)
        if host in out:
            raise InputError("duplicate hostname", file=src.path, line=line, value=host)
        out[host] = Node(host, _need(r["site"], "site", src, line), _country(r["country"], src, line), r["provider"])

    _each_row(src, strict(problems), row, NODES_COLUMNS)
    return out


def parse_storage(src: SourceFile, problems: Problems | None = None) -> tuple[StorageLocation, ...]:
    seen: dict[str, StorageLocation] = {}

    def row(line: int, r: dict[str, str]) -> None:
        loc = _need(r["location"], "location", src, line)
        if not _URI.match(loc):
            raise InputError("location is not a storage URI such as s3://bucket", file=src.path, line=line, value=loc)
        if loc in seen:
            raise InputError("duplicate location", file=src.path, line=line, value=loc)
        seen[loc] = StorageLocation(loc, _country(r["country"], src, line))

    _each_row(src, strict(problems), row, STORAGE_COLUMNS)
    return tuple(seen.values())


def validate_vat_id(vat_id: str, country: str) -> str | None:
    """None if ``vat_id`` is a well-formed VAT id for ``country``, else the reason.

    Checked offline with python-stdnum (format and check digits); a live VIES check is
    billing's business. Countries stdnum has no VAT module for are accepted as given.
    """
    from stdnum import get_cc_module
    from stdnum.exceptions import ValidationError

    cc = "el" if country == "GR" else country.lower()
    module = get_cc_module(cc, "vat")
    if module is None:
        return None
    try:
        module.validate(vat_id)
    except ValidationError as exc:
        return str(getattr(exc, "message", "") or type(exc).__name__)
    if country in _EU_VAT_PREFIX and vat_id.replace(" ", "")[:2].upper() != _EU_VAT_PREFIX[country]:
        return f"VAT id of {country} must start with {_EU_VAT_PREFIX[country]}"
    return None


# VAT number prefixes of the EU member states (Greece: EL).
_EU_VAT_PREFIX = {c: ("EL" if c == "GR" else c) for c in EU27}


def parse_tenants(src: SourceFile, problems: Problems | None = None) -> dict[str, Tenant]:
    out: dict[str, Tenant] = {}

    def row(line: int, r: dict[str, str]) -> None:
        tenant = _need(r["tenant"], "tenant", src, line)
        if tenant in out:
            raise InputError("duplicate tenant", file=src.path, line=line, value=tenant)
        country = _country(r["country"], src, line)
        vat = r["vat_id"]
        if vat:
            reason = validate_vat_id(vat, country)
            if reason:
                raise InputError(f"malformed VAT id for {country}: {reason}", file=src.path, line=line, value=vat)
        einvoice, peppol_id = _einvoice(r, country, vat, src, line)
        out[tenant] = Tenant(
            tenant,
            _need(r["legal_name"], "legal_name", src, line),
            country,
            vat.replace(" ", "").upper(),
            r.get("email") or None,
            r.get("address") or None,
            r.get("stripe_customer") or None,
            einvoice,
            peppol_id,
        )

    _each_row(src, strict(problems), row, TENANTS_COLUMNS, TENANTS_OPTIONAL)
    return out


def _einvoice(r: dict[str, str], country: str, vat: str, src: SourceFile, line: int) -> tuple[str, str | None]:
    """(einvoice, peppol_id) of one tenants.csv row (rules: :mod:`metering.einvoice`)."""
    einvoice = r.get("einvoice") or default_format(country)
    if einvoice not in FORMATS:
        raise InputError(
            f"unknown einvoice format; expected {' or '.join(FORMATS)}", file=src.path, line=line, value=einvoice
        )
    peppol_id = r.get("peppol_id") or None
    if peppol_id is not None:
        reason = peppol_id_problem(peppol_id)
        if reason:
            raise InputError(f"bad peppol_id: {reason}", file=src.path, line=line, value=peppol_id)
    elif einvoice == PEPPOL:
        peppol_id = belgian_peppol_id(vat) if country == "BE" else None
        if peppol_id is None:
            why = "" if r.get("einvoice") else f" (the default for {country})"
            raise InputError(
                f"tenant {r.get('tenant')!r}: einvoice = peppol{why} needs a peppol_id (<scheme>:<id>, "
                "e.g. 0208:0123456749)",
                file=src.path,
                line=line,
                value=einvoice,
            )
    return einvoice, peppol_id


def parse_jobs(src: SourceFile, tenants: dict[str, Tenant], problems: Problems | None = None) -> dict[str, Job]:
    out: dict[str, Job] = {}

    def row(line: int, r: dict[str, str]) -> None:
        job_id = r["job_id"]
        if not job_id:
            raise InputError("empty job_id", file=src.path, line=line, value=job_id)
        if job_id in out:
            raise InputError("duplicate job id", file=src.path, line=line, value=job_id)
        tenant = r["tenant"]
        if not tenant:
            raise InputError(f"job {job_id!r} has no tenant", file=src.path, line=line, value=tenant)
        if tenant not in tenants:
            raise InputError(
                f"job {job_id!r} names a tenant absent from tenants.csv", file=src.path, line=line, value=tenant
            )
        locations = tuple(x.strip() for x in r["data_locations"].split(";") if x.strip())
        for loc in locations:
            if not _URI.match(loc):
                raise InputError("data location is not a storage URI", file=src.path, line=line, value=loc)
        job_class = r.get("class") or JOB_CLASSES[0]
        if job_class not in JOB_CLASSES:
            raise InputError(
                f"job {job_id!r}: unknown class (expected {', '.join(JOB_CLASSES)})",
                file=src.path,
                line=line,
                value=job_class,
            )
        out[job_id] = Job(job_id, tenant, r["project"], locations, job_class)

    _each_row(src, strict(problems), row, JOBS_COLUMNS, JOBS_OPTIONAL)
    return out


def load_inventory(cfg: InventoryConfig, problems: Problems | None = None) -> Inventory:
    """Read and check all four files; stores nothing.

    By default the first bad value raises. With ``Problems(keep=True)`` every bad file or
    row is reported there and the inventory holds what the good rows say (a file that
    cannot be read counts as empty).
    """
    problems = strict(problems)

    sources: dict[str, SourceFile] = {}
    for kind, path in (("nodes", cfg.nodes), ("storage", cfg.storage), ("tenants", cfg.tenants), ("jobs", cfg.jobs)):
        with problems.guard():
            sources[kind] = read_source(kind, path)
    # A file that cannot be read, has a bad header or is malformed CSV leaves its records empty.
    nodes: dict[str, Node] = {}
    storage: tuple[StorageLocation, ...] = ()
    tenants: dict[str, Tenant] = {}
    jobs: dict[str, Job] = {}
    with problems.guard():
        if "nodes" in sources:
            nodes = parse_nodes(sources["nodes"], problems)
    with problems.guard():
        if "storage" in sources:
            storage = parse_storage(sources["storage"], problems)
    with problems.guard():
        if "tenants" in sources:
            tenants = parse_tenants(sources["tenants"], problems)
    with problems.guard():
        if "jobs" in sources:
            jobs = parse_jobs(sources["jobs"], tenants, problems)
    read = tuple(
        sources.get(kind) or SourceFile(kind, path, b"")
        for kind, path in (("nodes", cfg.nodes), ("storage", cfg.storage), ("jobs", cfg.jobs), ("tenants", cfg.tenants))
    )
    return Inventory(nodes, storage, jobs, tenants, read)
