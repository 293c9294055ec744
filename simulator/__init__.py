"""A deterministic synthetic DCGM fleet for the demo, tests and benchmarks.

Not part of the product: it ships in the wheel only because ``gpumeter demo`` runs on it.
It depends on nothing of gpumeter but the sample model (:mod:`metering.samples`) and the
country list (:mod:`gpumeter.countries`). Modules import one way: ``model`` (spec and
records) <- ``_telemetry`` <- ``fleet`` <- ``build`` <- ``exposition``, ``server``,
``inventory_files``, ``backend``.

::

    fleet = small_fleet(seed=1, start=datetime(2025, 3, 1, tzinfo=UTC), days=30)
    fleet.series            # metering.samples.Series, labels as dcgm-exporter + Prometheus
    fleet.jobs, fleet.nodes # the ground-truth inventory
    write_inventory(fleet, "site/")            # CSVs, rates.toml, gpumeter.toml
    backfill(fleet.series, "tsdb/", "work/")   # promtool blocks for a real Prometheus
    vm_import("http://127.0.0.1:8428", fleet.series)
    collect(con, cfg, span, client=SimulatedBackend(fleet.series))  # metering, no server
"""

from simulator._schedule import JobMix
from simulator.backend import SimulatedBackend
from simulator.build import bench_fleet, series_between, simulate, small_fleet
from simulator.exposition import (
    backfill,
    render_exporter_page,
    vm_import,
    vm_import_chunks,
    vm_import_payload,
    write_openmetrics,
    write_openmetrics_days,
)
from simulator.fleet import Fleet
from simulator.inventory_files import write_inventory
from simulator.model import (
    DEMO_START,
    Assignment,
    Event,
    FleetSpec,
    GpuInfo,
    JobInfo,
    MigInstance,
    NodeInfo,
    RateInfo,
    StorageInfo,
    Target,
    TenantInfo,
    Traps,
    bench_spec,
    small_spec,
)
from simulator.server import serve_exporter

__all__ = [
    "DEMO_START",
    "Assignment",
    "Event",
    "Fleet",
    "FleetSpec",
    "GpuInfo",
    "JobInfo",
    "JobMix",
    "MigInstance",
    "NodeInfo",
    "RateInfo",
    "SimulatedBackend",
    "StorageInfo",
    "Target",
    "TenantInfo",
    "Traps",
    "backfill",
    "bench_fleet",
    "bench_spec",
    "render_exporter_page",
    "series_between",
    "serve_exporter",
    "simulate",
    "small_fleet",
    "small_spec",
    "vm_import",
    "vm_import_chunks",
    "vm_import_payload",
    "write_inventory",
    "write_openmetrics",
    "write_openmetrics_days",
]
