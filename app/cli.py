"""The ``gpumeter`` console script: mounts the domains' commands and reports errors once.

Data goes to stdout, progress and messages to stderr. Every command takes ``--config``
before or after its name. A :class:`~gpumeter.errors.GpumeterError` is printed as one line;
a usage mistake (unknown command or option, missing value) as one line naming it and the
help to read, exit 2; a group named without a subcommand shows that group's help, exit 2.
``--verbose`` adds the traceback. Exit codes: :mod:`gpumeter.commandline`.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer 0.29 vendors click here

from app import wiring
from gpumeter.commandline import EXIT_ERROR, EXIT_USAGE, ConfigOpt, err, invocation
from gpumeter.errors import GpumeterError

PRIVATE_UMASK = 0o077
"""Files the CLI creates (store, keys, invoices, bundles) are private to their owner."""


def build() -> typer.Typer:
    """The root command with every domain's commands mounted, in ``--help`` order."""
    root = typer.Typer(
        name="gpumeter",
        help="Meter GPU usage from DCGM telemetry, invoice it, and audit where it ran.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @root.callback()
    def _global(
        config: ConfigOpt = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks.")] = False,
    ) -> None:
        invocation.config_path = config
        invocation.verbose = verbose

    wiring.mount(root)
    return root


app = build()


def _usage_line(exc: UsageError) -> str:
    where = exc.ctx.command_path if exc.ctx is not None else "gpumeter"
    return f"usage error: {exc.format_message()} (see `{where} --help`)"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    os.umask(PRIVATE_UMASK)
    invocation.verbose = "--verbose" in (argv or sys.argv) or "-v" in (argv or sys.argv)
    try:
        code = app(args=argv, prog_name="gpumeter", standalone_mode=False)
    except GpumeterError as exc:
        if invocation.verbose:
            traceback.print_exc()
        err.print(f"error: {exc.explain()}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except NoArgsIsHelpError as exc:  # a group without its subcommand: its help, then exit 2
        if exc.format_message().strip():  # typer's rich help has printed itself already
            err.print(exc.format_message(), markup=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except UsageError as exc:
        if invocation.verbose:
            traceback.print_exc()
        err.print(_usage_line(exc), markup=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except typer.TyperException as exc:  # click's other errors (e.g. a file it could not open)
        if invocation.verbose:
            traceback.print_exc()
        err.print(f"error: {exc.format_message()}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted", markup=False)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # a defect in gpumeter: one line, the traceback with --verbose
        if invocation.verbose:
            traceback.print_exc()
        err.print(
            f"internal error: {type(exc).__name__}: {exc} (run again with --verbose for the traceback, and report it)",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_ERROR)
    if isinstance(code, int) and code:  # a command's `raise typer.Exit(code)`, returned by click
        sys.exit(code)
