"""``gpumeter check``'s billing findings: rates.toml is valid, and prices what telemetry shows.

rates.toml is read with the loader invoicing uses (:func:`billing.run.read_rates`), keeping
every bad value rather than stopping at the first; whether a model is priced is decided by
:meth:`billing.rates.RateCard.resolve`, the rule an invoice applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from billing.errors import PricingError, RatesError
from billing.rates import RateCard
from billing.run import read_rates
from gpumeter.errors import Problems
from gpumeter.findings import Finding, failed, from_problems, passed


def check_rates_file(path: Path) -> tuple[RateCard | None, list[Finding]]:
    """The card (None when the file cannot be read or is not TOML) and its findings."""
    name = "billing.rates_file"
    problems = Problems(keep=True)
    try:
        card = read_rates(path, problems)
    except RatesError as exc:
        return None, [failed(name, exc.explain(), "write a valid rates.toml (see README)")]
    if problems.found:
        return card, from_problems(name, problems.found, "correct rates.toml at that line")
    return card, [passed(name, f"{path} is valid: {len(card.rates)} rates", rates=len(card.rates))]


def check_rate_coverage(card: RateCard, seen: Iterable[tuple[str, str | None, str | None]]) -> Finding:
    """``gpumeter check``: does ``card`` price every (model, MIG profile, site) telemetry shows?

    Uses :meth:`RateCard.resolve`, the rule invoicing applies: what it refuses here would
    stop the month's invoices.
    """
    name = "billing.rates"
    unpriced: dict[str, str] = {}
    models = set()
    for model, profile, site in seen:
        models.add(model)
        try:
            card.resolve(model, profile, site, job="(any)")
        except PricingError as exc:
            what = model + (f" (MIG profile {profile})" if profile else "") + (f" at site {site}" if site else "")
            unpriced.setdefault(what, exc.message)
    if not unpriced:
        return passed(name, f"{card.file} prices all {len(models)} GPU models seen in telemetry", models=sorted(models))
    names = sorted(unpriced)
    shown = "; ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return failed(
        name,
        f"telemetry shows {len(names)} GPU model(s) that {card.file} does not price: {shown}; "
        "invoicing would stop at their first usage",
        f'add a [[rate]] with model = "<modelName>" and eur_per_gpu_hour = "<price>" for each to {card.file}',
        unpriced=names,
        reasons=unpriced,
    )
