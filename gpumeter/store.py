"""The DuckDB store: one file, numbered migrations, named queries.

Decisions (docs/adr/0002-store.md):
- every connection runs ``SET TimeZone = 'UTC'`` so TIMESTAMPTZ values come back in UTC,
  and ``SET checkpoint_threshold = '64MB'`` (DuckDB's 16 MB default rewrote the open row
  groups of a bulk append again every few batches: docs/adr/0011-append-cost.md);
- schema changes are numbered files ``sql/schema/NNNN_name.sql`` applied in order, each in
  its own transaction, recorded in ``schema_migrations``;
- queries are files ``sql/queries/<name>.sql`` with named ``$parameters``; Python calls
  them by name and never formats values into SQL;
- DuckDB allows one writing process. Writers open the file read-write and keep the
  connection for the duration of a command; readers (dashboards) open short-lived
  read-only connections and retry while a writer holds the lock.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import polars as pl

from gpumeter.config import StoreConfig
from gpumeter.errors import StoreError
from gpumeter.findings import Finding, failed, passed, warned

if TYPE_CHECKING:
    from gpumeter.config import Config

READ_WAIT_S = StoreConfig.read_wait_s
"""How long a reader waits for a writer's lock before giving up (``[store] read_wait_s``)."""
WRITE_WAIT_S = StoreConfig.write_wait_s
"""How long a writer (collect, invoice, stripe, users, audit) waits for another's lock
(``[store] write_wait_s``)."""
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_NAME = re.compile(r"^[a-z0-9_]+$")


@cache
def query_text(name: str) -> str:
    """The text of ``sql/queries/<name>.sql``."""
    if not _NAME.match(name):
        raise StoreError(f"bad query name {name!r}")
    try:
        return resources.files("sql.queries").joinpath(f"{name}.sql").read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise StoreError(f"no query named {name!r} in sql/queries") from exc


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in sql/schema, in order."""
    found = []
    for entry in resources.files("sql.schema").iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migrations share a number: {versions}")
    return found


def _configure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET checkpoint_threshold = '64MB'")


_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.+?) \(PID (?P<pid>\d+)\)")


def _lock_message(path: Path, exc: duckdb.Error, waited_s: float) -> str:
    """Who holds the store, in one line (DuckDB names the holder's program and PID)."""
    m = _HOLDER.search(str(exc))
    if m is None:
        return f"cannot open {path}: {exc}"
    return (
        f"the store {path} is held by another process (PID {m.group('pid')}, {Path(m.group('exe')).name}); "
        f"waited {waited_s:g} s for it to let go"
    )


def connect(path: Path | str, *, read_only: bool = False, wait_s: float = 0.0) -> duckdb.DuckDBPyConnection:
    """Open the store; wait up to ``wait_s`` for another process's lock to clear.

    A database this call creates, and the folder it creates for it, are private to the
    owner (0600 / 0700): the store holds tenants' data, password hashes and invoice bytes.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise StoreError(f"no database at {path}; run `gpumeter init` first")
    created = False
    if not read_only:
        if not path.parent.exists():
            path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        created = not path.exists()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if time.monotonic() >= deadline:
                raise StoreError(_lock_message(path, exc, wait_s)) from exc
            time.sleep(0.1)
    if created:
        for file in (path, path.with_name(path.name + ".wal")):
            if file.exists():
                os.chmod(file, PRIVATE_FILE)
    _configure(con)
    return con


Mode = Literal["read", "write"]


@contextmanager
def opened(cfg: Config, mode: Mode = "read", *, wait_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store of ``cfg``, checked against the code's schema, closed on exit.

    ``read`` opens read-only (the database must exist); ``write`` opens read-write. Both
    wait a bounded time for another process's lock (``[store] read_wait_s`` /
    ``write_wait_s``) and then name the holder; both refuse a schema older than the code
    (run ``gpumeter init``) or newer (upgrade gpumeter).
    """
    read_only = mode == "read"
    wait = wait_s if wait_s is not None else (cfg.store.read_wait_s if read_only else cfg.store.write_wait_s)
    con = connect(cfg.store.database, read_only=read_only, wait_s=wait)
    try:
        require_schema(con)
        yield con
    finally:
        con.close()


class Writer:
    """Opens the store read-write only for the span of each write, then lets go.

    DuckDB takes a file lock per process: a long-lived writer would shut every reader
    (the dashboards) out for the whole of a long ``collect``. Commands that work for a
    long time open through a Writer for each transaction; both sides wait for the other's
    lock rather than fail.
    """

    def __init__(self, path: Path | str, *, wait_s: float = WRITE_WAIT_S) -> None:
        self.path = Path(path)
        self.wait_s = wait_s

    @contextmanager
    def open(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = connect(self.path, wait_s=self.wait_s)
        try:
            yield con
        finally:
            con.close()


def session(target: duckdb.DuckDBPyConnection | Writer) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
    """A connection for one unit of work: the given one, or a fresh one from a Writer."""
    return target.open() if isinstance(target, Writer) else nullcontext(target)


def memory() -> duckdb.DuckDBPyConnection:
    """An in-memory store with the schema applied (demo and unit tests)."""
    con = duckdb.connect(":memory:")
    _configure(con)
    migrate(con)
    return con


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchall()
    if not exists[0][0]:
        return 0
    rows = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()
    return int(rows[0][0])


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply pending migrations; returns the versions applied. A newer store is refused."""
    current = schema_version(con)
    if current > code_version():
        require_schema(con)
    applied = []
    for version, name, sql in migrations():
        if version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($v, $n, now())",
                {"v": version, "n": name},
            )
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise StoreError(f"migration {version:04d}_{name} failed: {exc}") from exc
        applied.append(version)
    return applied


def code_version() -> int:
    """The schema version this code was written for (its newest migration)."""
    return max((v for v, _, _ in migrations()), default=0)


def require_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse a store whose schema is older or newer than the code's."""
    want = code_version()
    have = schema_version(con)
    if have < want:
        raise StoreError(f"store schema is at version {have}, code needs {want}: run `gpumeter init`")
    if have > want:
        raise StoreError(
            f"store schema is at version {have}, newer than this gpumeter knows ({want}): "
            "upgrade gpumeter before using this store"
        )


CHECK_WAIT_S = 5.0
"""How long ``gpumeter check`` waits for a writer's lock before it reports the store busy."""


def check_schema(path: Path) -> Finding:
    """``gpumeter check``: the store exists and its schema is this code's, or migratable to it.

    Opens read-only: never creates the database, never migrates.
    """
    name = "store.schema"
    if not path.exists():
        return failed(name, f"no database at {path}", "run `gpumeter init` to create it", path=str(path))
    try:
        con = connect(path, read_only=True, wait_s=CHECK_WAIT_S)
    except StoreError as exc:
        if _HOLDER.search(str(exc.__cause__)):
            return warned(name, exc.explain(), "run `gpumeter check` again once that process is done", path=str(path))
        return failed(name, exc.explain(), "check [store] database: it must be a gpumeter DuckDB file", path=str(path))
    try:
        have = schema_version(con)
    except duckdb.Error as exc:
        return failed(name, f"{path} is not a gpumeter store: {exc}", "check [store] database", path=str(path))
    finally:
        con.close()
    want = code_version()
    pending = [f"{v:04d}_{n}" for v, n, _ in migrations() if v > have]
    details = {"path": str(path), "version": have, "code_version": want, "pending": pending}
    if have == want:
        return passed(name, f"{path} is at schema version {have}, this gpumeter's", **details)
    if have < want:
        return warned(
            name,
            f"{path} is at schema version {have}, this gpumeter needs {want}; migratable ({', '.join(pending)})",
            "run `gpumeter init` to apply the migrations (commands refuse the store until then)",
            **details,
        )
    return failed(
        name,
        f"{path} is at schema version {have}, newer than this gpumeter knows ({want})",
        "upgrade gpumeter before using this store",
        **details,
    )


_PARAM = re.compile(r"\$([a-zA-Z_][a-zA-Z0-9_]*)")


def statements(name: str) -> list[str]:
    """The statements of a query file, split at a ``;`` that ends a line; comments dropped."""
    out = []
    for part in re.split(r";[ \t]*(?:\n|$)", query_text(name)):
        code = "\n".join(line for line in part.splitlines() if not line.strip().startswith("--")).strip()
        if code:
            out.append(code)
    return out


class Result:
    """The rows a query file returned, already fetched (so the connection is free again)."""

    def __init__(self, rows: list[tuple[Any, ...]], description: Any) -> None:
        self.rows = rows
        self.description = description

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


def run(con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None) -> Result:
    """Execute the named query file; returns the rows of its last statement.

    Each statement receives only the parameters it names (DuckDB binds per statement), and
    every result is fetched before the next statement runs.
    """
    given = dict(params or {})
    result = Result([], None)
    for stmt in statements(name):
        wanted = set(_PARAM.findall(stmt))
        missing = wanted - set(given)
        if missing:
            raise StoreError(f"query {name!r} needs parameters {sorted(missing)}")
        cur = con.execute(stmt, {k: given[k] for k in wanted})
        result = Result(cur.fetchall() if cur.description else [], cur.description)
    return result


def frame(con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
    """Run the named query and return a polars frame (over Arrow, no row copies)."""
    stmts = statements(name)
    if len(stmts) != 1:
        raise StoreError(f"query {name!r} must be a single SELECT to return a frame")
    wanted = set(_PARAM.findall(stmts[0]))
    given = dict(params or {})
    rel = con.sql(stmts[0], params={k: given[k] for k in wanted} if wanted else None)
    if rel is None:
        raise StoreError(f"query {name!r} returned no rows object")
    out: pl.DataFrame = rel.pl()
    return out


_WRITE_FAILED = re.compile(r'Could not write (?:all bytes to )?file "(?P<file>[^"]+)"[^:]*: (?P<reason>[^\n]+)')


def write_error(exc: duckdb.Error) -> StoreError:
    """A write the store could not make (a full disk, an I/O error), as one line: the file,
    the reason, and that the transaction left nothing behind."""
    m = _WRITE_FAILED.search(str(exc))
    what = f"{m.group('file')}: {m.group('reason').strip()}" if m else f"the store: {exc}"
    return StoreError(f"cannot write {what}; the transaction was rolled back, nothing of it was kept")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: commit on success, roll back on any exception.

    A commit the disk refuses (full, failing) is a :class:`StoreError` naming the file and
    the reason; DuckDB keeps nothing of that transaction.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException as exc:
        with suppress(duckdb.Error):  # a connection a failed write invalidated has nothing left to roll back
            con.execute("ROLLBACK")
        if isinstance(exc, duckdb.IOException):
            raise write_error(exc) from exc
        raise
    try:
        con.execute("COMMIT")
    except duckdb.Error as exc:
        raise write_error(exc) from exc
