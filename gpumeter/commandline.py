"""What every domain's commands share, without knowing the app that mounts them.

Each domain package (metering, audit, billing, dashboards) builds its own ``typer.Typer``
from these pieces; the app (:mod:`app.cli`) mounts them, owns the global ``--config`` and
``--verbose`` options, and catches :class:`~gpumeter.errors.GpumeterError` once. Exit
codes are documented here, once:

====  =====================================================================
0     success
1     a gpumeter error (bad input, unreachable backend, locked store, …)
2     a usage mistake (unknown command or option, missing value)
3     an audit that found something wrong (a proof, signature or hash)
4     a bundle whose log key nothing outside it pins (``audit verify``)
====  =====================================================================
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gpumeter.config import DEFAULT_CONFIG, Config, load_config
from gpumeter.months import Month, MonthError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_VIOLATIONS = 3
EXIT_UNPINNED = 4

err = Console(stderr=True, highlight=False)
"""Progress, notices and errors."""
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
"""Data (tables); never truncated to an 80-column guess when piped or captured."""


@dataclass
class Invocation:
    """The global options of this run, set by the app's callback."""

    config_path: Path | None = None
    verbose: bool = False


invocation = Invocation()

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Path to gpumeter.toml (default ./gpumeter.toml)."),
]


def _month(value: str | None) -> str | None:
    """``--month`` checked as it is parsed: a bad month is a usage mistake (exit 2)."""
    if value is None:
        return None
    try:
        return str(Month.parse(value))
    except MonthError as exc:
        raise typer.BadParameter(exc.message) from exc


MonthOpt = Annotated[str, typer.Option("--month", help="Calendar month in UTC, YYYY-MM.", callback=_month)]
MonthFilterOpt = Annotated[
    str | None, typer.Option("--month", help="Only this calendar month in UTC, YYYY-MM.", callback=_month)
]
"""An optional ``--month`` that narrows a listing (checked like :data:`MonthOpt`)."""


def config_path(config: Path | None) -> Path | None:
    """The ``--config`` given after the command name, else before it; None if neither."""
    return config or invocation.config_path


def get_config(config: Path | None) -> Config:
    """The configuration named after the command, else before it, else ./gpumeter.toml."""
    return load_config(config_path(config) or DEFAULT_CONFIG)


def say(text: str) -> None:
    """One notice on stderr, printed as is (no markup, no wrapping)."""
    err.print(text, markup=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print ``error: message`` and return the exit to raise."""
    err.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)
