"""Whether a file handed to one tenant names anything of another: shared by the My account
tests (AppTest and Chromium) and the ``gpumeter export`` test.

What another tenant is made of is read from the store with plain SQL, independently of the
code under test: its id and legal name, its invoice and credit note numbers, its projects
and its job ids. A job id is searched by its longest run of digits (the demo's ids are
seven-digit numbers, some inside text with quotes or commas that CSV would escape), as a
whole token, so that a hash or a longer number that happens to contain it does not count.
A file is searched as the text a person or a program would read: a zip member by member,
a PDF by its extracted text, Parquet through its rows, anything else as UTF-8.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
from pypdf import PdfReader


@dataclass(frozen=True)
class Others:
    """Everything that belongs to tenants other than ``tenant``."""

    tenant: str
    patterns: dict[str, re.Pattern[str]]  # what it is -> how it is searched

    def found(self, text: str) -> list[str]:
        return [what for what, pattern in self.patterns.items() if pattern.search(text)]


def _token(text: str) -> re.Pattern[str]:
    return re.compile(r"(?<![0-9A-Za-z.])" + re.escape(text) + r"(?![0-9A-Za-z])")


def _job_key(job_id: str) -> str:
    runs = re.findall(r"\d{5,}", job_id)
    return max(runs, key=len) if runs else job_id


def others_of(con: duckdb.DuckDBPyConnection, tenant: str) -> Others:
    own_projects = {p for (p,) in con.execute("SELECT project FROM jobs WHERE tenant = ?", [tenant]).fetchall()}
    patterns: dict[str, re.Pattern[str]] = {}
    for other, name in con.execute("SELECT tenant, legal_name FROM tenants WHERE tenant <> ?", [tenant]).fetchall():
        patterns[f"tenant {other}"] = _token(other)
        patterns[f"legal name {name}"] = re.compile(re.escape(name))
    for (number,) in con.execute("SELECT number FROM billing_documents WHERE tenant <> ?", [tenant]).fetchall():
        patterns[f"document {number}"] = _token(number)
    for job_id, project in con.execute("SELECT job_id, project FROM jobs WHERE tenant <> ?", [tenant]).fetchall():
        patterns[f"job {job_id}"] = _token(_job_key(job_id))
        if project not in own_projects:
            patterns[f"project {project}"] = _token(project)
    assert patterns, "a leak test needs another tenant to leak"
    return Others(tenant, patterns)


def readable(name: str, data: bytes) -> Iterator[tuple[str, str]]:
    """(where, text) of everything ``data`` holds, unpacking zips, PDFs and Parquet."""
    lower = name.lower()
    if lower.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                yield from readable(f"{name}/{member}", archive.read(member))
    elif lower.endswith(".pdf"):
        reader = PdfReader(io.BytesIO(data))
        yield name, "\n".join(page.extract_text() or "" for page in reader.pages)
        for file_name, contents in reader.attachments.items():
            for content in contents:
                yield from readable(f"{name}/{file_name}", content)
    elif lower.endswith(".parquet"):
        yield name, pl.read_parquet(io.BytesIO(data)).write_csv()
    else:
        yield name, data.decode("utf-8", errors="replace")


def leaks(others: Others, name: str, data: bytes) -> list[str]:
    """What of another tenant ``data`` (a file called ``name``) shows, as ``where: what``."""
    return [f"{where}: {what}" for where, text in readable(name, data) for what in others.found(text)]


def folder_leaks(others: Others, root: Path) -> list[str]:
    return [
        hit
        for path in sorted(root.rglob("*"))
        if path.is_file()
        for hit in leaks(others, str(path.relative_to(root)), path.read_bytes())
    ]
