"""A simulated fleet: its raw series and the ground truth behind them (see :mod:`simulator.build`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from metering.samples import Series
from simulator._telemetry import NodeState
from simulator.model import (
    Assignment,
    Event,
    FleetSpec,
    GpuInfo,
    JobInfo,
    NodeInfo,
    RateInfo,
    StorageInfo,
    Target,
    TenantInfo,
)


@dataclass(eq=False)
class Fleet:
    spec: FleetSpec
    series: list[Series]
    nodes: list[NodeInfo]
    storage: list[StorageInfo]
    jobs: list[JobInfo]
    tenants: list[TenantInfo]
    rates: list[RateInfo]
    gpus: list[GpuInfo]
    assignments: list[Assignment]
    targets: list[Target]
    events: list[Event]
    unlisted_job_ids: tuple[str, ...]
    state: Sequence[NodeState] = field(repr=False, default=())  # for live exporter pages

    @property
    def sample_count(self) -> int:
        return sum(len(s.ts_ms) for s in self.series)

    def job(self, job_id: str) -> JobInfo:
        for j in self.jobs:
            if j.job_id == job_id:
                return j
        raise KeyError(job_id)

    def node(self, hostname: str) -> NodeInfo:
        for n in self.nodes:
            if n.hostname == hostname:
                return n
        raise KeyError(hostname)
