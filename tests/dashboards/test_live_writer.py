"""The dashboards while ``gpumeter collect`` writes: a real collect against a real Prometheus
in another process, pages loading in a loop in this one. No page may fail, the dashboard's
own writes (a refused sign-in) must get through between collect's chunks, and the pages
must end up showing everything collect wrote."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dashboards.auth import sign_in
from dashboards.reader import StoreAccess
from dashboards.roles import Page
from gpumeter import store
from gpumeter.config import load_config
from simulator import small_fleet, write_inventory
from testing import servers
from tests.dashboards.conftest import OpenApp, assert_clean
from tests.dashboards.fixtures import GPUMETER, PASSPHRASE, add_users, run_gpumeter

pytestmark = pytest.mark.prometheus

START = datetime(2026, 9, 1, tzinfo=UTC)
HOURS = 48


def file_state(db: Path) -> tuple[int, int, bool]:
    st = db.stat()
    return st.st_mtime_ns, st.st_size, db.with_name(db.name + ".wal").exists()


def held_hours(config: Path) -> str:
    con = store.connect(load_config(config).store.database, read_only=True, wait_s=30)
    try:
        (ns,) = con.execute("SELECT coalesce(sum(gpu_ns), 0) FROM usage").fetchall()[0]
    finally:
        con.close()
    return f"{ns / 3.6e12:,.1f}"


def held_metric(at: object) -> str:
    return str(next(m.value for m in at.metric if m.label == "GPU-hours held"))  # type: ignore[attr-defined]


def test_pages_keep_working_while_collect_writes(tmp_path: Path, open_app: OpenApp) -> None:
    fleet = small_fleet(seed=3, start=START, days=HOURS / 24)
    with servers.prometheus(fleet.series, tmp_path / "prometheus") as url:
        config = write_inventory(fleet, tmp_path / "site", prometheus_url=url)
        run_gpumeter("init", "--config", str(config))
        add_users(load_config(config), scoped=False)
        at = open_app(config, "ada")
        at.switch_page(f"screens/{Page.UTILISATION.value}.py").run()
        assert_clean(at)
        assert held_metric(at) == "0.0"
        env = {**os.environ, "GPUMETER_AUDIT_PASSPHRASE": PASSPHRASE}
        db = load_config(config).store.database
        before = file_state(db)
        collect = subprocess.Popen(
            [
                GPUMETER,
                "collect",
                "--start",
                "2026-09-01T00:00:00Z",
                "--end",
                "2026-09-03T00:00:00Z",
                "--chunk-hours",
                "1",
                "--config",
                str(config),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: list[str] = []
        loads = 0
        refused_during_collect = None
        try:
            # `collect` checks the schema with a read-write open (a bounded wait for readers);
            # then only its per-chunk writes take the lock. So the pages
            # start once it has written, seen from the file alone, without opening it.
            deadline = time.monotonic() + 60
            while file_state(db) == before and collect.poll() is None:
                assert time.monotonic() < deadline, "collect did not start writing"
                time.sleep(0.02)
            while collect.poll() is None:
                for page in (Page.UTILISATION, Page.COMPLIANCE, Page.FINANCE):
                    at.switch_page(f"screens/{page.value}.py").run()
                    assert_clean(at)
                    loads += 1
                    if page is Page.UTILISATION:
                        seen.append(held_metric(at))
                if refused_during_collect is None and seen[-1] != "0.0":
                    access = StoreAccess(load_config(config).store.database, read_wait_s=30, write_wait_s=30)
                    refused_during_collect = sign_in(
                        access, "fin", "not the password, clearly", client="local", now=datetime.now(UTC)
                    )
        finally:
            if collect.poll() is None:
                collect.kill()
            _, stderr = collect.communicate(timeout=60)
        assert collect.returncode == 0, stderr[-3000:]
        assert f"collected {HOURS} windows" in stderr
    assert refused_during_collect is not None and refused_during_collect.reason == "bad_password"
    final = held_hours(config)
    intermediate = {v for v in seen if v not in ("0.0", final)}
    assert len(intermediate) >= 2, f"the pages never showed collect's progress: {seen}"
    deadline = time.monotonic() + 15
    while True:  # eventually fresh: the version is re-read every version_ttl_s
        at.switch_page(f"screens/{Page.UTILISATION.value}.py").run()
        assert_clean(at)
        if held_metric(at) == final or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert held_metric(at) == final
    assert loads >= 9
