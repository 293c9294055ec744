"""A preempted spot job is billed exactly to its last held slot, at the spot rate.

That is the metering rule (a slot is held when a sample carrying the job label falls in it),
shown end to end: telemetry through the real collector (the simulated backend, no server),
the store, and the invoice priced with a ``class = "spot"`` rate.
"""

from __future__ import annotations

import json
from pathlib import Path

from billing.run import invoice_month
from gpumeter.config import load_config
from metering.run import collect
from metering.samples import UTIL
from metering.windows import Span
from simulator import SimulatedBackend
from testing.stores import new_store
from tests.scenarios import S, gpu_labels, grid, ms, series
from tests.sites import make_site

JOBS = "job_id,tenant,project,data_locations,class\nspot-1,acme,train,,spot\njob-od,acme,train,,\n"
SPOT_RATE = '\n[[rate]]\nmodel = "NVIDIA H100 80GB HBM3"\nclass = "spot"\neur_per_gpu_hour = "1.40"\n'


def test_a_preempted_spot_job_is_billed_to_its_last_held_slot_at_the_spot_rate(tmp_path: Path) -> None:
    config_path = make_site(tmp_path / "site", "http://127.0.0.1:9", jobs=JOBS)
    with open(tmp_path / "site" / "rates.toml", "a", encoding="utf-8") as rates:
        rates.write(SPOT_RATE)
    cfg = load_config(config_path)
    start, end = ms("2026-10-05T10:00:00"), ms("2026-10-05T11:00:00")
    preempted = ms("2026-10-05T10:23:07")  # the last sample the spot job's label is on
    gpu = gpu_labels("GPU-5b07-0000-0000-0000-000000000001")
    other = gpu_labels("GPU-5b07-0000-0000-0000-000000000002", gpu="1")
    held = [t for t in grid(start, end, phase=7_000) if t <= preempted]
    after = [t for t in grid(start, end, phase=7_000) if t > preempted]
    telemetry = [
        series(UTIL, gpu, "spot-1", held, [90.0] * len(held)),  # scraped 7 s into each slot
        series(UTIL, gpu, "0", after, [0.0] * len(after)),  # preempted: the GPU is idle
        series(UTIL, other, "job-od", grid(start, end), [50.0] * len(grid(start, end))),  # on demand, 1 h
    ]
    con = new_store(cfg.store.database)
    try:
        collect(con, cfg, Span(start, end), client=SimulatedBackend(telemetry))
        (draft,) = invoice_month(con, cfg, "2026-10", False)
        doc = json.loads(draft.json_path.read_text(encoding="utf-8"))
    finally:
        con.close()
    # Slots 10:00:00 .. 10:23:00 are held: 93 slots of 15 s = 1395 s = 0.3875 GPU-hours;
    # nothing after the last sample, however the hour ends. 0.3875 x 1.40 = 0.5425 -> 0.54.
    assert len(held) == 93 and S == 15_000
    assert [(ln["kind"], ln["gpu_hours"], ln["unit_price"], ln["amount"]) for ln in doc["lines"]] == [
        ("usage", "1.000000", "2.80", "2.80"),
        ("spot", "0.387500", "1.40", "0.54"),
    ]
