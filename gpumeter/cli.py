"""The ``gpumeter`` command line: a thin layer over the packages.

Data goes to stdout, progress and messages to stderr. Every command takes ``--config``
before or after its name. Errors derived from :class:`GpumeterError` are caught once here
and printed as one line; ``--verbose`` shows the traceback. Exit codes: 0 success, 1 a
gpumeter error, 2 a usage error, 3 an audit that found violations.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from gpumeter.config import DEFAULT_CONFIG, Config, load_config
from gpumeter.errors import GpumeterError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_VIOLATIONS = 3

err = Console(stderr=True)
app = typer.Typer(
    name="gpumeter",
    help="Meter GPU usage from DCGM telemetry, invoice it, and audit where it ran.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _State:
    config_path: Path | None = None
    verbose: bool = False


state = _State()

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Path to gpumeter.toml (default ./gpumeter.toml)."),
]


@app.callback()
def _main(
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks.")] = False,
) -> None:
    state.config_path = config
    state.verbose = verbose


def get_config(config: Path | None) -> Config:
    """The configuration named after the command, else before it, else ./gpumeter.toml."""
    return load_config(config or state.config_path or DEFAULT_CONFIG)


F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    from gpumeter import commands  # noqa: F401  (registers the commands on ``app``)

    try:
        app(standalone_mode=False)
    except GpumeterError as exc:
        if state.verbose:
            traceback.print_exc()
        err.print(f"error: {exc.explain()}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted", markup=False)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(exc, click.exceptions.UsageError):
            err.print(f"usage error: {exc.format_message()}", markup=False)
            sys.exit(EXIT_USAGE)
        if isinstance(exc, click.exceptions.ClickException):
            err.print(f"error: {exc.format_message()}", markup=False)
            sys.exit(exc.exit_code)
        raise
