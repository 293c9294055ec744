"""Writing simulated series where real tools can read them.

- :func:`write_openmetrics` / :func:`write_openmetrics_days` / :func:`backfill`: OpenMetrics
  text for ``promtool tsdb create-blocks-from openmetrics <file> <outdir>`` (Prometheus
  2.42). promtool wants a timestamp on every sample in float **seconds** (it keeps
  ``int64(ts*1000)``, so three decimals survive exactly), ascending per series, and
  ``# EOF`` as the last line; it reads the whole file and parses it once per 2 h block
  window, so a large fleet goes out as one file per day (or, for :func:`backfill`, per
  2 h block, which promtool then parses exactly once).
- :func:`vm_import_payload` / :func:`vm_import`: Prometheus exposition text with
  **millisecond** timestamps for VictoriaMetrics ``POST /api/v1/import/prometheus``, then
  ``/internal/force_flush`` so the samples are queryable at once. VictoriaMetrics drops NaN
  samples at ingestion: a NaN utilisation reading never reaches its query side.
- :func:`render_exporter_page`: the ``/metrics`` page a dcgm-exporter would serve at one
  instant (no timestamps). ``style="4.5"`` mimics the ≤4.5.x template (``Hostname``,
  integers ``%d``, doubles ``%f``); ``style="4.6"`` mimics ≥4.6.0 ``expfmt`` output
  (``hostname``, shortest floats with exponents, families sorted by name). Label values
  are escaped in both, although the real ≤4.5.x template does not escape them.

Formatting is vectorised with polars: one frame per batch of samples, strings built in
Rust, written in one go.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO

import numpy as np
import polars as pl

from metering.samples import ENERGY, GR_ACTIVE, UTIL, Series, escape_label_value
from simulator._catalog import HELP
from simulator._telemetry import exporter_labels
from simulator.fleet import Fleet

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_BATCH_ROWS = 200_000


class ExporterDown(RuntimeError):
    """The requested node's exporter is down (an outage) at that instant."""


def _label_text(labels: dict[str, str] | Iterable[tuple[str, str]]) -> str:
    items = labels.items() if isinstance(labels, dict) else labels
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in items if k != "__name__")
    return f"{{{inner}}}" if inner else ""


def series_prefix(s: Series) -> str:
    """``name{labels}`` in the series' own label order, values escaped."""
    return s.metric + _label_text(dict(s.labels))


def _value_expr() -> pl.Expr:
    v = pl.col("v")
    return (
        pl.when(v.is_nan())
        .then(pl.lit("NaN"))
        .when(v == math.inf)
        .then(pl.lit("+Inf"))
        .when(v == -math.inf)
        .then(pl.lit("-Inf"))
        .when((v == v.floor()) & (v.abs() < 1e15))
        .then(v.cast(pl.Int64, strict=False).cast(pl.String))
        .otherwise(v.cast(pl.String))
    )


def _ts_expr(unit: str) -> pl.Expr:
    t = pl.col("t")
    if unit == "ms":
        return t.cast(pl.String)
    sec = (t // 1000).cast(pl.String)
    frac = (t % 1000).cast(pl.String).str.zfill(3)
    return pl.when(t % 1000 == 0).then(sec).otherwise(pl.concat_str([sec, pl.lit("."), frac]))


def _line_batches(pieces: Sequence[tuple[str, np.ndarray, np.ndarray]], unit: str) -> Iterator[pl.DataFrame]:
    """Frames of one column of text lines ``prefix value ts`` for (prefix, ts_ms, values) pieces.

    Batches stay small (~200k lines): on large fleets reusing warm memory is what makes
    the writers fast.
    """
    batch: list[tuple[str, np.ndarray, np.ndarray]] = []
    rows = 0

    def flush() -> pl.DataFrame:
        prefixes = pl.Series("p", [p for p, _, _ in batch], dtype=pl.String)
        counts = np.array([len(t) for _, t, _ in batch], dtype=np.int64)
        frame = pl.DataFrame(
            {
                "i": np.repeat(np.arange(len(batch), dtype=np.uint32), counts),
                "t": np.concatenate([t for _, t, _ in batch]).astype(np.int64, copy=False),
                "v": np.concatenate([v for _, _, v in batch]).astype(np.float64, copy=False),
            }
        )
        frame = frame.with_columns(prefixes.gather(frame["i"]))
        return frame.select(pl.concat_str([pl.col("p"), _value_expr(), _ts_expr(unit)], separator=" ").alias("line"))

    for prefix, ts, values in pieces:
        for lo in range(0, len(ts), _BATCH_ROWS):
            part = (prefix, ts[lo : lo + _BATCH_ROWS], values[lo : lo + _BATCH_ROWS])
            batch.append(part)
            rows += len(part[1])
            if rows >= _BATCH_ROWS:
                yield flush()
                batch, rows = [], 0
    if batch:
        yield flush()


def _write_lines(f: IO[bytes], lines: pl.DataFrame) -> None:
    lines.write_csv(f, include_header=False, quote_style="never")


def _family_order(series: Iterable[Series]) -> list[tuple[str, list[Series]]]:
    families: dict[str, list[Series]] = {}
    for s in series:
        families.setdefault(s.metric, []).append(s)
    return [(m, sorted(families[m], key=lambda s: s.key())) for m in sorted(families)]


def write_openmetrics(
    series: Iterable[Series], path: str | Path, *, start_ms: int | None = None, end_ms: int | None = None
) -> int:
    """Write the samples in [start_ms, end_ms) as OpenMetrics text; returns the sample count.

    Families are contiguous, each with ``# HELP``/``# TYPE``; series are in canonical-key
    order with ascending timestamps (seconds, three decimals); the file ends with ``# EOF``.
    """
    written = 0
    with open(path, "wb") as f:
        for metric, members in _family_order(series):
            pieces: list[tuple[str, np.ndarray, np.ndarray]] = []
            for s in members:
                lo = 0 if start_ms is None else int(np.searchsorted(s.ts_ms, start_ms, side="left"))
                hi = len(s.ts_ms) if end_ms is None else int(np.searchsorted(s.ts_ms, end_ms, side="left"))
                if hi > lo:
                    pieces.append((series_prefix(s), s.ts_ms[lo:hi], s.values[lo:hi]))
            if not pieces:
                continue
            kind, text = HELP.get(metric, ("unknown", ""))
            header = f"# HELP {metric} {text}\n" if text else ""
            f.write(f"{header}# TYPE {metric} {kind}\n".encode())
            for lines in _line_batches(pieces, "s"):
                _write_lines(f, lines)
                written += lines.height
        f.write(b"# EOF\n")
    return written


def _span(series: Sequence[Series]) -> tuple[int, int] | None:
    firsts = [int(s.ts_ms[0]) for s in series if len(s.ts_ms)]
    lasts = [int(s.ts_ms[-1]) for s in series if len(s.ts_ms)]
    return (min(firsts), max(lasts)) if firsts else None


def _windows(items: Sequence[Series], hours: int) -> Iterator[tuple[int, int, str]]:
    """(start_ms, end_ms, file stem) of each ``hours`` window, aligned to UTC midnight."""
    if hours <= 0 or 24 % hours:
        raise ValueError("hours must divide 24")
    span = _span(items)
    if span is None:
        return
    step = hours * _HOUR_MS
    for w in range(span[0] // step * step, span[1] + 1, step):
        day = datetime.fromtimestamp(w / 1000, tz=UTC)
        yield w, w + step, day.strftime("%Y-%m-%d") if hours == 24 else day.strftime("%Y-%m-%dT%H")


def write_openmetrics_days(series: Iterable[Series], outdir: str | Path, *, hours: int = 24) -> list[Path]:
    """One OpenMetrics file per UTC day (or per ``hours``-hour window aligned to midnight).

    Files are named ``YYYY-MM-DD.om`` (``YYYY-MM-DDTHH.om`` for shorter windows) and
    returned in time order; windows without samples get no file.
    """
    items = list(series)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for lo, hi, stem in _windows(items, hours):
        path = out / f"{stem}.om"
        if write_openmetrics(items, path, start_ms=lo, end_ms=hi):
            paths.append(path)
        else:
            path.unlink()
    return paths


def backfill(
    series: Iterable[Series],
    tsdb_dir: str | Path,
    workdir: str | Path,
    *,
    promtool: str = "promtool",
    parallel: int | None = None,
    keep_files: bool = False,
) -> list[Path]:
    """Turn the series into Prometheus TSDB blocks in ``tsdb_dir``; returns the new blocks.

    Writes one OpenMetrics file per 2 h block window into ``workdir`` (so promtool parses
    each file once) and runs ``promtool tsdb create-blocks-from openmetrics FILE TSDB_DIR``
    on each while the next is written; files are removed once converted unless
    ``keep_files``. Start Prometheus on ``tsdb_dir`` with a long
    ``--storage.tsdb.retention.time``: retention counts from the newest block, not the clock.
    """
    items = list(series)
    tsdb = Path(tsdb_dir)
    tsdb.mkdir(parents=True, exist_ok=True)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in tsdb.iterdir()}

    def run(path: Path) -> None:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell; promtool is the caller's binary
            [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(path), str(tsdb)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"promtool failed on {path}: {(done.stderr or done.stdout).strip()[-500:]}")
        if not keep_files:
            path.unlink()

    # promtool waits on disk about a third of the time: run more of them than there are CPUs.
    with ThreadPoolExecutor(max_workers=parallel or 2 * (os.cpu_count() or 1)) as pool:
        jobs = []
        for lo, hi, stem in _windows(items, 2):
            path = work / f"{stem}.om"
            if write_openmetrics(items, path, start_ms=lo, end_ms=hi):
                jobs.append(pool.submit(run, path))
            else:
                path.unlink()
        for job in jobs:
            job.result()
    return sorted(p for p in tsdb.iterdir() if p.is_dir() and p.name not in before and p.name != "wal")


# ---------------------------------------------------------------- VictoriaMetrics


def vm_import_chunks(series: Iterable[Series], *, chunk_bytes: int = 16 << 20) -> Iterator[bytes]:
    """Prometheus exposition text with ms timestamps, cut at line ends into ~chunk_bytes."""
    items = sorted(series, key=lambda s: s.key())
    pieces = [(series_prefix(s), s.ts_ms, s.values) for s in items]
    buf = bytearray()
    for lines in _line_batches(pieces, "ms"):
        sink = io.BytesIO()
        _write_lines(sink, lines)
        buf += sink.getvalue()
        while len(buf) >= chunk_bytes:
            cut = buf.rfind(b"\n", 0, chunk_bytes) + 1 or buf.find(b"\n") + 1
            yield bytes(buf[:cut])
            del buf[:cut]
    if buf:
        yield bytes(buf)


def vm_import_payload(series: Iterable[Series]) -> bytes:
    """The whole import body (see :func:`vm_import_chunks` for large fleets)."""
    return b"".join(vm_import_chunks(series))


def vm_import(url: str, series: Iterable[Series], *, timeout_s: float = 300.0) -> int:
    """POST the series to ``url`` + ``/api/v1/import/prometheus`` and force a flush.

    Returns the number of bytes sent. NaN samples are accepted on the wire but dropped by
    VictoriaMetrics.
    """
    import requests

    base = url.rstrip("/")
    sent = 0
    with requests.Session() as http:
        for chunk in vm_import_chunks(series):
            r = http.post(f"{base}/api/v1/import/prometheus", data=chunk, timeout=timeout_s)
            if r.status_code >= 300:
                raise RuntimeError(f"VictoriaMetrics import failed: HTTP {r.status_code} {r.text.strip()[:200]}")
            sent += len(chunk)
        r = http.get(f"{base}/internal/force_flush", timeout=timeout_s)
        if r.status_code >= 300:
            raise RuntimeError(f"VictoriaMetrics force_flush failed: HTTP {r.status_code}")
    return sent


# ---------------------------------------------------------------- exporter page


def go_float(v: float) -> str:
    """``strconv.FormatFloat(v, 'g', -1, 64)`` as expfmt writes floats (dcgm-exporter ≥4.6).

    Shortest round-trip digits; exponent form when the decimal exponent is below -4 or at
    least 6 (Go's fixed threshold for shortest formatting), with at least two exponent
    digits: ``1.83447263021e+11``, ``97``, ``0.874512``, ``1e-05``.
    """
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    sign, digit_tuple, exp = Decimal(repr(v)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digit_tuple))
    point = len(ds) + exp  # position of the decimal point after the first digit group
    x = point - 1
    s = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{s}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{s}0.{'0' * -point}{ds}"
    if point >= len(ds):
        return f"{s}{ds}{'0' * (point - len(ds))}"
    return f"{s}{ds[:point]}.{ds[point:]}"


def _old_style(metric: str, v: float) -> str:
    """≤4.5.x template: integer fields with %d, double fields with %f."""
    if math.isnan(v):
        return "NaN"
    if metric in (UTIL, ENERGY):
        return str(int(v))
    return f"{v:f}"


def render_exporter_page(fleet: Fleet, at: datetime, style: str = "4.5", *, hostname: str | None = None) -> str:
    """The /metrics text dcgm-exporter would serve at ``at`` (all nodes, or one).

    Nodes whose exporter is down at ``at`` are left out; asking for such a node alone
    raises :class:`ExporterDown`. No timestamps (Prometheus stamps scrapes itself).
    """
    if style not in ("4.5", "4.6"):
        raise ValueError("style must be '4.5' or '4.6'")
    if at.tzinfo is None:
        raise ValueError("at must be a UTC-aware datetime")
    spec = fleet.spec
    t = round(at.timestamp() * 1000)
    if not spec.start_ms <= t < spec.end_ms:
        raise ValueError(f"{at.isoformat()} lies outside the simulated period")
    nodes = [n for n in fleet.state if hostname is None or n.info.hostname == hostname]
    if hostname is not None and not nodes:
        raise KeyError(hostname)
    if hostname is not None and nodes[0].is_down(t):
        raise ExporterDown(f"exporter on {hostname} is down at {at.isoformat()}")
    host_key = "hostname" if style == "4.6" else "Hostname"
    rows: dict[str, list[tuple[str, float]]] = {UTIL: [], ENERGY: [], GR_ACTIVE: []}
    stamp = np.array([t], dtype=np.int64)
    for node in nodes:
        if node.is_down(t):
            continue
        for gpu in node.gpus:
            k = int(gpu.grid.slot_of(stamp)[0])
            energy = float(gpu.energy(stamp)[0])
            for unit in gpu.units:
                held = unit.jobs_at(t)
                names: tuple[str | None, ...] = held or (("0",) if node.zero_idle else (None,))
                for name in names:
                    labels = _label_text(exporter_labels(node, unit, host_key, spec.job_label, name))
                    if unit.mig is None:
                        rows[UTIL].append((labels, float(unit.util[k])))
                        if spec.whole_gpu_gr_active:
                            rows[GR_ACTIVE].append((labels, float(unit.gr[k])))
                    else:
                        rows[GR_ACTIVE].append((labels, float(unit.gr[k])))
                    rows[ENERGY].append((labels, energy))
    families = sorted(rows) if style == "4.6" else [UTIL, ENERGY, GR_ACTIVE]
    out: list[str] = []
    for metric in families:
        samples = sorted(rows[metric]) if style == "4.6" else rows[metric]
        if not samples:
            continue
        kind, text = HELP[metric]
        out.append(f"# HELP {metric} {text}")
        out.append(f"# TYPE {metric} {kind}")
        fmt = go_float if style == "4.6" else (lambda v, m=metric: _old_style(m, v))
        out.extend(f"{metric}{labels} {fmt(v)}" for labels, v in samples)
    return "\n".join(out) + "\n"
