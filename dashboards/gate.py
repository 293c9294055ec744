"""One dashboard process's guard of sign-in attempts, in memory, per store.

:func:`dashboards.auth.sign_in` reads an attempt's counted failures from the store, then,
holding :attr:`SignInGate.lock` and only if no attempt was released since that read
(:attr:`SignInGate.generation`; else it reads again), adds the attempts still **in
flight** for the same name, pair (name at this client) and client, checks the backoff,
and — when the attempt may go on — **reserves** it: from then until its failure is in the store (or it succeeded) it
counts as a failure at the instant it started. N concurrent attempts therefore get the
answers N sequential ones get, and the slow argon2 check is never reached by attempts
the backoff would have refused.

Each argon2id verification takes 64 MiB; :meth:`SignInGate.check` lets at most
``max_checks`` run at once, and an attempt that cannot start one within ``check_wait_s``
is refused as busy without being counted.

Refusals by the backoff (and busy ones) are not written to the store: the latest
``REFUSALS_KEPT`` are kept here for the Access page, and counted per name and client so
that the log gets the 1st, 2nd, 4th, 8th… of a stream, not every one. Everything here is
bounded: reservations by the attempts running, refusals and counts by their caps.

Reservations are per process: ``gpumeter dashboard`` is one process per site.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

MAX_CHECKS = 2
"""argon2id verifications at once (64 MiB each)."""
CHECK_WAIT_S = 30.0
"""How long an attempt waits for a free check before it is refused as busy."""
REFUSALS_KEPT = 200
COUNTS_KEPT = 4096
PRUNE_EVERY_S = 3600.0
"""How often this process prunes old refusals from the store (at a refusal it records)."""

Key = tuple[str, ...]


@dataclass(frozen=True)
class Refusal:
    """A sign-in refused before any password check (kept in memory, never stored)."""

    at: datetime
    name: str
    client: str
    reason: str  # rate_limited | busy
    message: str


@dataclass(frozen=True)
class Reservation:
    keys: tuple[Key, ...]
    at: datetime


class SignInGate:
    def __init__(self, *, max_checks: int = MAX_CHECKS, check_wait_s: float = CHECK_WAIT_S) -> None:
        self.lock = threading.Lock()
        """Held from reading an attempt's failures to reserving it (or refusing it)."""
        self._in_flight: dict[Key, list[datetime]] = {}
        self.generation = 0
        """Counts releases: a read of the store older than the last release may miss a failure."""
        self._checks = threading.BoundedSemaphore(max_checks)
        self._check_wait_s = check_wait_s
        self._refused: deque[Refusal] = deque(maxlen=REFUSALS_KEPT)
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._pruned_at: float | None = None
        self._guard = threading.Lock()  # refusals, counts and the prune clock

    def in_flight(self, key: Key) -> list[datetime]:
        """When each reserved attempt under ``key`` started (call with :attr:`lock` held)."""
        return list(self._in_flight.get(key, ()))

    def reserve(self, keys: Iterable[Key], at: datetime) -> Reservation:
        """Count an attempt under each key until :meth:`release` (call with :attr:`lock` held)."""
        reservation = Reservation(tuple(keys), at)
        for key in reservation.keys:
            self._in_flight.setdefault(key, []).append(at)
        return reservation

    def release(self, reservation: Reservation) -> None:
        """The attempt is over and its outcome is in the store."""
        with self.lock:
            self.generation += 1
            for key in reservation.keys:
                started = self._in_flight.get(key, [])
                if reservation.at in started:
                    started.remove(reservation.at)
                if not started:
                    self._in_flight.pop(key, None)

    @contextmanager
    def check(self) -> Iterator[bool]:
        """A slot for one argon2 verification: True once there is one, False after the wait."""
        got = self._checks.acquire(timeout=self._check_wait_s)
        try:
            yield got
        finally:
            if got:
                self._checks.release()

    def refuse(self, refusal: Refusal) -> int:
        """Remember a refusal; returns how many this name and client have had (bounded)."""
        key = (refusal.name, refusal.client)
        with self._guard:
            self._refused.append(refusal)
            count = self._counts.pop(key, 0) + 1
            self._counts[key] = count
            while len(self._counts) > COUNTS_KEPT:
                self._counts.popitem(last=False)
        return count

    def refusals(self) -> list[Refusal]:
        """The latest refusals kept in memory, newest first."""
        with self._guard:
            return list(reversed(self._refused))

    def prune_due(self) -> bool:
        """True at most once per ``PRUNE_EVERY_S`` (the first time, always)."""
        now = time.monotonic()
        with self._guard:
            if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_S:
                return False
            self._pruned_at = now
            return True


_GATES: dict[str, SignInGate] = {}
_GATES_GUARD = threading.Lock()


def gate_for(path: Path) -> SignInGate:
    """The gate of the store at ``path`` in this process."""
    key = str(Path(path).resolve())
    with _GATES_GUARD:
        return _GATES.setdefault(key, SignInGate())
