"""Rate cards: rates.toml parsed into a frozen :class:`RateCard` (pure: text in, card out).

Format (documented for users in docs/formats.md, decided in docs/adr/0005-money-and-rounding.md)::

    # Prices in EUR per GPU-hour, excluding VAT, as decimal strings (never TOML floats).
    [[rate]]
    model = "NVIDIA H100 80GB HBM3"     # DCGM modelName, exactly
    eur_per_gpu_hour = "2.80"           # from hour 0 of the month
    mig_slices = 7                      # optional, one per model; default 4 if "A30" is in the name, else 7

      [[rate.tier]]                     # optional graduated volume tiers of this rate:
      from_gpu_hours = "1000"           # the tenant's hours of this line beyond 1000 in the
      eur_per_gpu_hour = "2.50"         # month cost 2.50 (the first 1000 still cost 2.80)

    [[rate]]                            # a MIG profile priced apart (EUR per instance-hour)
    model = "NVIDIA H100 80GB HBM3"
    mig_profile = "1g.10gb"
    eur_per_gpu_hour = "0.45"

    [[rate]]                            # a site priced apart; MIG there at N/S of this rate
    model = "NVIDIA H100 80GB HBM3"
    site = "par1"
    eur_per_gpu_hour = "3.10"

    [[rate]]                            # spot usage (jobs.csv class = spot) of a model
    model = "NVIDIA H100 80GB HBM3"
    class = "spot"
    eur_per_gpu_hour = "1.40"

    [[discount]]                        # committed-use discount of one tenant, on every line
    tenant = "acme"
    percent = "10"

Resolution, most specific first: (model, profile, site), (model, profile), (model, site),
(model), among the rates of the usage's class: spot usage only by ``class = "spot"`` rates
(a model with spot usage and no spot rate is a :class:`PricingError`), other usage only by
rates without a class (``class = "on_demand"`` may be written out). A MIG instance
without a profile rate is priced on its GPU's line at N/S of that line's rate: N is
:func:`metering.mig.profile_slices` (``3g.40gb`` and ``1c.3g.40gb`` alike are 3, ADR 0007)
and S the model's ``mig_slices``, read by :func:`metering.mig.mig_slices_from` (one per
model), the same S metering splits energy with. Usage no rate prices is a
:class:`PricingError` naming the model and one job: nothing is ever priced at zero.

Tiers apply to the exact quantity of one invoice line group (tenant × month × the rate
that priced it), graduated: each band is billed at its own price and shown as its own
line, so every line is quantity × unit price. A tenant's discount multiplies every price;
the discounted price must stay exact to :data:`billing.money.PRICE_MAX_PLACES` decimals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, Inexact, localcontext
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

from billing.errors import PricingError, RatesError
from billing.money import PRICE_MAX_PLACES, decimal_field, decimal_places, parse_decimal
from gpumeter import tomllines
from gpumeter.errors import InputError, Problems, strict
from gpumeter.tomllines import header_lines, key_line
from metering.mig import MigSlices, mig_slices_from, profile_slices

RATE_KEYS = frozenset({"model", "eur_per_gpu_hour", "mig_slices", "mig_profile", "site", "tier", "class"})
#: ``class`` values a ``[[rate]]`` may carry: spot prices spot jobs, on_demand (the default) the others.
RATE_CLASSES = ("on_demand", "spot")
TIER_KEYS = frozenset({"from_gpu_hours", "eur_per_gpu_hour"})
DISCOUNT_KEYS = frozenset({"tenant", "percent"})
TOP_KEYS = ("rate", "discount")


@dataclass(frozen=True)
class Tier:
    from_gpu_hours: Decimal
    eur_per_gpu_hour: Decimal
    line: int | None = None


@dataclass(frozen=True)
class Rate:
    """One ``[[rate]]``: the price of a model, or of one MIG profile, optionally at one site."""

    model: str
    eur_per_gpu_hour: Decimal
    mig_slices: int
    mig_profile: str | None = None
    site: str | None = None
    tiers: tuple[Tier, ...] = ()
    index: int = 0  # 1-based position among the [[rate]] tables
    line: int | None = None
    spot: bool = False  # class = "spot": prices spot jobs only

    def label(self) -> str:
        parts = [f"model {self.model!r}"]
        if self.spot:
            parts.append("class 'spot'")
        if self.mig_profile:
            parts.append(f"mig_profile {self.mig_profile!r}")
        if self.site:
            parts.append(f"site {self.site!r}")
        return f"[[rate]] #{self.index} ({', '.join(parts)})"


@dataclass(frozen=True)
class Discount:
    tenant: str
    percent: Decimal
    index: int = 0
    line: int | None = None


@dataclass(frozen=True)
class Band:
    """A price band of a rate: ``[from_hours, to_hours)`` at ``list_price`` per hour."""

    from_hours: Decimal
    to_hours: Decimal | None
    list_price: Decimal


@dataclass(frozen=True)
class PriceKey:
    """What one invoice line group is priced by; ``None`` parts are not priced apart."""

    gpu_model: str
    mig_profile: str | None
    site: str | None
    spot: bool = False  # priced by a class = "spot" rate


@dataclass(frozen=True)
class Resolution:
    """How one usage row is priced: by which rate, at which share of an hour per hour."""

    rate: Rate
    key: PriceKey
    factor: Fraction  # N/S for MIG on its GPU's line, else 1


@dataclass(frozen=True)
class RateCard:
    rates: tuple[Rate, ...]
    discounts: Mapping[str, Discount]
    file: str = "rates.toml"
    sha256: str = ""
    # What resolve() found, per (model, profile, site, spot): the card never changes, so a
    # resolution holds for every tenant and every call (a failure is never kept).
    _resolved: dict[tuple[str, str | None, str | None, bool], Resolution] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def rate_for(self, model: str, profile: str | None, site: str | None, *, spot: bool = False) -> Rate | None:
        """The most specific rate of the class for (model, profile, site); profile None = the GPU's rate."""
        best: Rate | None = None
        for r in self.rates:
            if r.model != model or r.mig_profile != profile or r.spot != spot:
                continue
            if r.site == site and site is not None:
                return r
            if r.site is None:
                best = r
        return best

    def discount_percent(self, tenant: str) -> Decimal:
        d = self.discounts.get(tenant)
        return d.percent if d else Decimal(0)

    def resolve(self, model: str, profile: str | None, site: str | None, *, job: str, spot: bool = False) -> Resolution:
        """Which rate prices this usage, and at what share; raises naming model and job."""
        site_key = site or None
        known = self._resolved.get((model, profile, site_key, spot))
        if known is not None:
            return known
        found = self._resolve(model, profile, site_key, job=job, spot=spot)
        self._resolved[(model, profile, site_key, spot)] = found
        return found

    def _resolve(self, model: str, profile: str | None, site_key: str | None, *, job: str, spot: bool) -> Resolution:
        if profile is not None:
            apart = self.rate_for(model, profile, site_key, spot=spot)
            if apart is not None:
                return Resolution(apart, PriceKey(model, profile, apart.site, spot), Fraction(1))
        gpu = self.rate_for(model, None, site_key, spot=spot)
        if gpu is None:
            what = ("spot usage of " if spot else "") + f"GPU model {model!r}"
            what += f" (MIG profile {profile!r})" if profile else ""
            rate = '[[rate]] with class = "spot"' if spot else "rate"
            raise PricingError(
                f"{what} has usage but no {rate} in {self.file}; job {job!r} used it",
                file=self.file,
                value=model,
                model=model,
                job=job,
            )
        if profile is None:
            return Resolution(gpu, PriceKey(model, None, gpu.site, spot), Fraction(1))
        n = profile_slices(profile)
        if n is None:
            raise PricingError(
                f"MIG profile {profile!r} of {model!r} (job {job!r}) is not of the form Ng.* "
                f"and has no rate of its own in {self.file}",
                file=self.file,
                value=profile,
                model=model,
                job=job,
            )
        if n > gpu.mig_slices:
            raise PricingError(
                f"MIG profile {profile!r} uses {n} slices but {gpu.label()} sets mig_slices = "
                f"{gpu.mig_slices} (job {job!r})",
                file=self.file,
                line=gpu.line,
                value=profile,
                model=model,
                job=job,
            )
        return Resolution(gpu, PriceKey(model, None, gpu.site, spot), Fraction(n, gpu.mig_slices))

    def models(self) -> frozenset[str]:
        """The GPU models some on-demand rate prices."""
        return frozenset(r.model for r in self.rates if not r.spot)

    def slices(self, model: str) -> int:
        """S, the model's number of MIG compute slices (the same on every rate of the model)."""
        return next(r.mig_slices for r in self.rates if r.model == model)


def bands(rate: Rate) -> tuple[Band, ...]:
    """The graduated bands of a rate, from hour 0 upward."""
    starts = [(Decimal(0), rate.eur_per_gpu_hour)] + [(t.from_gpu_hours, t.eur_per_gpu_hour) for t in rate.tiers]
    out = []
    for i, (start, price) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else None
        out.append(Band(start, end, price))
    return tuple(out)


@cache
def _band_bounds(rate: Rate) -> tuple[tuple[Band, Fraction, Fraction | None], ...]:
    return tuple(
        (b, Fraction(b.from_hours), Fraction(b.to_hours) if b.to_hours is not None else None) for b in bands(rate)
    )


def split_quantity(hours: Fraction, rate: Rate) -> list[tuple[Band, Fraction]]:
    """The exact hours that fall in each band (bands with no hours are left out)."""
    out = []
    for band, lo, hi in _band_bounds(rate):
        if hours <= lo:
            break
        top = hours if hi is None else min(hours, hi)
        out.append((band, top - lo))
    return out


@cache
def contracted_price(list_price: Decimal, percent: Decimal) -> Decimal:
    """``list_price`` less ``percent`` %, exactly (raises decimal.Inexact if it cannot be)."""
    with localcontext() as ctx:
        ctx.prec = 60
        ctx.traps[Inexact] = True
        return (list_price * (Decimal(100) - percent) / Decimal(100)).normalize()


# --- parsing -----------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, file: str, mig_slices: MigSlices) -> None:
        self.text = text
        self.file = file
        self.mig_slices = mig_slices
        self.rate_lines = header_lines(text, "rate")
        self.tier_lines = header_lines(text, "rate.tier")
        self.discount_lines = header_lines(text, "discount")
        self.tier_seen = 0

    def fail(self, message: str, *, line: int | None, value: object = None) -> RatesError:
        return RatesError(message, file=self.file, line=line, value=value)

    def money(self, table: Mapping[str, Any], key: str, where: str, start: int | None) -> Decimal:
        line = key_line(self.text, start, key)
        if key not in table:
            raise self.fail(f"{where}: {key} is required", line=start)
        raw = table[key]
        value, problem = decimal_field(raw, max_places=PRICE_MAX_PLACES)
        if value is None:
            if problem and problem.startswith("has more than"):
                problem += " (EN 16931 / French CTC price precision)"
            raise self.fail(f"{where}: {key} {problem}", line=line, value=raw)
        return value

    def string(
        self, table: Mapping[str, Any], key: str, where: str, start: int | None, *, required: bool
    ) -> str | None:
        if key not in table:
            if required:
                raise self.fail(f"{where}: {key} is required", line=start)
            return None
        raw = table[key]
        line = key_line(self.text, start, key)
        if not isinstance(raw, str) or not raw.strip():
            raise self.fail(f"{where}: {key} must be a non-empty string", line=line, value=raw)
        return raw.strip()

    def unknown(self, table: Mapping[str, Any], allowed: frozenset[str], where: str, start: int | None) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(
                    f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})",
                    line=key_line(self.text, start, key),
                    value=key,
                )

    def rate(self, table: Any, index: int) -> Rate:
        start = self.rate_lines[index - 1] if index - 1 < len(self.rate_lines) else None
        where = f"[[rate]] #{index}"
        if not isinstance(table, dict):
            raise self.fail(f"{where} must be a table", line=start, value=table)
        self.unknown(table, RATE_KEYS, where, start)
        model = self.string(table, "model", where, start, required=True)
        assert model is not None  # required=True
        where = f"[[rate]] #{index} (model {model!r})"
        price = self.money(table, "eur_per_gpu_hour", where, start)
        profile = self.string(table, "mig_profile", where, start, required=False)
        site = self.string(table, "site", where, start, required=False)
        klass = self.string(table, "class", where, start, required=False)
        if klass is not None and klass not in RATE_CLASSES:
            raise self.fail(
                f"{where}: class must be one of {', '.join(RATE_CLASSES)} (reserved usage beyond a reservation "
                "is priced like on_demand usage)",
                line=key_line(self.text, start, "class"),
                value=klass,
            )
        if profile is not None and profile_slices(profile) is None:
            raise self.fail(
                f"{where}: mig_profile must look like '1g.10gb' (N GPU slices, 'g', memory)",
                line=key_line(self.text, start, "mig_profile"),
                value=profile,
            )
        tiers_raw = table.get("tier", [])
        if not isinstance(tiers_raw, list):
            raise self.fail(f"{where}: tier must be an array of tables [[rate.tier]]", line=start, value=tiers_raw)
        tiers: list[Tier] = []
        for j, t in enumerate(tiers_raw, start=1):
            tstart = self.tier_lines[self.tier_seen] if self.tier_seen < len(self.tier_lines) else start
            self.tier_seen += 1
            twhere = f"{where} tier #{j}"
            if not isinstance(t, dict):
                raise self.fail(f"{twhere} must be a table", line=tstart, value=t)
            self.unknown(t, TIER_KEYS, twhere, tstart)
            frm = self.money(t, "from_gpu_hours", twhere, tstart)
            tp = self.money(t, "eur_per_gpu_hour", twhere, tstart)
            if tiers and frm <= tiers[-1].from_gpu_hours:
                raise self.fail(
                    f"{twhere}: from_gpu_hours must increase from one tier to the next",
                    line=key_line(self.text, tstart, "from_gpu_hours"),
                    value=table["tier"][j - 1]["from_gpu_hours"],
                )
            tiers.append(Tier(frm, tp, tstart))
        return Rate(
            model, price, self.mig_slices(model), profile, site, tuple(tiers), index, start, spot=klass == "spot"
        )

    def discount(self, table: Any, index: int) -> Discount:
        start = self.discount_lines[index - 1] if index - 1 < len(self.discount_lines) else None
        where = f"[[discount]] #{index}"
        if not isinstance(table, dict):
            raise self.fail(f"{where} must be a table", line=start, value=table)
        self.unknown(table, DISCOUNT_KEYS, where, start)
        tenant = self.string(table, "tenant", where, start, required=True)
        assert tenant is not None
        where = f"[[discount]] #{index} (tenant {tenant!r})"
        line = key_line(self.text, start, "percent")
        if "percent" not in table:
            raise self.fail(f"{where}: percent is required", line=start)
        raw = table["percent"]
        if isinstance(raw, bool | int | float):
            raise self.fail(f'{where}: percent must be a decimal string such as "10"', line=line, value=raw)
        pct = parse_decimal(raw)
        if pct is None or not Decimal(0) < pct < Decimal(100):
            raise self.fail(
                f"{where}: percent must be a decimal string strictly between 0 and 100", line=line, value=raw
            )
        return Discount(tenant, pct, index, start)


def parse_rates(text: str, *, file: str | Path = "rates.toml", problems: Problems | None = None) -> RateCard:
    """Parse and check rates.toml; the first bad value raises :class:`RatesError`.

    With ``Problems(keep=True)`` every bad table is reported there instead, and the card
    holds the good ones. Text that is not TOML always raises.
    """
    problems = strict(problems)
    fname = str(file)
    doc = tomllines.parse(text, file=fname, error=RatesError, tables=TOP_KEYS, problems=problems)
    try:
        mig_slices = mig_slices_from(doc, text, file=fname, problems=problems)
    except InputError as exc:  # raised only when not keeping problems: the first, as the card's error
        raise RatesError(exc.message, file=fname, line=exc.line, value=exc.value) from exc
    p = _Parser(text, fname, mig_slices)
    raw_rates = doc.get("rate", [])
    raw_discounts = doc.get("discount", [])
    if not isinstance(raw_rates, list) or not raw_rates:
        problems.add(RatesError("no [[rate]] tables: every GPU model with usage needs a rate", file=fname))
        raw_rates = []
    if not isinstance(raw_discounts, list):
        problems.add(RatesError("discount must be an array of tables [[discount]]", file=fname, value=raw_discounts))
        raw_discounts = []
    rates: list[Rate] = []
    seen: dict[tuple[str, str | None, str | None, bool], Rate] = {}
    for i, t in enumerate(raw_rates, start=1):
        with problems.guard():
            r = p.rate(t, i)
            what = (r.model, r.mig_profile, r.site, r.spot)
            if what in seen:
                raise RatesError(
                    f"{r.label()} prices the same thing as {seen[what].label()}", file=fname, line=r.line, value=r.model
                )
            seen[what] = r
            rates.append(r)
    discounts: dict[str, Discount] = {}
    for i, t in enumerate(raw_discounts, start=1):
        with problems.guard():
            d = p.discount(t, i)
            if d.tenant in discounts:
                raise RatesError(
                    f"[[discount]] #{i}: tenant {d.tenant!r} already has a discount ([[discount]] "
                    f"#{discounts[d.tenant].index})",
                    file=fname,
                    line=d.line,
                    value=d.tenant,
                )
            _check_discounted_prices(rates, [d], fname)
            discounts[d.tenant] = d
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return RateCard(tuple(rates), discounts, fname, digest)


def _check_discounted_prices(rates: Iterable[Rate], discounts: Iterable[Discount], fname: str) -> None:
    for d in discounts:
        for r in rates:
            for band in bands(r):
                try:
                    price = contracted_price(band.list_price, d.percent)
                except Inexact:
                    price = None
                if price is None or decimal_places(price) > PRICE_MAX_PLACES:
                    raise RatesError(
                        f"[[discount]] #{d.index} (tenant {d.tenant!r}): {d.percent} % off {band.list_price} "
                        f"({r.label()}) is not exact to {PRICE_MAX_PLACES} decimals",
                        file=fname,
                        line=d.line,
                        value=str(d.percent),
                    )
