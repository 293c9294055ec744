"""Reading the usage store for people and for the other packages (``usage``, billing, audit).

Functions here return polars frames; the SQL lives in ``sql/queries/report_*.sql``. The
per-job sovereignty verdict comes from :func:`gpumeter.sovereignty.judge` over the hosts
telemetry showed (each judged by the nodes.csv version in force when its window was
metered) and the job's declared data locations.
"""

from __future__ import annotations

from decimal import Decimal

import duckdb
import polars as pl

from gpumeter import store
from gpumeter.countries import expand
from gpumeter.errors import ConfigError
from gpumeter.sovereignty import Verdict, judge
from metering.inventory import StorageLocation, match_location
from metering.windows import Span, from_ms, month_span

USAGE_COLUMNS = [
    "job_id",
    "tenant",
    "gpu_model",
    "mig_profile",
    "gpu_seconds",
    "busy_gpu_seconds",
    "energy_kwh",
    "hosts",
    "countries",
    "in_eu",
]
# What :func:`job_month` returns per job: the facts an audit attestation is made of.
JOB_MONTH_SCHEMA: dict[str, pl.DataType] = {
    "job_id": pl.String(),
    "tenant": pl.String(),
    "gpu_seconds": pl.Decimal(38, 9),
    "hosts": pl.List(pl.String),
    "countries": pl.List(pl.String),
    "data_locations": pl.List(pl.String),
    "data_countries": pl.List(pl.String),
    "in_eu": pl.Boolean(),
    "findings": pl.List(pl.String),
}
JOB_MONTH_COLUMNS = tuple(JOB_MONTH_SCHEMA)


def allowed_set(names: tuple[str, ...] | list[str]) -> frozenset[str]:
    try:
        return expand(names)
    except ValueError as exc:
        raise ConfigError(
            "[audit] allowed_countries holds an unknown set or country code", value=str(exc.args[0])
        ) from exc


def _params(span: Span) -> dict[str, object]:
    return {"start": from_ms(span.start_ms), "end_": from_ms(span.end_ms)}


def verdicts(
    con: duckdb.DuckDBPyConnection, span: Span, allowed: frozenset[str], *, tenant: str | None = None
) -> dict[str, tuple[Verdict, dict[str, object]]]:
    """Per job seen in ``span`` (only ``tenant``'s when given): its verdict, and the raw facts it was judged on."""
    storage = tuple(StorageLocation(loc, c) for loc, c in store.run(con, "report_storage_latest").fetchall())
    out: dict[str, tuple[Verdict, dict[str, object]]] = {}
    for job_id, job_tenant, gpu_seconds, places, data_locations in store.run(
        con, "report_job_places", {**_params(span), "tenant": tenant}
    ).fetchall():
        countries = {p["host"]: p["country"] for p in places}
        v = judge(
            countries.keys(),
            data_locations,
            host_country=lambda h, c=countries: c.get(h),  # type: ignore[misc]
            location_country=lambda uri: m.country if (m := match_location(uri, storage)) else None,
            allowed=allowed,
        )
        out[job_id] = (
            v,
            {
                "tenant": job_tenant,
                "gpu_seconds": gpu_seconds,
                "hosts": sorted(countries),
                "data_locations": list(data_locations),
            },
        )
    return out


def month_usage(con: duckdb.DuckDBPyConnection, month: str, allowed: frozenset[str]) -> pl.DataFrame:
    """``gpumeter usage --month``: one row per job x GPU model x MIG profile (docs/formats.md)."""
    span = month_span(month)
    rows = store.frame(con, "report_month_rows", _params(span))
    v = verdicts(con, span, allowed)
    in_eu = pl.DataFrame(
        {"job_id": list(v), "in_eu": [x[0].in_boundary for x in v.values()]},
        schema={"job_id": pl.String, "in_eu": pl.Boolean},
    )
    return rows.join(in_eu, on="job_id", how="left").select(USAGE_COLUMNS)


def job_month(con: duckdb.DuckDBPyConnection, month: str, allowed: frozenset[str]) -> pl.DataFrame:
    """Per job of the month: where it ran, where its data lives, and the verdict (audit input)."""
    span = month_span(month)
    v = verdicts(con, span, allowed)
    rows = []
    for job_id, (verdict, facts) in sorted(v.items()):
        rows.append(
            {
                "job_id": job_id,
                "tenant": facts["tenant"],
                "gpu_seconds": facts["gpu_seconds"],
                "hosts": facts["hosts"],
                "countries": list(verdict.host_countries),
                "data_locations": facts["data_locations"],
                "data_countries": list(verdict.data_countries),
                "in_eu": verdict.in_boundary,
                "findings": [f.text() for f in verdict.findings],
            }
        )
    return pl.DataFrame(rows, schema=JOB_MONTH_SCHEMA)


def billable_usage(con: duckdb.DuckDBPyConnection, month: str, *, tenant: str | None = None) -> pl.DataFrame:
    """Usage billing prices: jobs in jobs.csv (only ``tenant``'s when given), per job x model x MIG profile x site."""
    return store.frame(con, "report_billable", {**_params(month_span(month)), "tenant": tenant})


def billable_groups(con: duckdb.DuckDBPyConnection, month: str) -> pl.DataFrame:
    """Billable usage summed per tenant x model x MIG profile x site (what invoices price).

    Same columns as :func:`billable_usage`; ``job_id`` is each group's first job.
    """
    return store.frame(con, "report_billable_groups", _params(month_span(month)))


def gaps(con: duckdb.DuckDBPyConnection, month: str, interval_ms: int) -> pl.DataFrame:
    """``gpumeter usage --gaps``: hostname, uuid, start, end (UTC) of every coverage gap."""
    params = _params(month_span(month)) | {"interval_ms": interval_ms}
    return store.frame(con, "report_gaps", params)


def seconds(ns: int) -> Decimal:
    return (Decimal(ns) / Decimal(1_000_000_000)).quantize(Decimal("0.000000001"))
