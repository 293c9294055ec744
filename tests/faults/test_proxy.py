"""A link to Prometheus that cuts answers short, answers late and answers 5xx (testing.proxy
in front of the real Prometheus): ``collect`` rides through what retries can cover, fails in
one line when they cannot, and a re-run ends with the totals of an undisturbed run."""

from __future__ import annotations

from pathlib import Path

import pytest

from testing.proxy import proxy
from tests.faults.conftest import COLLECT, database, gpumeter, metering_site, one_line_error, same_as
from tests.faults.outcome import Metered, metered

pytestmark = pytest.mark.prometheus


def test_late_answers_and_5xx_mixed_with_cut_answers(prometheus_url: str, tmp_path: Path, undisturbed: Metered) -> None:
    """Every retry path at once. (Before answers cut short were retried, the first one
    stopped the collect with "HTTP error talking to Prometheus … IncompleteRead".)"""
    with proxy(prometheus_url) as (url, faults):
        site = metering_site(tmp_path / "site", url, retries=4, timeout_s=2)
        faults.delay_s = 0.2

        def mix(n: int, path: str) -> None:
            if n == 20:  # one answer later than the client's timeout: a read timeout, retried
                faults.delay_s, faults.delay_next = 3.0, 1
                return
            faults.delay_s = 0.2
            if n % 4 == 0:
                faults.delay_next = 1
            if n % 7 == 0:
                faults.fail_next, faults.status = 1, (502, 503, 504)[n % 3]
            elif n % 11 == 0:
                faults.truncate_next = 1

        faults.on_request = mix
        gpumeter(*COLLECT, cwd=site)
    assert {kind for _, kind in faults.injected} == {"fail", "truncate", "delay"}
    same_as(metered(database(site)), undisturbed)


def test_a_link_that_keeps_cutting_fails_in_one_line_then_a_rerun_completes(
    prometheus_url: str, tmp_path: Path, undisturbed: Metered
) -> None:
    with proxy(prometheus_url) as (url, faults):
        site = metering_site(tmp_path / "site", url, retries=1)

        def cut_after_a_while(n: int, path: str) -> None:
            if n > 40:
                faults.truncate_next = 1

        faults.on_request = cut_after_a_while
        p = gpumeter(*COLLECT, cwd=site, check=False)
        line = one_line_error(p)
        assert "Prometheus" in line
        partial = metered(database(site))  # what was committed holds; the log catches up at the next collect
        assert partial.findings == [] and 0 < len(partial.windows) < len(undisturbed.windows)
        faults.on_request = None
        faults.truncate_next = 0
        gpumeter(*COLLECT, cwd=site)
    same_as(metered(database(site)), undisturbed)
