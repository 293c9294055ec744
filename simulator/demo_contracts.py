"""Contracts for the demo site, chosen from the fleet's ground truth (deterministic).

:func:`demo_contracts` picks, from the assignments of the simulated period:

- the tenant with the most whole-GPU time on one model gets a one-GPU **reservation** of
  that model, starting on the period's second day, at 75 % of the model's rate; its
  shortest job runs as a **spot** job (priced by a spot rate, half the model's rate);
- the tenant with the next most GPU time gets a **promotional credit** expiring on the
  period's eleventh day (mid-month) and a **prepaid credit**.

Every other tenant has no contract, so its invoice is the one it would be without them.
The text follows docs/formats.md ("contracts.toml"); rates are decimal strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from simulator import _catalog as cat
from simulator.fleet import Fleet

RESERVED_SHARE = Decimal("0.75")
SPOT_SHARE = Decimal("0.5")


@dataclass(frozen=True)
class DemoContracts:
    text: str  # contracts.toml
    spot_jobs: frozenset[str]  # job ids whose jobs.csv class is spot
    spot_rates: dict[str, str]  # model -> EUR per GPU-hour of its spot rate
    reserved_tenant: str
    credit_tenant: str


def _price(model: str, share: Decimal) -> str:
    return str((Decimal(cat.MODELS[model].eur_per_gpu_hour) * share).quantize(Decimal("0.01")))


def _day(fleet: Fleet, days: int) -> str:
    start = datetime.fromtimestamp(fleet.spec.start_ms / 1000, tz=UTC)
    return (start + timedelta(days=days)).date().isoformat()


def demo_contracts(fleet: Fleet) -> DemoContracts | None:
    """The demo's contracts, or None when the fleet has too few tenants with usage."""
    tenant_of = {j.job_id: j.tenant for j in fleet.jobs}
    start, end = fleet.spec.start_ms, fleet.spec.end_ms
    whole: dict[tuple[str, str], int] = {}
    per_tenant: dict[str, int] = {}
    per_job: dict[str, int] = {}
    for a in fleet.assignments:
        tenant = tenant_of.get(a.job_id)
        held = min(a.end_ms, end) - max(a.start_ms, start)
        if tenant is None or held <= 0:
            continue
        per_tenant[tenant] = per_tenant.get(tenant, 0) + held
        per_job[a.job_id] = per_job.get(a.job_id, 0) + held
        if a.profile is None:
            whole[(tenant, a.model)] = whole.get((tenant, a.model), 0) + held
    if not whole or len(per_tenant) < 2:
        return None
    reserved, model = max(whole, key=lambda k: (whole[k], k))
    credit_tenant = max((t for t in per_tenant if t != reserved), key=lambda t: (per_tenant[t], t))
    spot_job = min((j for j in per_job if tenant_of[j] == reserved), key=lambda j: (per_job[j], j))
    spot_models = sorted({a.model for a in fleet.assignments if a.job_id == spot_job})
    text = f"""# Demo contracts (docs/formats.md, "contracts.toml"): EUR, decimal strings, UTC dates.

[[reservation]]
id = "RES-DEMO-1"
tenant = "{reserved}"
model = "{model}"
gpus = 1
start = "{_day(fleet, 1)}"
end = "2027-10-01"
eur_per_gpu_hour = "{_price(model, RESERVED_SHARE)}"

[[credit]]
id = "PROMO-DEMO"
tenant = "{credit_tenant}"
kind = "promotional"
eur = "250.00"
priority = 1
start = "{_day(fleet, 0)}"
expires = "{_day(fleet, 10)}"

[[credit]]
id = "PREPAID-DEMO"
tenant = "{credit_tenant}"
kind = "prepaid"
eur = "100.00"
start = "{_day(fleet, 0)}"
"""
    return DemoContracts(
        text=text,
        spot_jobs=frozenset({spot_job}),
        spot_rates={m: _price(m, SPOT_SHARE) for m in spot_models},
        reserved_tenant=reserved,
        credit_tenant=credit_tenant,
    )
