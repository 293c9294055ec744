"""The one error base every gpumeter error derives from.

::

    GpumeterError                 (gpumeter.errors)   exit code 1
    ├── InputError                bad input file: names file, line, value
    ├── ConfigError               gpumeter.toml problems
    ├── StoreError                DuckDB store problems (locked, schema)
    ├── MeteringError             (metering.errors)
    │   └── TelemetryError        Prometheus unreachable / bad answer
    ├── BillingError              (billing.errors)
    └── AuditError                (audit.errors)
        └── VerificationError     a proof, signature or hash does not hold

The CLI catches :class:`GpumeterError` once and prints :meth:`GpumeterError.explain`
on one line; ``--verbose`` adds the traceback.

Loaders of input files (gpumeter.toml, the inventory CSVs, rates.toml) take a
:class:`Problems`: by default it raises the first bad value (every command stops there,
before anything is stored); ``gpumeter check`` passes one that keeps them all, so that one
run names every problem. The rules stay where they are; only the reaction differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class GpumeterError(Exception):
    """Base of every error gpumeter raises on purpose."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        value: object = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.value = value

    def explain(self) -> str:
        """One line for a user: where, what value, what is wrong."""
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
            where += ": "
        value = ""
        if self.value is not None and repr(self.value) not in self.message:
            value = f" (value {self.value!r})"
        return f"{where}{self.message}{value}"

    def __str__(self) -> str:
        return self.explain()


class InputError(GpumeterError):
    """An input file (CSV, TOML) is unreadable or holds a bad value."""


class ConfigError(InputError):
    """gpumeter.toml is missing, unreadable, or holds a bad value."""


class StoreError(GpumeterError):
    """The DuckDB store cannot be opened, migrated or written."""


class Problems:
    """Where a loader reports the bad values it meets: raise the first, or keep them all.

    ``Problems()`` raises at once (the loaders' default, which every command uses);
    ``Problems(keep=True)`` records each error in :attr:`found` and lets the loader skip
    the bad row or value and go on.
    """

    def __init__(self, *, keep: bool = False) -> None:
        self.keep = keep
        self.found: list[GpumeterError] = []

    def add(self, exc: GpumeterError) -> None:
        """Report one problem: raised when not keeping, recorded otherwise."""
        if not self.keep:
            raise exc
        self.found.append(exc)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run a block whose :class:`GpumeterError` is a problem to report, then go on."""
        try:
            yield
        except GpumeterError as exc:
            self.add(exc)


def read_text(path: Path, what: str, error: type[GpumeterError] = InputError) -> str:
    """The UTF-8 text of an input file; unreadable or not UTF-8 is ``error`` naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}", file=path) from exc
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 text (byte {exc.start})", file=path) from exc


def strict(problems: Problems | None) -> Problems:
    """The given collector, or one that raises the first problem."""
    return problems if problems is not None else Problems()
