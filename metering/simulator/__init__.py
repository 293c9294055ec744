"""A deterministic synthetic DCGM fleet for demos, tests and benchmarks.

::

    fleet = small_fleet(seed=1, start=datetime(2025, 3, 1, tzinfo=UTC), days=30)
    fleet.series            # metering.samples.Series, labels as dcgm-exporter + Prometheus
    fleet.jobs, fleet.nodes # the ground-truth inventory
    write_inventory(fleet, "site/")            # CSVs, rates.toml, gpumeter.toml
    backfill(fleet.series, "tsdb/", "work/")   # promtool blocks for a real Prometheus
    vm_import("http://127.0.0.1:8428", fleet.series)
"""

from metering.simulator._schedule import JobMix
from metering.simulator.exposition import (
    backfill,
    render_exporter_page,
    vm_import,
    vm_import_chunks,
    vm_import_payload,
    write_openmetrics,
    write_openmetrics_days,
)
from metering.simulator.fleet import (
    DEMO_START,
    Assignment,
    Event,
    Fleet,
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
    bench_fleet,
    bench_spec,
    simulate,
    small_fleet,
    small_spec,
)
from metering.simulator.inventory_files import write_inventory
from metering.simulator.server import serve_exporter

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
    "StorageInfo",
    "Target",
    "TenantInfo",
    "Traps",
    "backfill",
    "bench_fleet",
    "bench_spec",
    "render_exporter_page",
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
