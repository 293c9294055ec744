"""Slots, windows and months: the time grid metering counts on (pure).

A slot is one scrape interval aligned to the Unix epoch: slot k is
``[k*interval, (k+1)*interval)``. A window is one UTC hour ``[h, h+1h)``; usage is stored
per window. A month is a :class:`gpumeter.months.Month` (a calendar month in UTC);
:func:`month_span` is its span of windows. All ranges are half-open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gpumeter.months import Month
from metering.errors import RangeError

HOUR_MS = 3_600_000


def to_ms(t: datetime) -> int:
    if t.tzinfo is None:
        raise RangeError("naive datetime: times must be UTC-aware", value=str(t))
    return round(t.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def parse_instant(text: str) -> datetime:
    """ISO 8601 with an explicit offset or 'Z'; a bare date means 00:00 UTC."""
    s = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
            return datetime.fromisoformat(s).replace(tzinfo=UTC)
        t = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise RangeError("not an ISO 8601 time", value=text) from exc
    if t.tzinfo is None:
        raise RangeError("time needs a UTC offset or 'Z' (times are UTC)", value=text)
    return t.astimezone(UTC)


@dataclass(frozen=True)
class Span:
    """A half-open range [start_ms, end_ms) of whole UTC hours."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise RangeError("end must be after start", value=f"{from_ms(self.start_ms)}..{from_ms(self.end_ms)}")
        if self.start_ms % HOUR_MS or self.end_ms % HOUR_MS:
            raise RangeError(
                "start and end must be whole UTC hours (usage is stored per hour)",
                value=f"{from_ms(self.start_ms).isoformat()}..{from_ms(self.end_ms).isoformat()}",
            )

    @classmethod
    def of(cls, start: datetime, end: datetime) -> Span:
        return cls(to_ms(start), to_ms(end))

    def windows(self) -> list[int]:
        return list(range(self.start_ms, self.end_ms, HOUR_MS))

    def chunks(self, hours: int) -> list[Span]:
        out = []
        s = self.start_ms
        while s < self.end_ms:
            e = min(s + hours * HOUR_MS, self.end_ms)
            out.append(Span(s, e))
            s = e
        return out


def month_span(month: str | Month) -> Span:
    """'2026-10' -> [2026-10-01T00:00Z, 2026-11-01T00:00Z); a bad month raises :class:`MonthError`."""
    m = Month.parse(month)
    return Span(m.start_ms, m.end_ms)


def slot_of(ts_ms: int, interval_ms: int) -> int:
    return ts_ms // interval_ms


def window_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % HOUR_MS


def hours(n: int) -> timedelta:
    return timedelta(hours=n)
