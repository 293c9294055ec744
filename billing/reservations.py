"""Reservations: what each includes in a month, what usage it draws, what is left to price.

A reservation bills ``gpus`` × 24 h × its days in the month at its own rate, one line,
used or not. In every UTC hour of its term the tenant's GPU-hours of its model — on its
site if it names one; MIG instances at N/S; jobs of class ``on_demand`` or ``reserved``,
never ``spot`` — are drawn from it up to ``gpus`` × 1 h (the hour's total counts, not its
peaks). Site reservations draw before site-less ones. Within an hour the draw covers the
dearest usage first (highest list price per compute slice, then profile and site by name),
so a reservation never leaves dear usage to the rate card while covering cheap usage.
What is not drawn is priced by the rate card as ordinary usage; volume tiers count only it.

Exactness: usage is counted in *slice-nanoseconds* (a whole GPU holds S slices, a MIG
instance of profile ``Ng.*`` N), so whole GPUs and MIG instances of a model add up in
integers, and the hourly caps and draws are integers too. The hourly work runs in DuckDB
(:mod:`billing.drawdown`); this module is pure. Quantities become rationals
(:class:`~fractions.Fraction`) only when turned into GPU-hours or instance-seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cached_property

from billing.contracts import Contracts, Reservation
from billing.errors import PricingError
from billing.invoice import Line, LineKind, UsageGroup
from billing.money import exact, fmt_decimal, fmt_places, to_cents
from billing.rates import RateCard
from gpumeter.months import Month
from metering.mig import profile_slices

NS_PER_HOUR = 3_600 * 10**9
NS_PER_SECOND = 10**9

#: (tenant, GPU model, MIG profile, site; "" when the host's site is unknown)
GroupKey = tuple[str, str, str | None, str]


@dataclass(frozen=True)
class Draws:
    """What the month's reservations drew, per usage group and per reservation (slice-ns)."""

    units: Mapping[GroupKey, int] = field(default_factory=dict)  # slices per instance-ns of the group
    slices: Mapping[str, int] = field(default_factory=dict)  # S per GPU model
    usage: Mapping[GroupKey, int] = field(default_factory=dict)  # slice-ns that may draw
    drawn: Mapping[GroupKey, Mapping[str, int]] = field(default_factory=dict)  # slice-ns per reservation id
    job_usage: Mapping[tuple[GroupKey, str], int] = field(default_factory=dict)  # per job, when asked for
    job_drawn: Mapping[tuple[GroupKey, str], Mapping[str, int]] = field(default_factory=dict)

    @cached_property
    def _by_reservation(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for per in self.drawn.values():
            for rid, sns in per.items():
                out[rid] = out.get(rid, 0) + sns
        return out

    def drawn_by(self, reservation: str) -> int:
        return self._by_reservation.get(reservation, 0)

    def used_hours(self, r: Reservation) -> Fraction:
        """GPU-hours the reservation covered in the month."""
        if r.model not in self.slices:
            return Fraction(0)
        return Fraction(self.drawn_by(r.id), self.slices[r.model] * NS_PER_HOUR)

    def group_drawn(self, key: GroupKey) -> int:
        return sum(self.drawn.get(key, {}).values())

    def covered(self, key: GroupKey) -> Fraction:
        """The share of a group's usage drawn from reservations (0 to 1)."""
        total = self.usage.get(key, 0)
        return Fraction(self.group_drawn(key), total) if total else Fraction(0)

    def left_seconds(self, key: GroupKey) -> Decimal | Fraction:
        """Instance-seconds of the group not drawn (MIG: instance-seconds, as usage counts them).

        A Decimal (9 places, like the store's seconds) whenever that is exact, else a rational.
        """
        left = Fraction(self.usage[key] - self.group_drawn(key), self.units[key] * NS_PER_SECOND)
        if NS_PER_SECOND % left.denominator:
            return left
        return Decimal(left.numerator * (NS_PER_SECOND // left.denominator)).scaleb(-9)


NO_DRAWS = Draws()


def group_key(g: UsageGroup) -> GroupKey:
    return (g.tenant, g.gpu_model, g.mig_profile, g.site or "")


def units_of(card: RateCard, model: str, profile: str | None, job: str) -> int:
    slices = card.slices(model)
    if profile is None:
        return slices
    n = profile_slices(profile)
    if n is None or n > slices:
        raise PricingError(
            f"MIG profile {profile!r} of {model!r} (job {job!r}) cannot be drawn from a reservation: "
            f"it is not of the form Ng.* with N at most {slices}",
            file=card.file,
            value=profile,
            model=model,
            job=job,
        )
    return n


def apply_draws(groups: Iterable[UsageGroup], draws: Draws) -> list[UsageGroup]:
    """The groups with what reservations drew taken out (exact instance-seconds left)."""
    out = []
    for g in groups:
        key = group_key(g)
        if g.spot or not draws.group_drawn(key):
            out.append(g)
            continue
        left = draws.left_seconds(key)
        if exact(g.gpu_seconds) != Fraction(draws.usage[key], draws.units[key] * NS_PER_SECOND):
            raise PricingError(
                f"usage of {g.gpu_model} for tenant {g.tenant!r} changed while invoicing; run it again",
                model=g.gpu_model,
                job=g.first_job,
            )
        out.append(UsageGroup(g.tenant, g.gpu_model, g.mig_profile, g.site, left, g.first_job, g.spot))
    return out


def describe(r: Reservation, month: Month) -> str:
    days = r.days_in(month)
    first = max(r.start, month.first_day)
    site = f" on site {r.site}" if r.site else ""
    return (
        f"Reserved capacity {r.id}: {r.gpus} × {r.model}{site}, {days} day(s) from {first.isoformat()} "
        f"× 24 h = {r.included_hours(month)} GPU-hours included at EUR {fmt_decimal(r.eur_per_gpu_hour)} "
        "per GPU-hour, billed whether used or not"
    )


def reservation_lines(tenant: str, month: Month, contracts: Contracts, draws: Draws) -> list[Line]:
    """One line per reservation of the tenant with days in the month (its rate, no discount)."""
    out = []
    for r in sorted(contracts.reservations_in(month, tenant), key=lambda r: (r.model, r.site or "", r.id)):
        included = Fraction(r.included_hours(month))
        used = draws.used_hours(r)
        out.append(
            Line(
                gpu_model=r.model,
                mig_profile=None,
                site=r.site,
                tier_from_gpu_hours=Decimal(0),
                description=describe(r, month) + f"; {fmt_places(used, 2)} GPU-hours used",
                gpu_hours=included,
                unit_price=r.eur_per_gpu_hour,
                list_unit_price=r.eur_per_gpu_hour,
                discount_percent=Decimal(0),
                amount=to_cents(included * exact(r.eur_per_gpu_hour)),
                kind=LineKind.RESERVATION,
                contract=r.id,
                used_gpu_hours=used,
            )
        )
    return out
