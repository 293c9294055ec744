"""The metering commands as a user runs them: the installed ``gpumeter`` in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import polars as pl
import pytest

from testing.proxy import proxy
from tests.sites import make_site

pytestmark = pytest.mark.prometheus

GPUMETER = str(Path(sys.executable).parent / "gpumeter")


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, **(env or {})}
    e.pop("GPUMETER_AUDIT_PASSPHRASE", None) if env is None else None
    p = subprocess.run([GPUMETER, *args], cwd=cwd, capture_output=True, text=True, env=e, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"gpumeter {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


def usage_rows(db: Path) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT * EXCLUDE (hosts), list_sort(hosts) FROM usage ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_init_collect_usage_end_to_end(prometheus_url: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_site(site, prometheus_url)
    run("init", cwd=site)
    assert (site / "var" / "gpumeter.duckdb").exists()
    p = run("collect", "--start", "2026-10-31T22:00:00Z", "--end", "2026-11-01T02:00:00Z", cwd=site)
    assert "collected 4 windows" in p.stderr
    p = run(
        "--config",
        str(site / "gpumeter.toml"),
        "collect",
        "--start",
        "2026-10-03T00:00:00Z",
        "--end",
        "2026-10-03T03:00:00Z",
        cwd=tmp_path,
    )
    assert p.returncode == 0
    p = run(
        "collect",
        "--config",
        "gpumeter.toml",
        "--start",
        "2026-10-01T00:00:00+00:00",
        "--end",
        "2026-10-01T03:00:00+00:00",
        cwd=site,
    )
    assert "job-edge-B" in p.stderr and "not in jobs.csv" in p.stderr

    # csv: the documented columns, ;-joined lists, one verdict per job
    out = run("usage", "--month", "2026-10", "--format", "csv", cwd=site).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == [
        "job_id",
        "tenant",
        "gpu_model",
        "mig_profile",
        "gpu_seconds",
        "busy_gpu_seconds",
        "energy_kwh",
        "hosts",
        "countries",
        "in_eu",
    ]
    by_job = {r["job_id"]: r for r in rows}
    assert float(by_job["job-month"]["gpu_seconds"]) == 7200
    assert by_job["job-outage"]["hosts"] == "nl-ams-gpu01" and by_job["job-outage"]["countries"] == "NL"
    assert by_job["job-edge-B"]["tenant"] == ""

    # json: numbers as JSON numbers, lists as arrays, null tenant
    data = json.loads(run("usage", "--month", "2026-10", "--format", "json", cwd=site).stdout)
    j = {r["job_id"]: r for r in data}
    assert j["job-month"]["gpu_seconds"] == 7200 and isinstance(j["job-month"]["energy_kwh"], float)
    assert j["job-edge-B"]["tenant"] is None and j["job-outage"]["hosts"] == ["nl-ams-gpu01"]
    assert j["job-outage"]["in_eu"] is True

    # parquet to a file; same rows
    run("usage", "--month", "2026-10", "--format", "parquet", "--out", str(tmp_path / "u.parquet"), cwd=site)
    assert sorted(pl.read_parquet(tmp_path / "u.parquet").get_column("job_id").to_list()) == sorted(j)

    nov = json.loads(run("usage", "--month", "2026-11", "--format", "json", cwd=site).stdout)
    assert [r["job_id"] for r in nov] == ["job-month"] and nov[0]["gpu_seconds"] == 7200

    gaps = list(
        csv.DictReader(io.StringIO(run("usage", "--month", "2026-10", "--gaps", "--format", "csv", cwd=site).stdout))
    )
    assert gaps == [
        {
            "hostname": "nl-ams-gpu01",
            "uuid": "GPU-e0000000-0000-0000-0000-000000000001",
            "start": "2026-10-03T01:10:00Z",
            "end": "2026-10-03T01:30:00Z",
        }
    ]


def test_bad_input_fails_in_one_line_and_changes_nothing(prometheus_url: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_site(site, prometheus_url)
    run("init", cwd=site)
    run("collect", "--start", "2026-10-31T22:00:00Z", "--end", "2026-11-01T00:00:00Z", cwd=site)
    before = usage_rows(site / "var" / "gpumeter.duckdb")
    (site / "nodes.csv").write_text("hostname,site,country,provider\nfr-par-gpu02,par1,FX,x\n")
    p = run("collect", "--start", "2026-10-31T22:00:00Z", "--end", "2026-11-01T02:00:00Z", cwd=site, check=False)
    assert p.returncode == 1
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "nodes.csv:2" in lines[0] and "'FX'" in lines[0], p.stderr
    assert usage_rows(site / "var" / "gpumeter.duckdb") == before
    p = run("collect", "--start", "2026-10-31T22:30:00Z", "--end", "2026-11-01T02:00:00Z", cwd=site, check=False)
    assert p.returncode == 1 and "whole UTC hours" in p.stderr
    p = run("usage", "--month", "2026-13", cwd=site, check=False)
    assert p.returncode == 2 and "YYYY-MM" in p.stderr  # a malformed option is a usage mistake


def test_prometheus_faults(prometheus_url: str, tmp_path: Path) -> None:
    with proxy(prometheus_url) as (url, faults):
        site = tmp_path / "site"
        make_site(site, url)
        run("init", cwd=site)
        # 5xx answers are retried with backoff, and the run succeeds
        faults.fail_next = 2
        run("collect", "--start", "2026-10-31T22:00:00Z", "--end", "2026-11-01T00:00:00Z", cwd=site)
        good = usage_rows(site / "var" / "gpumeter.duckdb")
        assert len(good) == 2
        # a backend that keeps failing: one clear line, nothing half-written
        faults.always_fail = True
        p = run("collect", "--start", "2026-10-31T22:00:00Z", "--end", "2026-11-01T02:00:00Z", cwd=site, check=False)
        assert p.returncode == 1 and "Prometheus" in p.stderr and "Traceback" not in p.stderr
        assert usage_rows(site / "var" / "gpumeter.duckdb") == good
    # nothing listening at all
    (site / "gpumeter.toml").write_text((site / "gpumeter.toml").read_text().replace(url, "http://127.0.0.1:9"))
    p = run("collect", "--start", "2026-10-31T22:00:00Z", "--end", "2026-11-01T02:00:00Z", cwd=site, check=False)
    assert p.returncode == 1 and "cannot reach Prometheus" in p.stderr


def test_sigkill_then_rerun_equals_one_clean_run(prometheus_url: str, tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    make_site(clean, prometheus_url)
    run("init", cwd=clean)
    args = ("collect", "--start", "2026-10-01T00:00:00Z", "--end", "2026-10-06T00:00:00Z", "--chunk-hours", "6")
    run(*args, cwd=clean)
    want = usage_rows(clean / "var" / "gpumeter.duckdb")
    assert want

    with proxy(prometheus_url) as (url, faults):
        site = tmp_path / "killed"
        make_site(site, url)
        run("init", cwd=site)
        proc = subprocess.Popen([GPUMETER, *args], cwd=site, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        # chunk k's queries are sent once chunk k-3 is committed (two chunks metered ahead of
        # the one being written): a query of the fourth chunk (from 18:00) means the first
        # is in the store
        fourth = int(datetime(2026, 10, 1, 18, tzinfo=UTC).timestamp())
        killed = []

        def kill_in_chunk_four(n: int, path: str) -> None:
            start = parse_qs(urlsplit(path).query).get("start", ["0"])[0]
            if "query_range" in path and float(start) >= fourth and not killed:
                killed.append(path)
                os.kill(proc.pid, signal.SIGKILL)

        faults.on_request = kill_in_chunk_four
        proc.wait(timeout=120)
        assert proc.returncode == -signal.SIGKILL
    con = duckdb.connect(str(site / "var" / "gpumeter.duckdb"), read_only=True)
    done = con.execute("SELECT count(*) FROM collected_windows").fetchone()
    con.close()
    assert done is not None and 0 < done[0] < 5 * 24, "the kill should land mid-run"
    (site / "gpumeter.toml").write_text((site / "gpumeter.toml").read_text().replace(url, prometheus_url))
    run(*args, cwd=site)
    assert usage_rows(site / "var" / "gpumeter.duckdb") == want
