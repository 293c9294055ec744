"""Property: the PromQL path equals the plain reference over the raw samples.

Each hypothesis example is a small random fleet (several scrape loops per GPU, outages,
jobs starting and ending anywhere, shared GPUs, MIG, NaN, counter resets, a renamed host
label) imported live into a real VictoriaMetrics in a time range of its own; gpumeter
collects it through PromQL and must find exactly what the reference finds in the same
samples (VictoriaMetrics drops NaN samples at ingestion, so the reference does too).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpumeter import store
from gpumeter.config import load_config
from metering.run import collect
from metering.windows import Span
from testing import servers
from tests.fleetgen import fleets
from tests.oracle import assert_same, from_frame, reference, without_nan
from tests.sites import make_site

pytestmark = pytest.mark.victoria

HOUR = 3_600_000
BASE = 1_700_000_000_000 - 1_700_000_000_000 % HOUR  # far from the scenario fixtures' days
_slot = itertools.count()
PATHS = {"aggregate": 0, "raw": 0}


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with servers.victoria(tmp_path_factory.mktemp("vm-property")) as url:
        yield url


@pytest.fixture(scope="module")
def site(vm: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    cfg = make_site(root, vm)
    cfg.write_text(cfg.read_text().replace('scrape_interval = "15s"', 'scrape_interval = "60s"'))
    return cfg


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_promql_path_equals_reference(vm: str, site: Path, data: st.DataObject) -> None:
    start = BASE + next(_slot) * 6 * HOUR  # each example in hours of its own
    series = without_nan(data.draw(fleets(start_ms=start, hours=2, interval_ms=60_000)))
    servers.load_victoria(vm, series)
    cfg = load_config(site)
    con = store.memory()
    try:
        rep = collect(con, cfg, Span(start, start + 2 * HOUR))
        PATHS["aggregate"] += rep.gpu_windows - rep.raw_gpu_windows
        PATHS["raw"] += rep.raw_gpu_windows
        rows = con.execute(
            "SELECT epoch_ms(window_start), job_id, uuid, gpu_i_id, mig_profile, gpu_model, hosts, "
            "gpu_ns, busy_ns, energy_uj FROM usage ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    want = reference(series, start_ms=start, end_ms=start + 2 * HOUR, interval_ms=60_000)
    assert_same(from_frame(rows), want)


def test_both_paths_were_exercised() -> None:
    """The property above only means something if both the aggregate and the raw path ran."""
    if PATHS["aggregate"] + PATHS["raw"] == 0:
        pytest.skip("run with test_promql_path_equals_reference")
    assert PATHS["aggregate"] > 0 and PATHS["raw"] > 0, PATHS
