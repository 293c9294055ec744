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
"""

from __future__ import annotations

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
