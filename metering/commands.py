"""Metering commands: ``collect`` and ``usage``, as a ``typer.Typer`` the app mounts.

Metering knows nothing of the packages above it: what must happen after a collect (the
audit log records it) and extra usage formats (billing's FOCUS) are handed in by the app
through :func:`build`.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import duckdb
import polars as pl
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from gpumeter import store
from gpumeter.commandline import ConfigOpt, MonthOpt, err, get_config, say
from gpumeter.config import Config
from gpumeter.csvcells import text_cell
from gpumeter.errors import InputError
from metering import report
from metering.inventory import load_inventory
from metering.run import CollectReport
from metering.run import collect as run_collect
from metering.windows import Span, parse_instant

AfterCollect = Callable[[duckdb.DuckDBPyConnection, Config, CollectReport], None]
"""Called in one write session after a collect, e.g. to log the windows it wrote."""
UsageFormat = Callable[[duckdb.DuckDBPyConnection, Config, str], pl.DataFrame]
"""An extra ``usage --format``: the frame of a month (written as CSV)."""


@contextmanager
def progress_bar(label: str) -> Iterator[Any]:
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, max=256, help="Shards of GPUs metered in parallel (default: telemetry workers)."),
]

BASE_FORMATS = ("table", "csv", "json", "parquet")
FORMAT_HELP = "table, csv, json or parquet, or one the app adds (focus: FOCUS cost and usage rows)."


def build(
    *, after_collect: AfterCollect | None = None, usage_formats: Mapping[str, UsageFormat] | None = None
) -> typer.Typer:
    """The metering commands; ``after_collect`` and ``usage_formats`` come from the app."""
    commands = typer.Typer(add_completion=False)
    extra = dict(usage_formats or {})
    formats = (*BASE_FORMATS, *extra)

    @commands.command()
    def collect(
        start: Annotated[str, typer.Option("--start", help="ISO 8601 UTC start (inclusive), a whole hour.")],
        end: Annotated[str, typer.Option("--end", help="ISO 8601 UTC end (exclusive), a whole hour.")],
        chunk_hours: Annotated[
            int, typer.Option("--chunk-hours", min=1, max=24 * 31, help="Hours metered and committed together.")
        ] = 24,
        workers: WorkersOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Meter [start, end) from Prometheus into the store; re-running changes nothing."""
        cfg = get_config(config)
        span = Span.of(parse_instant(start), parse_instant(end))
        inventory = load_inventory(cfg.inventory)  # bad input stops here, before any write
        with store.opened(cfg, "write"):  # checks the schema; released before the long work
            pass
        writer = store.Writer(cfg.store.database, wait_s=cfg.store.write_wait_s)
        with progress_bar("collect") as update:
            rep = run_collect(
                writer, cfg, span, inventory=inventory, progress=update, chunk_hours=chunk_hours, workers=workers
            )
        if after_collect is not None:
            with writer.open() as con:
                after_collect(con, cfg, rep)
        for job in rep.unknown_jobs:
            say(f"warning: job {job!r} appears in telemetry but not in jobs.csv (shown untenanted, never invoiced)")
        say(
            f"collected {rep.windows} windows from {rep.backend}: {rep.windows_written} written, "
            f"{rep.windows_unchanged} unchanged, {rep.rows_written} usage rows; "
            f"{rep.gpu_windows} GPU-windows, {rep.raw_gpu_windows} from raw samples"
        )

    @commands.command()
    def usage(
        month: MonthOpt,
        fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "table",
        out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
        gaps: Annotated[bool, typer.Option("--gaps", help="List telemetry coverage gaps instead.")] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Per job x GPU model x MIG profile usage of a month (or its coverage gaps)."""
        if fmt not in formats:
            raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(formats)}", param_hint="'--format'")
        cfg = get_config(config)
        with store.opened(cfg, "read") as con:
            if gaps:
                frame = report.gaps(con, month, cfg.telemetry.scrape_interval_ms)
            elif fmt in extra:
                frame = extra[fmt](con, cfg, month)
            else:
                frame = report.month_usage(con, month, report.allowed_set(cfg.audit.allowed_countries))
        emit(
            frame,
            fmt if fmt in BASE_FORMATS else "csv",
            out,
            title=f"coverage gaps {month}" if gaps else f"usage {month}",
        )

    return commands


def emit(frame: pl.DataFrame, fmt: str, out: Path | None, *, title: str = "") -> None:
    """Write a frame in one of the output formats to ``out`` or stdout."""
    if fmt == "parquet":
        if out is None:
            raise InputError("--format parquet needs --out PATH")
        frame.write_parquet(out)
        return
    if fmt == "csv":
        text = to_csv(frame)
    elif fmt == "json":
        text = to_json(frame)
    else:
        if out is not None:
            text = to_csv(frame)
        else:
            _print_table(frame, title)
            return
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


def _cell(v: Any) -> str:
    """One CSV cell: text made inert for spreadsheets (:mod:`gpumeter.csvcells`), numbers as numbers."""
    if v is None:
        return ""
    if isinstance(v, str):
        return text_cell(v)
    if isinstance(v, list):
        return text_cell(";".join(str(x) for x in v))
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return format(v, "f")
    if hasattr(v, "isoformat"):
        return str(v.isoformat().replace("+00:00", "Z"))
    return str(v)


def to_csv(frame: pl.DataFrame) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(frame.columns)
    for row in frame.iter_rows():
        w.writerow([_cell(v) for v in row])
    return buf.getvalue()


class _Raw(float):
    """A JSON number written exactly as the Decimal it came from."""

    def __new__(cls, d: Decimal) -> _Raw:
        obj = super().__new__(cls, float(d))
        obj.text = format(d.normalize(), "f")  # type: ignore[attr-defined]
        return obj

    def __repr__(self) -> str:
        return str(self.text)  # type: ignore[attr-defined]


def _jsonable(v: Any) -> Any:
    if isinstance(v, Decimal):
        return _Raw(v)
    if hasattr(v, "isoformat"):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def to_json(frame: pl.DataFrame) -> str:
    rows = [{k: _jsonable(v) for k, v in zip(frame.columns, row, strict=True)} for row in frame.iter_rows()]
    return _dump(rows) + "\n"


def _dump(obj: Any) -> str:
    # json's C encoder calls float.__repr__ directly; the pure-Python path honours _Raw.
    import json.encoder as je

    encoder = je.JSONEncoder(ensure_ascii=False, indent=2)
    chunks = je._make_iterencode(  # type: ignore[attr-defined]
        {},
        encoder.default,
        je.encode_basestring,
        encoder.indent,
        _float_repr,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        False,
    )(obj, 0)
    return "".join(chunks)


def _float_repr(f: float) -> str:
    if isinstance(f, _Raw):
        return repr(f)
    if f != f or f in (float("inf"), float("-inf")):
        return "null"
    return float.__repr__(f)


def _print_table(frame: pl.DataFrame, title: str) -> None:
    from rich.console import Console

    table = Table(title=title)
    for c in frame.columns:
        table.add_column(c, overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*[_cell(v) for v in row])
    Console().print(table)
