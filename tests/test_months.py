"""gpumeter.months: the one calendar-month rule."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from gpumeter.errors import InputError
from gpumeter.months import Month, MonthError


def test_parse_and_bounds() -> None:
    m = Month.parse(" 2026-10 ")
    assert str(m) == "2026-10"
    assert m.start == datetime(2026, 10, 1, tzinfo=UTC)
    assert m.end == datetime(2026, 11, 1, tzinfo=UTC)
    assert (m.first_day, m.last_day, m.days) == (date(2026, 10, 1), date(2026, 10, 31), 31)
    assert m.end_ms - m.start_ms == 31 * 86_400_000


def test_december_and_january_wrap() -> None:
    assert Month.parse("2026-12").next() == Month(2027, 1)
    assert Month.parse("2027-01").previous() == Month(2026, 12)
    assert Month.parse("2026-12").end == datetime(2027, 1, 1, tzinfo=UTC)
    assert Month.parse("2028-02").days == 29


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-10", "1999-12", "2026-10-01", "", None, 202610])
def test_bad_months_are_input_errors(text: object) -> None:
    with pytest.raises(MonthError) as info:
        Month.parse(text)
    assert isinstance(info.value, InputError)


def test_of_reads_utc_and_refuses_naive() -> None:
    from datetime import timedelta, timezone

    assert Month.of(datetime(2026, 10, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2)))) == Month(2026, 11)
    with pytest.raises(MonthError):
        Month.of(datetime(2026, 10, 1))  # noqa: DTZ001 - the point of the test


def test_until_iterates_half_open() -> None:
    assert [str(m) for m in Month(2026, 11).until(Month(2027, 2))] == ["2026-11", "2026-12", "2027-01"]
    assert list(Month(2026, 11).until(Month(2026, 11))) == []
