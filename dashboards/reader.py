"""Short-lived connections to the store, shared politely with ``gpumeter collect``.

DuckDB lets one process write a database file; while it holds the file, a read-only open
from another process fails, and inside one process a read-only and a read-write connection
to the same file cannot coexist. ``collect`` opens the store only for each chunk's write
and closes it in between (:class:`gpumeter.store.Writer`). The dashboards do the same from
the other side:

* every read opens a **read-only** connection, fetches what it needs, and closes it;
  :func:`gpumeter.store.connect` retries for up to ``read_wait_s`` while a writer holds
  the file, so a page waits out a chunk's commit instead of failing;
* the dashboard's own writes (failed sign-ins, export entries) open a short
  **read-write** connection with the same wait;
* inside the server process, readers share and a writer is exclusive
  (:class:`_ReadWriteLock`, writer-preferring), because DuckDB refuses a read-write
  connection next to read-only ones of the same process; the reads of one page run share
  one connection (:meth:`StoreAccess.session`), closed when the run's data is ready;
* what a page shows is cached on the data's **version** (:func:`data_version`): the counts
  and latest timestamps of what metering, billing and the audit log wrote, and a digest
  per month of the metered windows. A new chunk changes the version of its month only, so
  pages recompute that month and take every other one from the cache. The version itself
  is re-read at most every ``version_ttl_s`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from gpumeter import store
from gpumeter.errors import StoreError


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def _wait(self, blocked: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while blocked():
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreError(f"the dashboard's own {what} of the store did not finish in time")
            self._cond.wait(left)

    def acquire_shared(self, timeout_s: float) -> None:
        with self._cond:
            self._wait(lambda: self._writer or self._writers_waiting > 0, timeout_s, "write")
            self._readers += 1

    def release_shared(self) -> None:
        with self._cond:
            self._readers -= 1
            self._cond.notify_all()

    @contextmanager
    def exclusive(self, timeout_s: float) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                self._wait(lambda: self._writer or self._readers > 0, timeout_s, "reads")
                self._writer = True
            finally:
                self._writers_waiting -= 1
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


_LOCKS: dict[str, _ReadWriteLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> _ReadWriteLock:
    key = str(path.resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, _ReadWriteLock())


class StoreAccess:
    """Opens the store for one read or one write at a time, waiting for other processes.

    Reads inside :meth:`session` (one page run) share one read-only connection, opened at
    the first read that misses the cache and closed when the session ends: opening costs
    tens of milliseconds on a large file, a page may miss several cached results at once,
    and collect only needs the file free *between* page runs.
    """

    def __init__(self, path: Path, *, read_wait_s: float = 30.0, write_wait_s: float = 30.0) -> None:
        self.path = Path(path)
        self.read_wait_s = read_wait_s
        self.write_wait_s = write_wait_s
        self._lock = _lock_for(self.path)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"StoreAccess({str(self.path)!r})"

    def _open_read(self) -> duckdb.DuckDBPyConnection:
        self._lock.acquire_shared(self.read_wait_s)
        try:
            return store.connect(self.path, read_only=True, wait_s=self.read_wait_s)
        except BaseException:
            self._lock.release_shared()
            raise

    def _close_read(self, con: duckdb.DuckDBPyConnection) -> None:
        try:
            con.close()
        finally:
            self._lock.release_shared()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Let the reads of this thread until the end of the block share one connection."""
        if getattr(self._local, "session", False):
            yield
            return
        self._local.session = True
        try:
            yield
        finally:
            self._local.session = False
            con = getattr(self._local, "con", None)
            self._local.con = None
            if con is not None:
                self._close_read(con)

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; outside a session it is closed on exit."""
        if getattr(self._local, "session", False):
            con = getattr(self._local, "con", None)
            if con is None:
                con = self._local.con = self._open_read()
            yield con
            return
        con = self._open_read()
        try:
            yield con
        finally:
            self._close_read(con)

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection for one short unit of work, closed on exit."""
        held = getattr(self._local, "con", None)
        if held is not None:  # inside a session: let go of its read connection first
            self._local.con = None
            self._close_read(held)
        with self._lock.exclusive(self.write_wait_s):
            if not self.path.exists():
                raise StoreError(f"no database at {self.path}; run `gpumeter init` first")
            con = store.connect(self.path, wait_s=self.write_wait_s)
            try:
                yield con
            finally:
                con.close()


@dataclass(frozen=True)
class MonthVersion:
    month: str
    windows: int
    usage_rows: int
    collected_at: datetime | None
    digest: str


@dataclass(frozen=True)
class DataVersion:
    """What the cached results depend on; equal versions mean equal data."""

    windows: int
    collected_at: datetime | None
    inventory: str
    documents: int
    finalized_at: datetime | None
    stripe_documents: int
    stripe_at: datetime | None
    audit_size: int
    checkpoint_id: int
    months: tuple[MonthVersion, ...]

    def month(self, month: str) -> str:
        """The version of one month's usage (with the inventory it is read against)."""
        for m in self.months:
            if m.month == month:
                return f"{m.windows}:{m.usage_rows}:{m.digest}|{self.inventory}"
        return f"empty|{self.inventory}"

    @property
    def usage(self) -> str:
        return f"{self.windows}:{self.collected_at}|{self.inventory}"

    @property
    def billing(self) -> str:
        return f"{self.documents}:{self.finalized_at}|{self.stripe_documents}:{self.stripe_at}"

    @property
    def audit(self) -> str:
        return f"{self.audit_size}:{self.checkpoint_id}"

    @property
    def usage_months(self) -> list[str]:
        """Months with metered windows, oldest first."""
        return [m.month for m in self.months]


def read_version(con: duckdb.DuckDBPyConnection) -> DataVersion:
    store.require_schema(con)
    row = store.run(con, "dash_versions").fetchone()
    assert row is not None  # a query of scalar subqueries always returns one row
    months = tuple(
        MonthVersion(str(m), int(w), int(r or 0), at, str(d))
        for m, w, r, at, d in store.run(con, "dash_month_versions").fetchall()
    )
    return DataVersion(
        windows=int(row[0]),
        collected_at=row[1],
        inventory=str(row[2]),
        documents=int(row[3]),
        finalized_at=row[4],
        stripe_documents=int(row[5]),
        stripe_at=row[6],
        audit_size=int(row[7]),
        checkpoint_id=int(row[8]),
        months=months,
    )


_VERSIONS: dict[str, tuple[float, DataVersion]] = {}
_VERSIONS_GUARD = threading.Lock()


def data_version(access: StoreAccess, *, max_age_s: float = 2.0) -> DataVersion:
    """The store's current :class:`DataVersion`, re-read when older than ``max_age_s``."""
    key = str(access.path)
    now = time.monotonic()
    with _VERSIONS_GUARD:
        hit = _VERSIONS.get(key)
    if hit is not None and now - hit[0] <= max_age_s:
        return hit[1]
    with access.read() as con:
        version = read_version(con)
    with _VERSIONS_GUARD:
        _VERSIONS[key] = (time.monotonic(), version)
    return version


def forget_version(access: StoreAccess) -> None:
    """Drop the remembered version (after the dashboard's own write)."""
    with _VERSIONS_GUARD:
        _VERSIONS.pop(str(access.path), None)
