"""Which hour windows ``gpumeter serve`` meters at a given moment (pure: the clock is passed in).

An hour is due once it has closed and the settle delay has passed (samples of its last
scrape have reached the backend): at ``now`` every window ending at or before
:func:`horizon` ``= floor_hour(now - settle)`` may be metered. Each cycle meters

* **missing** windows: not in the store, from ``origin`` up to the horizon — the newest
  hour in steady state, every hour since the last one after downtime (catch-up);
  ``origin`` is the hour after the newest stored window; in an empty store, the hour of
  ``--start``, else the newest closed hour (a fresh store starts now, not in 1970);
* **holes**: windows missing in the last ``late_window`` hours after the oldest stored one
  (a chunk that failed earlier is tried again);
* **re-checks**: stored windows in the last ``late_window`` hours, metered again because
  samples may have arrived late; the store rewrites (and the audit log records) only the
  windows whose digest changed.

The horizon never passes ``until`` (``--until``), and a clock that jumps back only makes
fewer windows due: nothing already stored is ever metered as missing again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from metering.windows import HOUR_MS


def floor_hour(ms: int) -> int:
    return ms - ms % HOUR_MS


def horizon(now_ms: int, settle_ms: int, until_ms: int | None = None) -> int:
    """End of the newest window that may be metered at ``now_ms`` (capped at ``until_ms``)."""
    h = floor_hour(now_ms - settle_ms)
    return h if until_ms is None else min(h, until_ms)


def next_due(now_ms: int, settle_ms: int) -> int:
    """When the next window becomes due: the end of the open hour plus the settle delay."""
    return floor_hour(now_ms - settle_ms) + HOUR_MS + settle_ms


def origin(start_ms: int | None, newest_stored_ms: int | None, horizon_ms: int) -> int:
    """The first window serve is responsible for (see the module doc); ``start_ms`` counts in an empty store only."""
    if newest_stored_ms is not None:
        return newest_stored_ms + HOUR_MS
    if start_ms is not None:
        return floor_hour(start_ms)
    return horizon_ms - HOUR_MS


@dataclass(frozen=True)
class Due:
    """The windows to meter in one cycle, by why (window starts in Unix ms, ascending)."""

    horizon_ms: int
    missing: tuple[int, ...]  # never stored: first metering (catch-up and holes)
    recheck: tuple[int, ...]  # stored, inside the late window: metered again for late samples

    @property
    def windows(self) -> tuple[int, ...]:
        return tuple(sorted({*self.missing, *self.recheck}))

    @property
    def frontier_ms(self) -> int:
        """End of the newest complete window: where metering stands (the first missing window, else the horizon)."""
        return self.missing[0] if self.missing else self.horizon_ms

    def runs(self) -> list[tuple[int, int]]:
        """The due windows as contiguous [start, end) runs."""
        out: list[tuple[int, int]] = []
        for w in self.windows:
            if out and out[-1][1] == w:
                out[-1] = (out[-1][0], w + HOUR_MS)
            else:
                out.append((w, w + HOUR_MS))
        return out


def due(
    *,
    horizon_ms: int,
    origin_ms: int,
    late_window_ms: int,
    stored: Iterable[int],
    oldest_stored_ms: int | None,
) -> Due:
    """The windows due below ``horizon_ms``.

    ``stored`` are the stored window starts from ``min(origin_ms, horizon_ms - late_window_ms)``
    on (older ones are never looked at); ``oldest_stored_ms`` is the oldest window in the store.
    """
    have = set(stored)
    late_from = horizon_ms - late_window_ms
    missing = set(range(origin_ms, horizon_ms, HOUR_MS)) - have
    if oldest_stored_ms is not None:
        lo = max(late_from, oldest_stored_ms)
        missing |= set(range(lo - lo % HOUR_MS, horizon_ms, HOUR_MS)) - have
    recheck = sorted(w for w in have if late_from <= w < horizon_ms)
    return Due(horizon_ms, tuple(sorted(missing)), tuple(recheck))
