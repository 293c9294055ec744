"""The polars metering rules against the plain reference, on every trap and on random fleets."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from metering.samples import sample_frame
from metering.semantics import meter
from tests.fleetgen import fleets
from tests.oracle import assert_same, from_frame, reference
from tests.scenarios import Scenario, all_scenarios

START = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000


@pytest.mark.parametrize("name", list(all_scenarios()))
def test_scenarios_equal_reference(name: str) -> None:
    sc: Scenario = all_scenarios()[name]
    frame = sample_frame(sc.series, job_label="hpc_job")
    got = meter(frame, start_ms=sc.start_ms, end_ms=sc.end_ms, interval_ms=15_000)
    want = reference(sc.series, start_ms=sc.start_ms, end_ms=sc.end_ms, interval_ms=15_000)
    assert want
    assert_same(from_frame(got.usage.iter_rows()), want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fleets(start_ms=START, hours=2, interval_ms=60_000))
def test_random_fleets_equal_reference(series: list) -> None:  # type: ignore[type-arg]
    frame = sample_frame(series, job_label="hpc_job")
    got = meter(frame, start_ms=START, end_ms=START + 2 * 3_600_000, interval_ms=60_000)
    want = reference(series, start_ms=START, end_ms=START + 2 * 3_600_000, interval_ms=60_000)
    assert_same(from_frame(got.usage.iter_rows()), want)
