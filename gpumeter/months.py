"""Calendar months in UTC: the one place that parses ``YYYY-MM`` and knows a month's bounds.

Invoice periods, usage reports, attestations, Stripe periods and dashboards all speak of
"a month"; each asks :class:`Month` for its bounds instead of computing them. A month is
the half-open range ``[first day 00:00 UTC, first day of the next month 00:00 UTC)``.
Years before 2000 are refused: an invoice number carries a four-digit year and no GPU
telemetry predates it.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

from gpumeter.errors import InputError

_MONTH = re.compile(r"(\d{4})-(\d{2})")
FIRST_YEAR = 2000


class MonthError(InputError):
    """Text that is not a calendar month ``YYYY-MM``."""


@dataclass(frozen=True, order=True)
class Month:
    """One calendar month in UTC; ``str(m)`` is ``YYYY-MM``."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not (FIRST_YEAR <= self.year <= 9999 and 1 <= self.month <= 12):
            raise MonthError(
                "month must be YYYY-MM (a calendar month in UTC, year 2000 or later)",
                value=f"{self.year:04d}-{self.month:02d}",
            )

    @classmethod
    def parse(cls, text: object) -> Month:
        """``'2026-10'`` -> ``Month(2026, 10)``; anything else raises :class:`MonthError`."""
        if isinstance(text, Month):
            return text
        m = _MONTH.fullmatch(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise MonthError("month must be YYYY-MM (a calendar month in UTC)", value=text)
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, moment: datetime | date) -> Month:
        """The month holding ``moment`` (a datetime must be UTC-aware; it is read in UTC)."""
        if isinstance(moment, datetime):
            if moment.tzinfo is None:
                raise MonthError("naive datetime: times must be UTC-aware", value=str(moment))
            moment = moment.astimezone(UTC)
        return cls(moment.year, moment.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def text(self) -> str:
        return str(self)

    @property
    def start(self) -> datetime:
        """First instant, 00:00 UTC of the first day (inclusive)."""
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """First instant of the next month (exclusive)."""
        return self.next().start

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        """The last day, inclusive (EN 16931 BT-74)."""
        return date(self.year, self.month, self.days)

    @property
    def days(self) -> int:
        return calendar.monthrange(self.year, self.month)[1]

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp()) * 1000

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp()) * 1000

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def until(self, stop: Month) -> Iterator[Month]:
        """This month and every following one before ``stop`` (exclusive)."""
        m = self
        while m < stop:
            yield m
            m = m.next()
