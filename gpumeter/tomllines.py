"""TOML input files, with errors that name the file and the line.

``tomllib`` returns values without positions; these helpers find the line of a ``[table]``
or ``[[array-of-tables]]`` header and of a ``key =`` inside the table it opens, so that every
reader of a TOML input file (rates.toml, contracts.toml, gpumeter.toml) reports the same line
for the same mistake. :func:`parse` parses such a file (read it with
:func:`gpumeter.errors.read_text`), raising the reader's own error class (an
:class:`~gpumeter.errors.InputError` or a billing error), or reporting an unknown table to the
reader's :class:`~gpumeter.errors.Problems`.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from gpumeter.errors import GpumeterError, Problems, strict


class ErrorClass(Protocol):
    def __call__(
        self, message: str, *, file: str | Path | None = ..., line: int | None = ..., value: object = ...
    ) -> GpumeterError: ...


def parse(
    text: str, *, file: str, error: ErrorClass, tables: tuple[str, ...], problems: Problems | None = None
) -> dict[str, Any]:
    """The TOML document, whose top-level keys may only be the arrays of ``tables``; else
    ``error`` naming the file (and the line when there is one). Text that is not TOML always
    raises; an unknown top-level key is reported to ``problems`` (raised by default)."""
    problems = strict(problems)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise error(f"not valid TOML: {exc}", file=file, line=line if isinstance(line, int) else None) from exc
    for key in doc:
        if key not in tables:
            allowed = ", ".join(f"[[{t}]]" for t in tables)
            problems.add(
                error(
                    f"unknown top-level key {key!r} (allowed: {allowed})",
                    file=file,
                    line=key_line(text, 0, key) or None,
                    value=key,
                )
            )
    return doc


def header_lines(text: str, header: str) -> list[int]:
    """1-based line numbers of each ``[[header]]`` in document order."""
    pat = re.compile(r"^\s*\[\[\s*" + re.escape(header).replace(r"\.", r"\s*\.\s*") + r"\s*\]\]")
    return [i for i, ln in enumerate(text.splitlines(), start=1) if pat.match(ln)]


@lru_cache(maxsize=8)
def _lines(text: str) -> tuple[str, ...]:
    """The lines of a text, split once for the many keys looked up in it."""
    return tuple(text.splitlines())


def key_line(text: str, start: int | None, key: str) -> int | None:
    """Line of ``key =`` in the table whose header is at line ``start`` (else ``start``).

    ``start = 0`` searches the top-level keys before the first table.
    """
    if start is None:
        return None
    lines = _lines(text)
    pat = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for i in range(start, len(lines)):  # lines[start] is the line after the header
        if lines[i].lstrip().startswith("["):
            break
        if pat.match(lines[i]):
            return i + 1
    return start


def table_line(text: str, header: str) -> int | None:
    """1-based line of the ``[header]`` table (a dotted name such as ``billing.supplier``)."""
    pat = re.compile(r"^\s*\[(?!\[)\s*" + re.escape(header).replace(r"\.", r"\s*\.\s*") + r"\s*\]")
    return next((i for i, ln in enumerate(text.splitlines(), start=1) if pat.match(ln)), None)
