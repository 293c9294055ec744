"""The reservation drawdown in the store: one query over the month's hourly usage (I/O).

:func:`read_draws` registers two small frames (the month's reservations, and the usage
groups that may draw from them, ranked dearest first — :func:`draw_inputs`) and runs
``sql/queries/billing_reservation_draws.sql``, which caps each UTC hour in integers
(slice-nanoseconds, see :mod:`billing.reservations`) and returns the sums per group and
reservation: a few rows per tenant, whatever the number of hours and jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction

import duckdb
import polars as pl

from billing.contracts import Contracts, Reservation
from billing.invoice import UsageGroup
from billing.money import exact
from billing.rates import RateCard
from billing.reservations import NO_DRAWS, NS_PER_HOUR, Draws, GroupKey, group_key, units_of
from gpumeter import store
from gpumeter.months import Month


def _slice_price(card: RateCard, g: UsageGroup) -> Fraction:
    """List price of one slice-hour of the group's usage (what ranks the draw)."""
    res = card.resolve(g.gpu_model, g.mig_profile, g.site, job=g.first_job)
    per_instance_hour = exact(res.rate.eur_per_gpu_hour) * res.factor
    return per_instance_hour / units_of(card, g.gpu_model, g.mig_profile, g.first_job)


def _cap(card: RateCard, r: Reservation) -> int:
    """Slice-nanoseconds one hour of the reservation holds: gpus x 1 h x S."""
    return r.gpus * NS_PER_HOUR * card.slices(r.model)


def draw_inputs(
    groups: Iterable[UsageGroup], card: RateCard, reservations: Sequence[Reservation]
) -> tuple[pl.DataFrame, pl.DataFrame, dict[GroupKey, int]]:
    """The frames :func:`read_draws` registers: reservations and ranked usage groups."""
    pairs = {(r.tenant, r.model) for r in reservations}
    candidates = [g for g in groups if not g.spot and (g.tenant, g.gpu_model) in pairs]
    prices: dict[tuple[str, str | None, str | None], Fraction] = {}
    for g in candidates:  # a price depends on model, profile and site, not on the tenant
        what = (g.gpu_model, g.mig_profile, g.site)
        if what not in prices:
            prices[what] = _slice_price(card, g)
    ranked = sorted(
        candidates,
        key=lambda g: (
            g.tenant,
            g.gpu_model,
            -prices[(g.gpu_model, g.mig_profile, g.site)],
            g.mig_profile or "",
            g.site or "",
        ),
    )
    units: dict[GroupKey, int] = {}
    pairs_ids: dict[tuple[str, str], int] = {}
    rows = []
    for rank, g in enumerate(ranked, start=1):
        key = group_key(g)
        if key in units:
            continue
        units[key] = units_of(card, g.gpu_model, g.mig_profile, g.first_job)
        pair = pairs_ids.setdefault((g.tenant, g.gpu_model), len(pairs_ids) + 1)
        rows.append((*key, units[key], rank, pair))
    groups_frame = pl.DataFrame(
        rows,
        schema={
            "tenant": pl.String,
            "gpu_model": pl.String,
            "mig_profile": pl.String,
            "site": pl.String,
            "units": pl.Int64,
            "rank": pl.Int64,
            "pair": pl.Int64,
        },
        orient="row",
    )
    res_frame = pl.DataFrame(
        [
            (r.id, pairs_ids.get((r.tenant, r.model), 0), r.site or "", _cap(card, r), r.start_at, r.end_at)
            for r in reservations
        ],
        schema={
            "id": pl.String,
            "pair": pl.Int64,
            "site": pl.String,
            "cap": pl.Int64,
            "start_ts": pl.Datetime("us", "UTC"),
            "end_ts": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )
    return res_frame, groups_frame, units


def read_draws(
    con: duckdb.DuckDBPyConnection,
    month: Month,
    groups: Sequence[UsageGroup],
    card: RateCard,
    contracts: Contracts,
    *,
    per_job: bool = False,
) -> Draws:
    """Run the month's drawdown in the store (nothing to do without a reservation in the month).

    ``per_job`` also splits each group's draws among its jobs (for the FOCUS export).
    """
    reservations = contracts.reservations_in(month)
    if not reservations:
        return NO_DRAWS
    res_frame, groups_frame, units = draw_inputs(groups, card, reservations)
    by_rank: dict[int, GroupKey] = {
        rank: (tenant, model, profile, site)
        for tenant, model, profile, site, rank in groups_frame.select(
            "tenant", "gpu_model", "mig_profile", "site", "rank"
        ).iter_rows()
    }
    con.register("staged_reservations", res_frame)
    con.register("staged_draw_groups", groups_frame)
    try:
        params = {"start": month.start, "end_": month.end, "per_job": per_job}
        rows = store.run(con, "billing_reservation_draws", params).fetchall()
    finally:
        con.unregister("staged_reservations")
        con.unregister("staged_draw_groups")
    usage: dict[GroupKey, int] = {}
    drawn: dict[GroupKey, dict[str, int]] = {}
    job_usage: dict[tuple[GroupKey, str], int] = {}
    job_drawn: dict[tuple[GroupKey, str], dict[str, int]] = {}
    for rank, site_res, any_res, job, sns, drawn_site, drawn_any in rows:
        key = by_rank[rank]
        usage[key] = usage.get(key, 0) + int(sns)
        per = drawn.setdefault(key, {})
        per_job_drawn = job_drawn.setdefault((key, job), {}) if job is not None else None
        if job is not None:
            job_usage[(key, job)] = job_usage.get((key, job), 0) + int(sns)
        for rid, amount in ((site_res, drawn_site), (any_res, drawn_any)):
            if rid is not None and amount:
                per[rid] = per.get(rid, 0) + int(amount)
                if per_job_drawn is not None:
                    per_job_drawn[rid] = per_job_drawn.get(rid, 0) + int(amount)
    slices = {r.model: card.slices(r.model) for r in reservations}
    return Draws(units, slices, usage, drawn, job_usage, job_drawn)
