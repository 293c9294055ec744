"""Where a value stands in a TOML text, for errors that name the line (pure).

``tomllib`` returns values without positions; these helpers find the line of an
``[[array-of-tables]]`` header and of a ``key =`` inside the table it opens, so that every
reader of a TOML input file (rates.toml) reports the same line for the same mistake.
"""

from __future__ import annotations

import re
from functools import lru_cache


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
