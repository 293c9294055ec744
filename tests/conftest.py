"""Shared fixtures: real Prometheus 2.42 and VictoriaMetrics loaded with every scenario."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scenarios import Scenario, all_scenarios


@pytest.fixture(scope="session")
def scenarios() -> dict[str, Scenario]:
    return all_scenarios()


@pytest.fixture(scope="session")
def prometheus_tsdb(scenarios: dict[str, Scenario], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Prometheus TSDB folder holding every scenario (backfilled once; copy it to serve it again)."""
    from simulator.exposition import backfill
    from testing import servers

    work = tmp_path_factory.mktemp("tsdb")
    series = [s for sc in scenarios.values() for s in sc.series]
    backfill(series, work / "tsdb", work / "om", promtool=servers.need("promtool"))
    return work / "tsdb"


@pytest.fixture(scope="session")
def prometheus_url(prometheus_tsdb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import shutil

    from testing import servers

    work = tmp_path_factory.mktemp("prometheus")
    shutil.copytree(prometheus_tsdb, work / "tsdb")
    with servers.prometheus_on(work / "tsdb", work) as url:
        yield url


@pytest.fixture(scope="session")
def victoria_url(scenarios: dict[str, Scenario], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from testing import servers

    with servers.victoria(tmp_path_factory.mktemp("victoria")) as url:
        servers.load_victoria(url, [s for sc in scenarios.values() for s in sc.series])
        yield url


@pytest.fixture(params=["prometheus", "victoria"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(name, url) of each real backend: closed ranges (2.42) and left-open (VictoriaMetrics)."""
    name = request.param
    url = request.getfixturevalue(f"{name}_url")
    return name, url


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    return tmp_path / "site"
