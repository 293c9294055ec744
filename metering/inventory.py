"""Inventory files: nodes.csv, storage.csv, jobs.csv, tenants.csv (docs/formats.md, "Inputs").

Loading is pure (bytes in, frozen records out) and all-or-nothing: every file is parsed
and checked before anything is stored, and the first bad value stops the load with an
:class:`InputError` naming the file, the line (the header is line 1) and the value.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gpumeter.config import InventoryConfig
from gpumeter.countries import EU27, ISO_ALPHA2
from gpumeter.errors import InputError

NODES_COLUMNS = ("hostname", "site", "country", "provider")
STORAGE_COLUMNS = ("location", "country")
JOBS_COLUMNS = ("job_id", "tenant", "project", "data_locations")
JOBS_OPTIONAL = ("class",)
#: The values of jobs.csv's optional ``class`` column; the first is the default.
JOB_CLASSES = ("on_demand", "spot", "reserved")
TENANTS_COLUMNS = ("tenant", "legal_name", "country", "vat_id")
TENANTS_OPTIONAL = ("email", "address", "stripe_customer")

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
    src: SourceFile, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
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
                raise InputError(
                    f"expected {len(header)} fields, found {len(row)}", file=src.path, line=line, value=",".join(row)
                )
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


def parse_nodes(src: SourceFile) -> dict[str, Node]:
    out: dict[str, Node] = {}
    for line, r in _rows(src, NODES_COLUMNS):
        host = _need(r["hostname"], "hostname", src, line)
        if host in out:
            raise InputError("duplicate hostname", file=src.path, line=line, value=host)
        out[host] = Node(host, _need(r["site"], "site", src, line), _country(r["country"], src, line), r["provider"])
    return out


def parse_storage(src: SourceFile) -> tuple[StorageLocation, ...]:
    seen: dict[str, StorageLocation] = {}
    for line, r in _rows(src, STORAGE_COLUMNS):
        loc = _need(r["location"], "location", src, line)
        if not _URI.match(loc):
            raise InputError("location is not a storage URI such as s3://bucket", file=src.path, line=line, value=loc)
        if loc in seen:
            raise InputError("duplicate location", file=src.path, line=line, value=loc)
        seen[loc] = StorageLocation(loc, _country(r["country"], src, line))
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


def parse_tenants(src: SourceFile) -> dict[str, Tenant]:
    out: dict[str, Tenant] = {}
    for line, r in _rows(src, TENANTS_COLUMNS, TENANTS_OPTIONAL):
        tenant = _need(r["tenant"], "tenant", src, line)
        if tenant in out:
            raise InputError("duplicate tenant", file=src.path, line=line, value=tenant)
        country = _country(r["country"], src, line)
        vat = r["vat_id"]
        if vat:
            reason = validate_vat_id(vat, country)
            if reason:
                raise InputError(f"malformed VAT id for {country}: {reason}", file=src.path, line=line, value=vat)
        out[tenant] = Tenant(
            tenant,
            _need(r["legal_name"], "legal_name", src, line),
            country,
            vat.replace(" ", "").upper(),
            r.get("email") or None,
            r.get("address") or None,
            r.get("stripe_customer") or None,
        )
    return out


def parse_jobs(src: SourceFile, tenants: dict[str, Tenant]) -> dict[str, Job]:
    out: dict[str, Job] = {}
    for line, r in _rows(src, JOBS_COLUMNS, JOBS_OPTIONAL):
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
    return out


def load_inventory(cfg: InventoryConfig) -> Inventory:
    """Read and check all four files; raises on the first bad value, stores nothing."""
    nodes_src = read_source("nodes", cfg.nodes)
    storage_src = read_source("storage", cfg.storage)
    tenants_src = read_source("tenants", cfg.tenants)
    jobs_src = read_source("jobs", cfg.jobs)
    nodes = parse_nodes(nodes_src)
    storage = parse_storage(storage_src)
    tenants = parse_tenants(tenants_src)
    jobs = parse_jobs(jobs_src, tenants)
    return Inventory(nodes, storage, jobs, tenants, (nodes_src, storage_src, jobs_src, tenants_src))
