"""The sovereignty verdict on one job: pure, shared by ``usage`` and the audit log.

A job is inside the boundary (``in_eu``) when every host telemetry showed it on and every
data location it declares is in an allowed country. Missing knowledge never passes: a host
absent from nodes.csv or a data location no storage.csv prefix covers is a finding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Finding:
    kind: str  # host_unknown | host_outside | data_unknown | data_outside
    subject: str  # hostname or storage URI
    country: str | None

    def text(self) -> str:
        if self.kind == "host_unknown":
            return f"host {self.subject} is not in nodes.csv"
        if self.kind == "host_outside":
            return f"host {self.subject} is in {self.country}, outside the boundary"
        if self.kind == "data_unknown":
            return f"data location {self.subject} has no known country"
        return f"data location {self.subject} is in {self.country}, outside the boundary"


@dataclass(frozen=True)
class Verdict:
    in_boundary: bool
    host_countries: tuple[str, ...]  # sorted distinct countries of known hosts
    data_countries: tuple[str, ...]  # sorted distinct countries of known data locations
    findings: tuple[Finding, ...]


def judge(
    hosts: Iterable[str],
    data_locations: Iterable[str],
    *,
    host_country: Mapping[str, str] | Callable[[str], str | None],
    location_country: Callable[[str], str | None],
    allowed: frozenset[str],
) -> Verdict:
    """The verdict for one job from its hosts and declared data locations."""
    lookup: Callable[[str], str | None] = host_country.get if isinstance(host_country, Mapping) else host_country
    findings: list[Finding] = []
    hc: set[str] = set()
    for host in sorted(set(hosts)):
        c = lookup(host)
        if c is None:
            findings.append(Finding("host_unknown", host, None))
            continue
        hc.add(c)
        if c not in allowed:
            findings.append(Finding("host_outside", host, c))
    dc: set[str] = set()
    for loc in sorted(set(data_locations)):
        c = location_country(loc)
        if c is None:
            findings.append(Finding("data_unknown", loc, None))
            continue
        dc.add(c)
        if c not in allowed:
            findings.append(Finding("data_outside", loc, c))
    return Verdict(not findings, tuple(sorted(hc)), tuple(sorted(dc)), tuple(findings))
