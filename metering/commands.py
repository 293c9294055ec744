"""Metering commands: ``init``, ``collect``, ``usage``."""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Iterator
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
from gpumeter.cli import ConfigOpt, app, err, get_config
from gpumeter.config import Config
from gpumeter.errors import InputError
from metering import report
from metering.run import collect as run_collect
from metering.windows import Span, month_span, parse_instant


@contextmanager
def open_store(cfg: Config, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    con = store.connect(cfg.store.database, read_only=read_only, wait_s=30.0)
    try:
        store.require_schema(con)
        yield con
    finally:
        con.close()


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


@app.command()
def init(config: ConfigOpt = None) -> None:
    """Create the database (apply sql/ migrations) and, if absent, the audit signing key."""
    cfg = get_config(config)
    con = store.connect(cfg.store.database)
    try:
        applied = store.migrate(con)
    finally:
        con.close()
    err.print(
        f"database {cfg.store.database}: "
        + (f"applied migrations {', '.join(str(v) for v in applied)}" if applied else "schema up to date"),
        highlight=False,
    )
    try:
        from audit import keys as audit_keys
    except ImportError:  # pragma: no cover - audit package always ships
        return
    if cfg.audit.signing_key.exists():
        err.print(f"signing key {cfg.audit.signing_key}: present", highlight=False)
        return
    passphrase = os.environ.get("GPUMETER_AUDIT_PASSPHRASE")
    if not passphrase:
        err.print(
            f"warning: no signing key at {cfg.audit.signing_key} and GPUMETER_AUDIT_PASSPHRASE is not set; "
            "set it and run `gpumeter init` again to create the key",
            highlight=False,
        )
        return
    vkey = audit_keys.ensure_key(cfg.audit.signing_key, passphrase, cfg.audit.origin)
    err.print(f"signing key {cfg.audit.signing_key}: created; verifier key {vkey}", highlight=False)


@app.command()
def collect(
    start: Annotated[str, typer.Option("--start", help="ISO 8601 UTC start (inclusive), a whole hour.")],
    end: Annotated[str, typer.Option("--end", help="ISO 8601 UTC end (exclusive), a whole hour.")],
    chunk_hours: Annotated[
        int, typer.Option("--chunk-hours", min=1, max=24 * 31, help="Hours metered and committed together.")
    ] = 24,
    config: ConfigOpt = None,
) -> None:
    """Meter [start, end) from Prometheus into the store; re-running changes nothing."""
    cfg = get_config(config)
    span = Span.of(parse_instant(start), parse_instant(end))
    from metering.inventory import load_inventory

    inventory = load_inventory(cfg.inventory)  # bad input stops here, before any write
    with open_store(cfg) as con:  # checks the schema; released before the long work
        pass
    writer = store.Writer(cfg.store.database)
    with progress_bar("collect") as update:
        rep = run_collect(writer, cfg, span, inventory=inventory, progress=update, chunk_hours=chunk_hours)
    with writer.open() as con:
        _after_collect(con, cfg, rep)
    for job in rep.unknown_jobs:
        err.print(
            f"warning: job {job!r} appears in telemetry but not in jobs.csv (shown untenanted, never invoiced)",
            highlight=False,
            markup=False,
        )
    err.print(
        f"collected {rep.windows} windows from {rep.backend}: {rep.windows_written} written, "
        f"{rep.windows_unchanged} unchanged, {rep.rows_written} usage rows; "
        f"{rep.gpu_windows} GPU-windows, {rep.raw_gpu_windows} from raw samples",
        highlight=False,
    )


def _after_collect(con: duckdb.DuckDBPyConnection, cfg: Config, rep: Any) -> None:
    """Hook for the audit log (usage windows and inventory snapshots), when available."""
    try:
        from audit import record
    except ImportError:
        return
    hook = getattr(record, "after_collect", None)
    if hook is not None:
        hook(con, cfg)


FORMATS = ("table", "csv", "json", "parquet", "focus")


@app.command()
def usage(
    month: Annotated[str, typer.Option("--month", help="Calendar month in UTC, YYYY-MM.")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json, parquet or focus.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
    gaps: Annotated[bool, typer.Option("--gaps", help="List telemetry coverage gaps instead.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Per job x GPU model x MIG profile usage of a month (or its coverage gaps)."""
    cfg = get_config(config)
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}", value=fmt)
    with open_store(cfg, read_only=True) as con:
        if gaps:
            frame = report.gaps(con, month, cfg.telemetry.scrape_interval_ms)
        elif fmt == "focus":
            from billing.focus import focus_frame

            verdicts = report.verdicts(con, month_span(month), report.allowed_set(cfg.audit.allowed_countries))
            frame = focus_frame(con, cfg, month, in_eu={job: v.in_boundary for job, (v, _) in verdicts.items()})
        else:
            frame = report.month_usage(con, month, report.allowed_set(cfg.audit.allowed_countries))
    emit(frame, fmt, out, title=f"usage {month}" if not gaps else f"coverage gaps {month}")


def emit(frame: pl.DataFrame, fmt: str, out: Path | None, *, title: str = "") -> None:
    """Write a frame in one of the output formats to ``out`` or stdout."""
    if fmt == "parquet":
        if out is None:
            raise InputError("--format parquet needs --out PATH")
        frame.write_parquet(out)
        return
    if fmt in ("csv", "focus"):
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
    if v is None:
        return ""
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
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
