"""Whether a month may be issued now: the gate ``invoice --finalize`` passes before it claims
a number.

An issued document is final (corrections are new documents), and its number orders it in
time. So a month is issued only when:

- it has ended: ``now`` is at or after the first instant of the next month (the clock is
  passed in, so tests and backfills choose it);
- every one of its hours was metered: each has a row in ``collected_windows``. An hour no
  ``collect`` ever covered is missing metering, and the first such hour is named. Coverage
  gaps inside metered hours (a GPU that sent no sample for a while) are facts about the
  telemetry, not missing metering: :func:`coverage_note` reports them, they never refuse;
- the issue date is not earlier than the last issued document's, whatever its month (a clock
  set back would give a later number an earlier date; French numbering must be chronological).

Drafts pass no gate: they are not legal documents.
"""

from __future__ import annotations

from datetime import date, datetime

import duckdb

from billing.errors import ClosingError
from gpumeter import store
from gpumeter.months import Month
from metering.report import gaps


def _instant(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}Z"


def verify_month_closed(con: duckdb.DuckDBPyConnection, month: Month, now: datetime) -> None:
    """Raise :class:`ClosingError` unless ``month`` has ended at ``now`` and was fully collected."""
    if now < month.end:
        raise ClosingError(
            f"{month} has not ended: it ends at {_instant(month.end)}, and it is {_instant(now)}; "
            "draft it without --finalize until then",
            period=str(month),
        )
    row = store.run(con, "billing_uncollected_hours", {"start": month.start, "end_": month.end}).fetchone()
    missing, first = (0, None) if row is None else row
    if missing:
        raise ClosingError(
            f"{month} is not fully metered: {missing} hour{'s' if missing != 1 else ''} never collected, "
            f"the first {_instant(first)}; run `gpumeter collect --start {_instant(month.start)} "
            f"--end {_instant(month.end)}` (hours already collected are not counted twice)",
            period=str(month),
        )


def verify_issue_date(con: duckdb.DuckDBPyConnection, issue_date: date) -> None:
    """Raise :class:`ClosingError` if a document was already issued on a later date."""
    row = store.run(con, "billing_last_issued").fetchone()
    if row is not None and issue_date < row[0]:
        raise ClosingError(
            f"issue date {issue_date} is earlier than {row[0]}, the issue date of {row[1]}: "
            "documents must be issued in date order; check the system clock",
            value=str(issue_date),
        )


def coverage_note(con: duckdb.DuckDBPyConnection, month: Month, interval_ms: int) -> str | None:
    """One line about the month's coverage gaps, or None when there are none."""
    n = gaps(con, str(month), interval_ms).height
    if not n:
        return None
    return (
        f"coverage: {n} gap{'s' if n != 1 else ''} in {month} where a GPU sent no samples; usage is billed as "
        f"metered (`gpumeter usage --month {month} --gaps` lists them)"
    )
