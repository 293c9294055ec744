"""The serve schedule: which windows are due at a given moment (pure, the clock passed in)."""

from __future__ import annotations

from datetime import UTC, datetime

from metering.schedule import due, horizon, next_due, origin

H = 3_600_000
M = 60_000
T0 = int(datetime(2026, 10, 5, tzinfo=UTC).timestamp() * 1000)  # a midnight
SETTLE = 10 * M
LATE = 6 * H


def at(hours: float) -> int:
    return T0 + round(hours * H)


def hours_of(windows: tuple[int, ...]) -> list[float]:
    return [(w - T0) / H for w in windows]


def test_an_hour_is_due_once_closed_and_settled() -> None:
    assert horizon(at(5) + 9 * M, SETTLE) == at(4)  # 04:00-05:00 closed 9 min ago: not yet
    assert horizon(at(5) + 10 * M, SETTLE) == at(5)  # settled: due
    assert next_due(at(5) + 9 * M, SETTLE) == at(5) + 10 * M
    assert next_due(at(5) + 10 * M, SETTLE) == at(6) + 10 * M
    assert horizon(at(9), SETTLE, until_ms=at(3)) == at(3)  # --until caps it


def test_fresh_store_starts_with_the_newest_closed_hour_or_start() -> None:
    h = horizon(at(5) + 20 * M, SETTLE)
    d = due(horizon_ms=h, origin_ms=origin(None, None, h), late_window_ms=LATE, stored=[], oldest_stored_ms=None)
    assert hours_of(d.missing) == [4] and d.recheck == ()
    d = due(horizon_ms=h, origin_ms=origin(at(1.5), None, h), late_window_ms=LATE, stored=[], oldest_stored_ms=None)
    assert hours_of(d.missing) == [1, 2, 3, 4]  # from the hour --start falls in
    assert d.runs() == [(at(1), at(5))] and d.frontier_ms == at(1)
    assert origin(at(1), at(3), h) == at(4)  # --start counts in an empty store only


def test_steady_state_meters_the_new_hour_and_rechecks_the_late_window() -> None:
    stored = [at(h) for h in range(0, 10)]
    h = horizon(at(11) + 15 * M, SETTLE)
    d = due(
        horizon_ms=h, origin_ms=origin(None, stored[-1], h), late_window_ms=LATE, stored=stored, oldest_stored_ms=T0
    )
    assert hours_of(d.missing) == [10]
    assert hours_of(d.recheck) == [5, 6, 7, 8, 9]
    assert d.runs() == [(at(5), at(11))]
    assert d.frontier_ms == at(10)
    off = due(horizon_ms=h, origin_ms=at(10), late_window_ms=0, stored=stored, oldest_stored_ms=T0)
    assert hours_of(off.windows) == [10]  # late_window = 0: no re-checks


def test_catch_up_after_downtime_and_a_hole_is_tried_again() -> None:
    stored = [at(h) for h in range(0, 10) if h != 8]  # 08:00 failed earlier
    h = horizon(at(30), SETTLE)  # back after 20 hours down
    d = due(horizon_ms=h, origin_ms=origin(None, at(9), h), late_window_ms=LATE, stored=stored, oldest_stored_ms=T0)
    assert hours_of(d.missing) == list(range(10, 29))  # 08:00 is older than the late window now
    assert d.recheck == ()
    h = horizon(at(12), SETTLE)
    d = due(horizon_ms=h, origin_ms=at(10), late_window_ms=LATE, stored=stored, oldest_stored_ms=T0)
    assert hours_of(d.missing) == [8, 10]
    assert d.frontier_ms == at(8)


def test_a_hole_before_anything_was_stored_is_not_invented() -> None:
    stored = [at(4)]
    h = horizon(at(6), SETTLE)
    d = due(horizon_ms=h, origin_ms=at(4), late_window_ms=LATE, stored=stored, oldest_stored_ms=at(4))
    assert hours_of(d.missing) == []  # 00:00-04:00 was never serve's, nor stored
    assert hours_of(d.recheck) == [4]


def test_clock_jumping_back_and_forth() -> None:
    stored = [at(h) for h in range(0, 10)]
    # the clock jumps back 5 hours: nothing stored is missing, only fewer re-checks
    h = horizon(at(5) + 30 * M, SETTLE)
    d = due(horizon_ms=h, origin_ms=at(10), late_window_ms=LATE, stored=stored, oldest_stored_ms=T0)
    assert d.missing == () and hours_of(d.recheck) == [0, 1, 2, 3, 4]
    assert d.frontier_ms == at(5)
    # and forward again: the hours between are missing, once
    h = horizon(at(12) + 30 * M, SETTLE)
    d = due(horizon_ms=h, origin_ms=at(10), late_window_ms=LATE, stored=stored, oldest_stored_ms=T0)
    assert hours_of(d.missing) == [10, 11]
