"""``gpumeter serve`` as systemd runs it: the installed CLI in a subprocess, real backends.

Every test meters its own time range: the trap scenarios (loaded once per session into
Prometheus 2.42 and VictoriaMetrics), or a range of its own imported live into the
session's VictoriaMetrics. ``--until`` makes a run end; the processes that run until told
otherwise get SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from audit.log import AuditLog
from gpumeter import store
from metering.samples import ENERGY, UTIL, Series
from testing import servers
from testing.proxy import proxy
from testing.servers import free_port
from testing.stores import new_store
from tests.scenarios import gpu_labels
from tests.sites import make_site

GPUMETER = str(Path(sys.executable).parent / "gpumeter")
H = 3_600_000
S = 15_000
SCENARIOS = ("2026-10-01T00:00:00Z", "2026-10-06T00:00:00Z")  # five days holding five trap scenarios


def run(
    *args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [GPUMETER, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )
    if check and p.returncode != 0:
        raise AssertionError(f"gpumeter {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


def site(root: Path, url: str, extra: str = "") -> Path:
    make_site(root, url)
    if extra:
        cfg = root / "gpumeter.toml"
        cfg.write_text(cfg.read_text().replace("[inventory]", extra + "\n[inventory]"))
    new_store(root / "var" / "gpumeter.duckdb").close()  # what `gpumeter init` does (tested elsewhere)
    return root


@contextmanager
def reading(root: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The site's store, read-only, waiting while serve holds its lock."""
    con = store.connect(root / "var" / "gpumeter.duckdb", read_only=True, wait_s=60)
    try:
        yield con
    finally:
        con.close()


def read_store(root: Path, sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    with reading(root) as con:
        return con.execute(sql, params or []).fetchall()


def metered(root: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Usage rows and window digests: what must be equal between two ways of metering."""
    usage = read_store(root, "SELECT * EXCLUDE (hosts), list_sort(hosts) FROM usage ORDER BY ALL")
    windows = read_store(root, "SELECT window_start, rows, digest FROM collected_windows ORDER BY ALL")
    return usage, windows


def logged_windows(root: Path) -> dict[str, dict[str, object]]:
    """The newest usage_window entry of each hour in the audit log, by window start."""
    with reading(root) as con:
        log = AuditLog(con)
        latest = log.subjects("usage_window")
        data = log.entries(list(latest.values()))
    return {subject: json.loads(data[idx]) for subject, idx in latest.items()}


@contextmanager
def serving(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [GPUMETER, "serve", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def wait_for(check, timeout_s: float = 60.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def scrape(url: str) -> dict[str, float]:
    text = requests.get(url + "/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items()))
            out[key] = sample.value
    return out


# ---------------------------------------------------------------------------- equality


@pytest.mark.prometheus
@pytest.mark.victoria
def test_serve_equals_collect_on_the_trap_scenarios(backend: tuple[str, str], tmp_path: Path) -> None:
    _, url = backend
    start, until = SCENARIOS
    by_collect = site(tmp_path / "collect", url)
    run("collect", "--start", start, "--end", until, "--workers", "1", cwd=by_collect)
    by_serve = site(tmp_path / "serve", url)
    p = run("serve", "--start", start, "--until", until, "--workers", "4", "--metrics-port", "0", cwd=by_serve)
    assert "every window before 2026-10-06T00:00Z is in the store" in p.stderr
    want = metered(by_collect)
    assert want[0] and len(want[1]) == 5 * 24
    assert metered(by_serve) == want
    # the same after-collect hook: every window in the audit log once, with its digest
    logged = logged_windows(by_serve)
    assert {e["digest"] for e in logged.values()} == {d for _, _, d in want[1]} and len(logged) == 120
    assert not any("supersedes" in e for e in logged.values())
    again = run("serve", "--start", start, "--until", until, "--metrics-port", "0", cwd=by_serve)
    assert "0 windows metered" in again.stderr and "0 revised" in again.stderr
    assert logged_windows(by_serve) == logged


# ---------------------------------------------------------------------------- late samples

LATE_START = datetime(2026, 9, 1, tzinfo=UTC)  # a range no other test uses


def one_gpu(start_ms: int, hours: int, uuid: str, job: str, *, skip: tuple[int, int] | None = None) -> list[Series]:
    """A whole H100 held by ``job`` with a sample every 15 s; ``skip`` leaves out [a, b)."""
    ts = np.arange(start_ms - H, start_ms + hours * H, S, dtype=np.int64) + 1_000
    if skip is not None:
        ts = ts[(ts < skip[0]) | (ts >= skip[1])]
    lab = gpu_labels(uuid)
    util = Series({"__name__": UTIL, **lab, "hpc_job": job}, ts, np.full(len(ts), 50.0))
    energy = Series({"__name__": ENERGY, **lab, "hpc_job": job}, ts, 1e9 + (ts - ts[0]) * 0.3)
    return [util, energy]


@pytest.mark.victoria
def test_late_samples_are_metered_again_and_logged_as_a_revision(victoria_url: str, tmp_path: Path) -> None:
    t0 = int(LATE_START.timestamp() * 1000)
    uuid = "GPU-1a7e0000-0000-0000-0000-000000000001"
    gap = (t0 + H + 20 * 60_000, t0 + H + 40 * 60_000)  # 20 minutes of hour 1 arrive late
    servers.load_victoria(victoria_url, one_gpu(t0, 4, uuid, "job-month", skip=gap))
    root = site(tmp_path / "site", victoria_url)
    args = ("--start", "2026-09-01T00:00:00Z", "--until", "2026-09-01T04:00:00Z", "--metrics-port", "0")
    first = run("serve", *args, cwd=root)
    assert "4 windows metered" in first.stderr
    before = metered(root)
    servers.load_victoria(victoria_url, one_gpu(t0, 4, uuid, "job-month"))  # the late samples arrive
    second = run("serve", *args, cwd=root)
    assert "window 2026-09-01T01:00Z metered again" in second.stderr and "(1 revised)" in second.stderr
    after = metered(root)
    changed = [(a, b) for a, b in zip(before[1], after[1], strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0][0] == datetime(2026, 9, 1, 1, tzinfo=UTC)
    # the audit log keeps both: the revision supersedes the first entry and names its digest
    new = logged_windows(root)["2026-09-01T01:00:00Z"]
    with reading(root) as con:
        old = json.loads(AuditLog(con).entry(int(str(new["supersedes"]))))
    assert new["previous_digest"] == old["digest"] == changed[0][0][2]
    assert new["digest"] == changed[0][1][2]
    # and the store equals one collect over the complete samples
    fresh = site(tmp_path / "fresh", victoria_url)
    run("collect", "--start", args[1], "--end", args[3], cwd=fresh)
    assert metered(fresh) == after


# ---------------------------------------------------------------------------- the running process


@pytest.mark.victoria
def test_running_serve_metrics_readiness_reload_lock_and_sigterm(victoria_url: str, tmp_path: Path) -> None:
    """Around the clock near the real now: it meters the last closed hours, then waits."""
    root = site(tmp_path / "site", victoria_url)
    now = datetime.now(UTC)
    start = (now - timedelta(minutes=10)).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    port = free_port()
    with serving("--start", start.isoformat(), "--metrics-port", str(port), cwd=root) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(url + "/readyz", timeout=2).status_code == 200, what="/readyz 200")
        assert requests.get(url + "/healthz", timeout=2).text == "ok\n"
        first = scrape(url)
        time.sleep(1.5)
        second = scrape(url)
        assert first["gpumeter_windows_metered_total"] == 3
        assert 0 < first["gpumeter_metering_lag_seconds"] < second["gpumeter_metering_lag_seconds"] < 2 * 3600
        assert second["gpumeter_last_success_timestamp_seconds"] > now.timestamp() - 5
        assert second["gpumeter_late_revisions_total"] == 0
        assert second["gpumeter_backend_errors_total{kind=timeout}"] == 0

        # a second serve on the same store refuses, naming the first
        other = run("serve", "--metrics-port", "0", cwd=root, check=False)
        assert other.returncode == 1 and f"PID {proc.pid}" in other.stderr, other.stderr

        # SIGHUP: the edited jobs.csv is reloaded and stored as a new version
        jobs = root / "jobs.csv"
        jobs.write_text(jobs.read_text() + "job-new,acme,train,\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: read_store(root, "SELECT max(version) FROM inventory_versions WHERE kind = 'jobs'") == [(2,)],
            what="jobs.csv version 2",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read() if proc.stderr else ""
    assert "SIGHUP: reloading the inventory" in err and "SIGTERM" in err and err.rstrip().endswith("stopped"), err
    assert "Traceback" not in err
    # the lock went with the process: another serve starts (and, with --until, ends)
    run("serve", "--until", start.isoformat(), "--metrics-port", "0", cwd=root)


# ---------------------------------------------------------------------------- faults

THREE_DAYS = ("2026-10-01T00:00:00Z", "2026-10-04T00:00:00Z")


@pytest.fixture(scope="module")
def reference(victoria_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[object, tuple[object, ...]]:
    """Each window's (rows, digest) from one plain collect of the scenario days on VictoriaMetrics."""
    root = site(tmp_path_factory.mktemp("reference"), victoria_url)
    run("collect", "--start", SCENARIOS[0], "--end", SCENARIOS[1], cwd=root)
    return {w: (rows, digest) for w, rows, digest in metered(root)[1]}


def same_as_reference(root: Path, reference: dict[object, tuple[object, ...]], count: int) -> None:
    windows = metered(root)[1]
    assert len(windows) == count
    assert all(reference[w] == (rows, digest) for w, rows, digest in windows)


@pytest.mark.victoria
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_signal_mid_run_then_a_restart_gives_the_uninterrupted_result(
    sig: signal.Signals, victoria_url: str, reference: dict[object, tuple[object, ...]], tmp_path: Path
) -> None:
    args = ("--start", SCENARIOS[0], "--until", SCENARIOS[1], "--chunk-hours", "6", "--workers", "2")
    with proxy(victoria_url) as (url, faults):
        root = site(tmp_path / "site", url)
        with serving(*args, "--metrics-port", "0", cwd=root) as proc:
            # a chunk's shards are sent once the chunk three before it is written (two
            # chunks metered ahead of the one being written): a query of the fifth chunk
            # (from 2026-10-02T00:00) means the first two are in the store
            fifth = int(datetime(2026, 10, 2, tzinfo=UTC).timestamp())
            signalled = []

            def signal_in_chunk_five(n: int, path: str) -> None:
                start = parse_qs(urlsplit(path).query).get("start", ["0"])[0]
                if "query_range" in path and float(start) >= fifth and not signalled:
                    signalled.append(path)
                    os.kill(proc.pid, sig)

            faults.on_request = signal_in_chunk_five
            code = proc.wait(timeout=120)
            err = proc.stderr.read() if proc.stderr else ""
        faults.on_request = None
        written = len(metered(root)[1])
        assert 12 <= written < 120 and written % 6 == 0, "whole chunks only, and the signal landed mid-run"
        same_as_reference(root, reference, written)
        if sig == signal.SIGTERM:
            assert code == 0 and "finishing the chunk being written" in err and "Traceback" not in err, err
        else:
            assert code == -signal.SIGKILL
        run("serve", *args, "--metrics-port", "0", cwd=root)
    same_as_reference(root, reference, 120)
    assert len(logged_windows(root)) == 120


@pytest.mark.victoria
def test_backend_down_then_up_reports_not_ready_then_catches_up(
    victoria_url: str, reference: dict[object, tuple[object, ...]], tmp_path: Path
) -> None:
    with proxy(victoria_url) as (url, faults):
        root = site(tmp_path / "site", url)
        faults.always_fail = True
        port = free_port()
        with serving("--start", THREE_DAYS[0], "--until", THREE_DAYS[1], "--metrics-port", str(port), cwd=root) as p:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: requests.get(base + "/readyz", timeout=2).status_code == 503, what="/readyz 503")
            assert "backend not reachable" in requests.get(base + "/readyz", timeout=2).text
            wait_for(lambda: scrape(base)["gpumeter_backend_errors_total{kind=status}"] >= 2, what="errors counted")
            assert scrape(base)["gpumeter_windows_metered_total"] == 0
            faults.always_fail = False
            assert p.wait(timeout=120) == 0
            err = p.stderr.read() if p.stderr else ""
    assert "trying again in" in err and "72 windows metered" in err, err
    same_as_reference(root, reference, 72)


@pytest.mark.victoria
def test_5xx_truncated_answers_and_a_shard_timing_out_change_nothing(
    victoria_url: str, reference: dict[object, tuple[object, ...]], tmp_path: Path
) -> None:
    with proxy(victoria_url) as (url, faults):
        root = site(tmp_path / "site", url)
        cfg = root / "gpumeter.toml"
        cfg.write_text(cfg.read_text().replace("timeout_s = 60", "timeout_s = 2").replace("retries = 2", "retries = 1"))
        # the resets query of shard 0 of the first day (evaluated from 01:00, the first
        # window's end): its first attempt and its one retry both outlast the 2 s timeout
        first_day_resets = (
            "resets(",
            'UUID=~".*[01234567]"',
            f"start={int(datetime(2026, 10, 1, 1, tzinfo=UTC).timestamp())}",
        )
        slowed = []

        def slow_shard_zero(n: int, path: str) -> None:
            if all(part in requests.utils.unquote(path) for part in first_day_resets) and len(slowed) < 2:
                slowed.append(n)
                time.sleep(2.5)

        faults.fail_next = 1
        faults.truncate_next = 1
        faults.on_request = slow_shard_zero
        p = run(
            "serve",
            "--start",
            THREE_DAYS[0],
            "--until",
            THREE_DAYS[1],
            "--workers",
            "2",
            "--metrics-port",
            "0",
            cwd=root,
        )
    assert "windows 2026-10-01T00:00Z to 2026-10-02T00:00Z not written: " in p.stderr, p.stderr
    assert "timed out on a range query after 2s (retries exhausted)" in p.stderr and "trying again in 1 s" in p.stderr
    same_as_reference(root, reference, 72)


@pytest.mark.victoria
def test_query_frontend_headers_and_a_token_from_the_environment(victoria_url: str, tmp_path: Path) -> None:
    extra = (
        'query_url = "{url}"\nheaders = {{ "X-Scope-OrgID" = "tenant-7" }}\nbearer_token_env = "GPUMETER_TEST_TOKEN"\n'
    )
    with proxy(victoria_url) as (url, faults):
        # prometheus_url points nowhere: every query must go to the query frontend
        root = site(tmp_path / "site", "http://127.0.0.1:9", extra.format(url=url))
        args = ("serve", "--start", THREE_DAYS[0], "--until", "2026-10-01T03:00:00Z", "--metrics-port", "0")
        missing = run(*args, cwd=root, check=False, env={"GPUMETER_TEST_TOKEN": ""})
        assert missing.returncode == 1 and "GPUMETER_TEST_TOKEN" in missing.stderr and faults.requests == 0
        run(*args, cwd=root, env={"GPUMETER_TEST_TOKEN": "s3cret"})
        assert faults.requests > 5
        assert all(h.get("X-Scope-OrgID") == "tenant-7" for h in faults.headers)
        assert all(h.get("Authorization") == "Bearer s3cret" for h in faults.headers)
    cfg = root / "gpumeter.toml"
    cfg.write_text(cfg.read_text().replace('"X-Scope-OrgID" = "tenant-7"', '"Authorization" = "Bearer s3cret"'))
    refused = run(*args, cwd=root, check=False)
    assert (
        refused.returncode == 1
        and "must not carry Authorization" in refused.stderr
        and "gpumeter.toml" in refused.stderr
    )


@pytest.mark.victoria
def test_checkpoint_every_signs_a_checkpoint_when_due(victoria_url: str, tmp_path: Path) -> None:
    root = tmp_path / "site"
    make_site(root, victoria_url)
    cfg = root / "gpumeter.toml"
    cfg.write_text(
        cfg.read_text().replace('allowed_countries = ["EU"]', 'allowed_countries = ["EU"]\ncheckpoint_every = "1h"')
    )
    secret = {"GPUMETER_AUDIT_PASSPHRASE": "correct horse battery staple"}
    run("init", cwd=root, env=secret)
    args = ("serve", "--start", THREE_DAYS[0], "--until", "2026-10-01T03:00:00Z", "--metrics-port", "0")
    locked = run(*args, cwd=root, check=False)  # the key cannot be opened without its passphrase
    assert locked.returncode == 1 and "passphrase" in locked.stderr.lower() and not metered(root)[1]
    first = run(*args, cwd=root, env=secret)
    assert "signed a checkpoint of the audit log" in first.stderr
    run(*args, cwd=root, env=secret)  # within the hour: no second one
    with reading(root) as con:
        checkpoints = AuditLog(con).checkpoints()
        size = AuditLog(con).size()
    assert len(checkpoints) == 1 and checkpoints[0].size == size > 3
    verify = run("audit", "check", cwd=root, env=secret)
    assert verify.returncode == 0
