"""Prometheus killed (SIGKILL) in the middle of a ``collect`` and started again on the same
TSDB and port: the collect rides through on its retries and ends with the totals of an
undisturbed run."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from testing import servers
from testing.proxy import proxy
from tests.faults.conftest import COLLECT, database, gpumeter, metering_site, same_as
from tests.faults.outcome import Metered, metered

pytestmark = pytest.mark.prometheus


def test_prometheus_killed_and_restarted_mid_collect(
    prometheus_tsdb: Path, tmp_path: Path, undisturbed: Metered
) -> None:
    work = tmp_path / "prometheus"
    work.mkdir()
    shutil.copytree(prometheus_tsdb, work / "tsdb")
    port = servers.free_port()
    running: list[subprocess.Popen[bytes]] = [servers.start_prometheus(work / "tsdb", work, port)]
    restarted = threading.Event()

    def restart() -> None:
        running.append(servers.start_prometheus(work / "tsdb", work, port))
        restarted.set()

    try:
        with proxy(f"http://127.0.0.1:{port}") as (url, faults):
            site = metering_site(tmp_path / "site", url, retries=6)
            ranges = 0
            killed = False
            once = threading.Lock()  # the proxy answers collect's parallel queries in parallel threads

            def kill_mid_run(n: int, path: str) -> None:
                nonlocal ranges, killed
                with once:
                    ranges += "query_range" in path
                    if killed or ranges < 30:  # chunks 1-4 are in the store by now
                        return
                    killed = True  # once: the queries that follow (of any kind) meet the restart
                running[0].send_signal(signal.SIGKILL)
                running[0].wait()
                threading.Thread(target=restart, daemon=True).start()

            faults.on_request = kill_mid_run
            p = gpumeter(*COLLECT, cwd=site)
        assert restarted.wait(60), "Prometheus did not come back"
        assert running[0].returncode == -signal.SIGKILL
        assert any(kind == "bad gateway" for _, kind in faults.injected), "no request met the dead Prometheus"
        assert "collected 120 windows" in p.stderr
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    same_as(metered(database(site)), undisturbed)
