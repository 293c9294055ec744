"""The simulator's data model: what determines a fleet (:class:`FleetSpec`, :class:`Traps`,
the demo and benchmark presets) and the ground-truth records a fleet is made of (nodes,
GPUs, jobs, tenants, rates, scrape targets, exporter events). Pure data: of the rest of
the simulator it imports only the job mix (:mod:`simulator._schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from metering.inventory import Job, Node, StorageLocation, Tenant
from simulator._schedule import JobMix

DEMO_START = datetime(2025, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Traps:
    """The real-world oddities the telemetry carries; :meth:`none` switches all off.

    Rates are expectations (Poisson) per node and simulated day; shares are per node;
    probabilities per job or per sample. A trap that is on is made to happen at least
    once, however short the period, wherever the fleet allows it (a requeue needs a job
    that ends early enough for another to start after it; an upgrade must fall inside
    the period), so a test can rely on meeting it.
    """

    outages_per_node_day: float = 0.15  # exporter down: no samples for a stretch
    outage_minutes: tuple[float, float] = (5.0, 120.0)
    restarts_per_node_day: float = 0.08  # exporter restart + driver reload: short gap, energy counter reset
    upgrade_at: float | None = 0.5  # fraction of the period when exporters go 4.5 -> 4.6 (Hostname -> hostname)
    upgrade_nodes: float = 1.0  # share of nodes upgraded (rolling, 90 s apart)
    second_scrape_job: float = 0.25  # share of nodes also scraped by a second Prometheus job
    ha_pair: float = 0.25  # share of nodes also scraped by a second Prometheus replica (label ``replica``)
    shared_gpu: float = 0.05  # probability a single-GPU job time-slices its GPU with 1-2 more jobs
    nan_util: float = 2e-5  # probability a utilisation reading is NaN
    odd_job_ids: bool = True  # job ids with '"', '\\', spaces, unicode, ',' and ';'
    mig_mixed_jobs: bool = True  # MIG instances of one GPU hold different jobs (else one job takes all)
    zero_idle_nodes: float = 0.3  # share of nodes whose prolog writes "0" when a GPU is idle
    requeues: int = 2  # jobs requeued onto another node (same job id); the first crosses to a non-EU site
    unlisted_jobs: int = 1  # jobs seen in telemetry but absent from jobs.csv

    @classmethod
    def none(cls) -> Traps:
        return cls(
            outages_per_node_day=0.0,
            restarts_per_node_day=0.0,
            upgrade_at=None,
            upgrade_nodes=0.0,
            second_scrape_job=0.0,
            ha_pair=0.0,
            shared_gpu=0.0,
            nan_util=0.0,
            odd_job_ids=False,
            mig_mixed_jobs=False,
            zero_idle_nodes=0.0,
            requeues=0,
            unlisted_jobs=0,
        )


@dataclass(frozen=True)
class FleetSpec:
    """Everything that determines a fleet; the same spec always gives the same fleet."""

    seed: int
    start: datetime
    duration: timedelta
    scrape_interval_s: int = 15
    gpus: int = 20
    node_sizes: tuple[int, ...] = (4, 2)  # GPUs per node, cycled
    mig_fraction: float = 0.25  # share of each MIG-capable model's GPUs in MIG mode
    job_label: str = "hpc_job"
    epoch_aligned: bool = False  # primary targets sample exactly on the epoch grid
    jitter_ms: int = 0  # per-sample scrape-time jitter, 0..jitter_ms (phases stay clear of slot edges)
    whole_gpu_gr_active: bool = True  # DCGM_FI_PROF_GR_ENGINE_ACTIVE on whole GPUs as well
    foreign_data: float = 0.03  # probability a job also reads data from a non-EU bucket
    jobs: JobMix = field(default_factory=JobMix)
    traps: Traps = field(default_factory=Traps)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0):
            raise ValueError("FleetSpec.start must be a UTC-aware datetime")
        if self.duration <= timedelta(0):
            raise ValueError("FleetSpec.duration must be positive")
        if self.scrape_interval_s <= 0 or 3600 % self.scrape_interval_s:
            raise ValueError("scrape_interval_s must divide one hour")
        if self.gpus < 1 or not self.node_sizes or min(self.node_sizes) < 1 or max(self.node_sizes) > 8:
            raise ValueError("need at least one GPU and node sizes between 1 and 8")
        if not 0 <= self.jitter_ms < self.scrape_interval_s * 500:
            raise ValueError("jitter_ms must be below half the scrape interval")

    @property
    def start_ms(self) -> int:
        return round(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return self.start_ms + round(self.duration.total_seconds() * 1000)

    @property
    def interval_ms(self) -> int:
        return self.scrape_interval_s * 1000

    @property
    def days(self) -> float:
        return self.duration.total_seconds() / 86400


# The fleet's nodes, storage, jobs and tenants are the inventory's own records: what the
# simulator writes to nodes.csv … tenants.csv is what metering reads back, field for field.
NodeInfo = Node
StorageInfo = StorageLocation
JobInfo = Job
TenantInfo = Tenant


@dataclass(frozen=True)
class RateInfo:
    model: str
    eur_per_gpu_hour: str  # decimal string
    mig_slices: int | None = None  # written only where the default (7, or 4 for A30) needs saying


@dataclass(frozen=True)
class MigInstance:
    gpu_i_id: int
    profile: str

    @property
    def slices(self) -> int:
        return int(self.profile.split("g.", 1)[0])


@dataclass(frozen=True)
class GpuInfo:
    hostname: str
    gpu: int  # DCGM gpu id (label ``gpu``)
    uuid: str
    pci_bus_id: str
    model: str
    mig: tuple[MigInstance, ...] = ()  # empty: whole GPU


@dataclass(frozen=True)
class Assignment:
    """A job on a GPU or MIG instance (mapping-file truth; may start before the period)."""

    hostname: str
    uuid: str
    gpu_i_id: str  # "" on a whole GPU
    profile: str | None
    model: str
    job_id: str
    start_ms: int
    end_ms: int
    shared: bool  # time-slices a GPU another job holds


@dataclass(frozen=True)
class Target:
    """One scrape loop: a Prometheus job (and replica) scraping one node's exporter."""

    hostname: str
    job: str
    instance: str
    replica: str | None
    phase_ms: int


@dataclass(frozen=True)
class Event:
    """An exporter event on a node: ``outage`` and ``restart`` have no samples in
    [start_ms, end_ms) (a restart also resets the energy counters at start_ms);
    ``upgrade`` renames ``Hostname`` to ``hostname`` from start_ms on (end_ms = start_ms)."""

    hostname: str
    kind: str
    start_ms: int
    end_ms: int


def small_spec(
    seed: int = 1, start: datetime = DEMO_START, days: float = 30.0, *, traps: Traps | None = None
) -> FleetSpec:
    """The demo fleet: 20 GPUs on 7 nodes in FR, DE, NL, FI, IT, US and CH, traps on."""
    return FleetSpec(
        seed=seed,
        start=start,
        duration=timedelta(days=days),
        gpus=20,
        node_sizes=(4, 2),
        traps=Traps() if traps is None else traps,
    )


def bench_spec(seed: int = 1, start: datetime = DEMO_START, days: float = 7.0, gpus: int = 256) -> FleetSpec:
    """The benchmark fleet: 8-GPU nodes, long jobs, a few MIG GPUs, other traps off.

    256 GPUs over 7 days at 15 s give about 20.7 M samples (GPU_UTIL and energy on every
    whole GPU, GR_ENGINE_ACTIVE and energy on each MIG instance).
    """
    return FleetSpec(
        seed=seed,
        start=start,
        duration=timedelta(days=days),
        gpus=gpus,
        node_sizes=(8,),
        mig_fraction=0.02,
        whole_gpu_gr_active=False,
        foreign_data=0.01,
        jobs=JobMix(
            min_hours=12.0,
            median_hours=40.0,
            max_hours=120.0,
            idle_hours_mean=0.5,
            max_idle_hours=4.0,
            back_to_back=0.6,
            multi_gpu=0.7,
        ),
        traps=replace(Traps.none(), mig_mixed_jobs=True),
    )
