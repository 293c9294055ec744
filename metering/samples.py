"""Raw DCGM samples: the series model and the canonical sample frame.

Everything that produces raw samples — a Prometheus range-selector query, the simulator,
a test — hands them over as :class:`Series` (a label set and two aligned arrays); the
metering rules read them as one polars frame made by :func:`sample_frame`.

Canonical frame columns:

========== ========= ===========================================================
metric     str       ``__name__``
series     str       the full label set, canonical text (series identity)
uuid       str       ``UUID`` (or ``uuid`` with the exporter's old namespace)
gpu_i_id   str       MIG ``GPU_I_ID``; ``""`` on a whole-GPU series
profile    str|null  MIG ``GPU_I_PROFILE``
model      str       ``modelName``
host       str       ``Hostname`` or ``hostname`` (both accepted)
job        str|null  the configured job label; null when absent or idle
ts_ms      i64       sample time, Unix milliseconds (UTC)
value      f64       sample value (NaN kept)
========== ========= ===========================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

UTIL = "DCGM_FI_DEV_GPU_UTIL"
GR_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
METERED = (UTIL, GR_ACTIVE, ENERGY)

FRAME_SCHEMA: pl.Schema = pl.Schema(
    {
        "metric": pl.String(),
        "series": pl.String(),
        "uuid": pl.String(),
        "gpu_i_id": pl.String(),
        "profile": pl.String(),
        "model": pl.String(),
        "host": pl.String(),
        "job": pl.String(),
        "ts_ms": pl.Int64(),
        "value": pl.Float64(),
    }
)


@dataclass(frozen=True)
class Series:
    """One time series: its labels (including ``__name__``) and its samples."""

    labels: Mapping[str, str]
    ts_ms: npt.NDArray[np.int64] = field(repr=False)
    values: npt.NDArray[np.float64] = field(repr=False)

    @property
    def metric(self) -> str:
        return self.labels["__name__"]

    def key(self) -> str:
        return series_key(self.labels)


def series_key(labels: Mapping[str, str]) -> str:
    """Canonical text of a label set: ``name{a="x",b="y"}`` with labels sorted."""
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{inner}}}"


def escape_label_value(value: str) -> str:
    """Escape a label value for exposition text and PromQL double-quoted strings."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def host_of(labels: Mapping[str, str]) -> str:
    """The exporter's host label: ``Hostname`` up to 4.5.x, ``hostname`` from 4.6.0."""
    return labels.get("hostname") or labels.get("Hostname") or ""


def uuid_of(labels: Mapping[str, str]) -> str:
    return labels.get("UUID") or labels.get("uuid") or ""


def sample_frame(series: Iterable[Series], *, job_label: str, idle_job_ids: Iterable[str] = ("", "0")) -> pl.DataFrame:
    """All samples of the metered metrics as one canonical frame (see module doc).

    Labels are parsed once per series (one row of ``meta``), numbers once per sample, and
    joined by series number; series are numbered in canonical key order (tie-breaks).
    """
    idle = set(idle_job_ids)
    kept = [(s.key(), s) for s in series if s.metric in METERED and len(s.ts_ms)]
    kept.sort(key=lambda ks: ks[0])
    meta_rows = []
    for sid, (key, s) in enumerate(kept):
        labels = s.labels
        job = labels.get(job_label)
        meta_rows.append(
            (
                sid,
                s.metric,
                key,
                uuid_of(labels),
                labels.get("GPU_I_ID", ""),
                labels.get("GPU_I_PROFILE") or None,
                labels.get("modelName", ""),
                host_of(labels),
                None if job is None or job in idle else job,
            )
        )
    meta = pl.DataFrame(
        meta_rows,
        schema={"sid": pl.Int32, **{k: FRAME_SCHEMA[k] for k in list(FRAME_SCHEMA)[:8]}},
        orient="row",
    )
    if kept:
        samples = pl.DataFrame(
            {
                "sid": np.repeat(np.arange(len(kept), dtype=np.int32), [len(s.ts_ms) for _, s in kept]),
                "ts_ms": np.concatenate([np.asarray(s.ts_ms, dtype=np.int64) for _, s in kept]),
                "value": np.concatenate([np.asarray(s.values, dtype=np.float64) for _, s in kept]),
            }
        )
    else:
        samples = pl.DataFrame(schema={"sid": pl.Int32, "ts_ms": pl.Int64, "value": pl.Float64})
    return samples.join(meta, on="sid").select(list(FRAME_SCHEMA))
