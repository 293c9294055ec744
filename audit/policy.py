"""Named, versioned sovereignty boundaries, and the per-job check against one.

A boundary is never a bare "in Europe" flag: each verdict records the policy it was made
under. ``[audit] allowed_countries`` lists named sets and ISO 3166-1 alpha-2 codes:

=========  ====================================  ==========
name       countries                             version
=========  ====================================  ==========
EU / EU27  the 27 member states (since 2020-02)  1
EEA        EU27 + IS, LI, NO                     1
EFTA       IS, LI, NO, CH                        1
EU+EFTA    EU27 + IS, LI, NO, CH                 1
=========  ====================================  ==========

Codes may be added (``["EU", "CH"]`` → policy ``EU+CH``). The policy's name joins the
configured items with ``+`` in the given order; its id is ``<name>/v<version>``, where
the version changes whenever gpumeter changes what a named set contains. The canonical
``policy.json`` also lists every country, so a verdict can be re-checked without gpumeter.

:func:`check_job` returns a frozen :class:`JobCheck` for reports; :func:`verify_job` raises
:class:`SovereigntyViolation` for gates. Both use :func:`gpumeter.sovereignty.judge`.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.errors import PolicyError, SovereigntyViolation
from gpumeter.countries import NAMED_SETS, expand
from gpumeter.sovereignty import judge

POLICY_VERSION = 1


@dataclass(frozen=True)
class Policy:
    """A boundary: the configured items, what they expand to, and a versioned name."""

    items: tuple[str, ...]
    countries: frozenset[str]
    version: int = POLICY_VERSION

    @property
    def name(self) -> str:
        return "+".join(self.items)

    @property
    def id(self) -> str:
        return f"{self.name}/v{self.version}"

    def allows(self, country: str | None) -> bool:
        return country is not None and country in self.countries

    def document(self) -> dict[str, Any]:
        """The content of ``policy.json`` (no tenant data)."""
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "items": list(self.items),
            "named_sets": {item: sorted(NAMED_SETS[item]) for item in self.items if item in NAMED_SETS},
            "countries": sorted(self.countries),
            "rule": (
                "a job is inside the boundary when every host telemetry shows it on, and every data "
                "location it declares, is in one of these countries; a host missing from nodes.csv "
                "or a location no storage.csv prefix covers is a finding"
            ),
        }


def policy(items: Sequence[str] = ("EU",)) -> Policy:
    """The boundary named by ``[audit] allowed_countries`` (default ``["EU"]``)."""
    if isinstance(items, str) or not items:
        raise PolicyError("allowed_countries must be a non-empty list", value=items)
    try:
        countries = expand(items)
    except ValueError as exc:
        raise PolicyError(
            "allowed_countries holds an unknown set or ISO 3166-1 alpha-2 code "
            f"(sets: {', '.join(sorted(NAMED_SETS))})",
            value=exc.args[0],
        ) from exc
    if len(set(items)) != len(items):
        raise PolicyError("allowed_countries lists an item twice", value=list(items))
    return Policy(tuple(items), countries)


@dataclass(frozen=True)
class JobCheck:
    """The verdict on one job under one policy, with the evidence it rests on."""

    job_id: str
    tenant: str | None
    policy: str
    passed: bool
    hosts: tuple[str, ...]
    countries: tuple[str, ...]
    data_locations: tuple[str, ...]
    data_countries: tuple[str, ...]
    findings: tuple[str, ...]


def check_job(
    job_id: str,
    tenant: str | None,
    hosts: Iterable[str],
    data_locations: Iterable[str],
    *,
    host_country: Mapping[str, str] | Callable[[str], str | None],
    location_country: Callable[[str], str | None],
    boundary: Policy,
) -> JobCheck:
    """Judge one job's hosts and declared data locations under ``boundary``."""
    hosts = tuple(sorted(set(hosts)))
    data_locations = tuple(sorted(set(data_locations)))
    verdict = judge(
        hosts,
        data_locations,
        host_country=host_country,
        location_country=location_country,
        allowed=boundary.countries,
    )
    return JobCheck(
        job_id=job_id,
        tenant=tenant,
        policy=boundary.id,
        passed=verdict.in_boundary,
        hosts=hosts,
        countries=verdict.host_countries,
        data_locations=data_locations,
        data_countries=verdict.data_countries,
        findings=tuple(f.text() for f in verdict.findings),
    )


def verify_job(
    job_id: str,
    tenant: str | None,
    hosts: Iterable[str],
    data_locations: Iterable[str],
    *,
    host_country: Mapping[str, str] | Callable[[str], str | None],
    location_country: Callable[[str], str | None],
    boundary: Policy,
) -> JobCheck:
    """As :func:`check_job`, but raise :class:`SovereigntyViolation` when the job is outside."""
    result = check_job(
        job_id,
        tenant,
        hosts,
        data_locations,
        host_country=host_country,
        location_country=location_country,
        boundary=boundary,
    )
    if not result.passed:
        raise SovereigntyViolation(f"job {job_id} is outside boundary {boundary.id}: {'; '.join(result.findings)}")
    return result
