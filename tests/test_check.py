"""``gpumeter check`` through the installed console script, against real backends.

A consistent simulated fleet (traps off) is loaded into a real Prometheus 2.42 and a real
VictoriaMetrics; its inventory is the simulator's own. On it every finding passes. Then the
site is broken the way a first contact with a cluster breaks it (a host missing from
nodes.csv, a model without a rate, the job label renamed, the wrong scrape interval), and
each break must be named with its fix. Bad backends — none listening, one answering 500 or
HTML, one too slow, one without DCGM series — are each one clear line, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from metering.samples import UTIL, Series
from metering.windows import HOUR_MS
from simulator import Fleet, Traps, small_fleet, write_inventory
from testing import servers
from tests.sites import make_site

GPUMETER = str(Path(sys.executable).parent / "gpumeter")
START = datetime(2026, 9, 1, tzinfo=UTC)
WINDOW = ["--start", "2026-09-01T00:00:00Z", "--end", "2026-09-02T00:00:00Z"]
PASSPHRASE = "check-test-passphrase"
LINE = re.compile(r"^(PASS|WARN|FAIL) ([a-z_.]+): (.+)$")


def run(
    args: list[str], *, passphrase: str | None = PASSPHRASE, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUMETER_", "STRIPE_"))}
    if passphrase:
        env["GPUMETER_AUDIT_PASSPHRASE"] = passphrase
    return subprocess.run([GPUMETER, *args], capture_output=True, text=True, env=env, timeout=timeout)


def findings(p: subprocess.CompletedProcess[str]) -> list[tuple[str, str, str]]:
    """(status, check, rest) of every stdout line, each of which must be a finding."""
    assert "Traceback" not in p.stdout + p.stderr, p.stderr
    out = []
    for line in p.stdout.splitlines():
        m = LINE.match(line)
        assert m, f"not a finding line: {line!r}"
        out.append((m.group(1), m.group(2), m.group(3)))
    return out


def named(found: list[tuple[str, str, str]], check: str) -> list[tuple[str, str]]:
    return [(status, rest) for status, name, rest in found if name == check]


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return small_fleet(seed=5, start=START, days=1, traps=Traps.none())


@pytest.fixture(scope="module", params=["prometheus", "victoria"])
def fleet_backend(
    request: pytest.FixtureRequest, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(kind, URL) of a real backend holding the fleet's samples."""
    work = tmp_path_factory.mktemp(f"fleet-{request.param}")
    if request.param == "prometheus":
        with servers.prometheus(fleet.series, work) as url:
            yield "Prometheus 2.42.0", url
    else:
        with servers.victoria(work) as url:
            servers.load_victoria(url, fleet.series)
            yield "VictoriaMetrics", url


@pytest.fixture
def fleet_url(fleet_backend: tuple[str, str]) -> str:
    return fleet_backend[1]


def healthy_site(root: Path, fleet: Fleet, url: str) -> Path:
    """The simulator's inventory for ``fleet``, with the store and the signing key made by init."""
    cfg = write_inventory(fleet, root, prometheus_url=url)
    p = run(["init", "--config", str(cfg)])
    assert p.returncode == 0, p.stderr
    return cfg


def test_a_consistent_fleet_passes_every_check(fleet: Fleet, fleet_backend: tuple[str, str], tmp_path: Path) -> None:
    kind, url = fleet_backend
    cfg = healthy_site(tmp_path / "site", fleet, url)
    p = run(["check", "--config", str(cfg), *WINDOW])
    found = findings(p)
    assert [f for f in found if f[0] != "PASS"] == []
    assert p.returncode == 0
    checks = {name for _, name, _ in found}
    assert {
        "config",
        "inventory.files",
        "billing.rates_file",
        "audit.signing_key",
        "store.schema",
        "telemetry.backend",
        "telemetry.dcgm",
        "telemetry.scrape_interval",
        "telemetry.job_label",
        "inventory.jobs",
        "inventory.hosts",
        "telemetry.duplicates",
        "telemetry.coverage",
        "billing.rates",
    } <= checks
    assert named(found, "telemetry.backend")[0][1].startswith(f"{kind}")
    units = sum(len(g.mig) or 1 for g in fleet.gpus)  # whole GPUs and MIG instances
    assert f"all {units} GPUs and MIG instances sent a sample every 15 s" in named(found, "telemetry.coverage")[0][1]
    assert "samples arrive every 15 s" in named(found, "telemetry.scrape_interval")[0][1]
    assert "MIG seen" in named(found, "telemetry.dcgm")[0][1]
    assert "opens with GPUMETER_AUDIT_PASSPHRASE" in named(found, "audit.signing_key")[0][1]
    assert p.stderr.strip().endswith(f"{len(found)} PASS, 0 WARN, 0 FAIL")


def test_json_is_an_array_of_findings_for_scripts(fleet: Fleet, fleet_url: str, tmp_path: Path) -> None:
    cfg = healthy_site(tmp_path / "site", fleet, fleet_url)
    p = run(["check", "--json", "--config", str(cfg), *WINDOW])
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert isinstance(doc, list) and doc
    assert all(set(f) == {"status", "check", "message", "fix", "details"} for f in doc)
    assert {f["status"] for f in doc} == {"PASS"}
    by = {f["check"]: f for f in doc}
    assert by["telemetry.scrape_interval"]["details"]["configured_s"] == 15
    assert by["telemetry.coverage"]["details"]["gpus"] == sum(len(g.mig) or 1 for g in fleet.gpus)
    assert by["inventory.hosts"]["details"]["seen"] == len({n.hostname for n in fleet.nodes})


def test_a_broken_site_names_each_problem_with_its_fix(fleet: Fleet, fleet_url: str, tmp_path: Path) -> None:
    cfg = healthy_site(tmp_path / "site", fleet, fleet_url)
    site = cfg.parent
    # a host left out of nodes.csv
    lines = (site / "nodes.csv").read_text().splitlines()
    dropped = lines.pop(1).split(",")[0]
    (site / "nodes.csv").write_text("\n".join(lines) + "\n")
    # a model without a rate
    unpriced = fleet.rates[0].model
    cards = (site / "rates.toml").read_text().split("\n\n")
    (site / "rates.toml").write_text("\n\n".join(c for c in cards if f'model = "{unpriced}"' not in c))
    # the job label renamed (the exporter says hpc_job, the site expects slurm_job_id), and the wrong interval
    text = cfg.read_text()
    text = text.replace('job_label = "hpc_job"', 'job_label = "slurm_job_id"')
    text = text.replace('scrape_interval = "15s"', 'scrape_interval = "30s"')
    cfg.write_text(text)

    p = run(["check", "--config", str(cfg), *WINDOW])
    found = findings(p)
    assert p.returncode == 1
    [(status, hosts)] = named(found, "inventory.hosts")
    assert status == "FAIL" and repr(dropped) in hosts and "add a row hostname,site,country,provider" in hosts
    [(status, rates)] = named(found, "billing.rates")
    assert status == "FAIL" and unpriced in rates and "add a [[rate]]" in rates
    [(status, label)] = named(found, "telemetry.job_label")
    assert status == "FAIL" and "'slurm_job_id'" in label and 'set job_label = "hpc_job"' in label
    [(status, interval)] = named(found, "telemetry.scrape_interval")
    assert status == "FAIL" and "every 15 s" in interval and 'set scrape_interval = "15s"' in interval
    # nothing else breaks because of them
    assert {name for status, name, _ in found if status == "FAIL"} == {
        "inventory.hosts",
        "billing.rates",
        "telemetry.job_label",
        "telemetry.scrape_interval",
    }


def test_bad_files_are_all_reported_at_once(fleet: Fleet, tmp_path: Path) -> None:
    cfg = write_inventory(fleet, tmp_path / "site", prometheus_url="http://127.0.0.1:9")
    site = cfg.parent
    nodes = (site / "nodes.csv").read_text().splitlines()
    nodes[1] = nodes[1].replace(nodes[1].split(",")[2], "XX", 1)
    nodes.append("short,row")
    (site / "nodes.csv").write_text("\n".join(nodes) + "\n")
    (site / "tenants.csv").write_text("tenant,legal_name,country,vat_id,colour\n")
    rates = (site / "rates.toml").read_text()
    (site / "rates.toml").write_text(rates.replace('eur_per_gpu_hour = "', "eur_per_gpu_hour = 1.5 #", 2))
    text = cfg.read_text().replace('scrape_interval = "15s"', 'scrape_interval = "7s"')
    cfg.write_text(text.replace('allowed_countries = ["EU"]', 'allowed_countries = "EU"'))

    p = run(["check", "--config", str(cfg), *WINDOW], passphrase=None)
    found = findings(p)
    assert p.returncode == 1
    config = [rest for status, name, rest in found if name == "config" and status == "FAIL"]
    assert any("scrape_interval must divide one hour" in r for r in config)
    assert any("allowed_countries must be a list of strings" in r for r in config)
    files = [rest for status, name, rest in found if name == "inventory.files" and status == "FAIL"]
    assert any("nodes.csv:2: unknown country code" in r and "'XX'" in r for r in files)
    assert any(f"nodes.csv:{len(nodes)}: expected 4 fields, found 2" in r for r in files)
    assert any("tenants.csv:1: unknown column 'colour'" in r for r in files)
    rate_lines = [rest for status, name, rest in found if name == "billing.rates_file" and status == "FAIL"]
    assert len(rate_lines) == 2 and all("not a TOML float" in r for r in rate_lines)
    assert named(found, "telemetry") == [
        ("FAIL", "not checked: [telemetry] holds bad values — fix them first (see the lines above)")
    ]
    assert ("FAIL", "audit.signing_key") in {(s, n) for s, n, _ in found}
    assert not (site / "var").exists(), "check must never create the store"


# --- bad backends --------------------------------------------------------------------------


class _Answer(BaseHTTPRequestHandler):
    """A web server that is not a telemetry backend: it answers every GET the same way."""

    status = 500
    content_type = "text/plain"
    body = b"upstream exploded"
    delay_s = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        with contextlib.suppress(OSError):  # a client that timed out has hung up
            self.send_response(self.status)
            self.send_header("Content-Type", self.content_type)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def answering(**behaviour: object) -> Iterator[str]:
    handler = type("Handler", (_Answer,), behaviour)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def check_against(
    url: str, root: Path, *args: str, timeout_s: float = 60, retries: int = 2
) -> subprocess.CompletedProcess[str]:
    cfg = make_site(root, url)
    text = (
        cfg.read_text()
        .replace("timeout_s = 60", f"timeout_s = {timeout_s}")
        .replace("retries = 2", f"retries = {retries}")
    )
    cfg.write_text(text)
    return run(["check", "--config", str(cfg), *(args or WINDOW)])


def telemetry_lines(p: subprocess.CompletedProcess[str]) -> list[tuple[str, str, str]]:
    return [f for f in findings(p) if f[1].startswith("telemetry")]


@pytest.mark.parametrize(
    ("behaviour", "says"),
    [
        ({"status": 500}, "answered HTTP 500 to GET /api/v1/status/buildinfo: upstream exploded"),
        (
            {"status": 200, "content_type": "text/html", "body": b"<html><body>Please sign in</body></html>"},
            "answered GET /api/v1/status/buildinfo with text/html, not the Prometheus API's JSON",
        ),
        ({"status": 200, "delay_s": 3.0}, "timed out on GET /api/v1/status/buildinfo after 1s (retries exhausted)"),
    ],
    ids=["500", "html", "too-slow"],
)
def test_a_backend_that_is_not_one_is_one_line(behaviour: dict[str, object], says: str, tmp_path: Path) -> None:
    with answering(**behaviour) as url:
        began = time.monotonic()
        p = check_against(url, tmp_path / "site", timeout_s=1, retries=1)
        took = time.monotonic() - began
    assert p.returncode == 1
    [(status, check, rest)] = telemetry_lines(p)
    assert (status, check) == ("FAIL", "telemetry.backend")
    assert says in rest
    assert "each request waits up to 1 s and is retried 1 times" in rest
    assert took < 60


def test_no_backend_listening_is_one_line(tmp_path: Path) -> None:
    port = servers.free_port()  # nobody listens there
    p = check_against(f"http://127.0.0.1:{port}", tmp_path / "site")
    assert p.returncode == 1
    assert telemetry_lines(p) == [
        (
            "FAIL",
            "telemetry.backend",
            f"cannot reach Prometheus at http://127.0.0.1:{port} — check [telemetry] prometheus_url and that the "
            "server is up (each request waits up to 60 s and is retried 2 times)",
        )
    ]


def test_a_prometheus_without_dcgm_series(tmp_path: Path) -> None:
    with servers.prometheus([], tmp_path / "prom") as url:
        p = check_against(url, tmp_path / "site")
    assert p.returncode == 1
    lines = telemetry_lines(p)
    assert lines[0][:2] == ("PASS", "telemetry.backend") and "Prometheus 2.42.0" in lines[0][2]
    assert lines[1:] == [
        (
            "FAIL",
            "telemetry.dcgm",
            "no DCGM series at all in [2026-09-01T00:00:00Z, 2026-09-02T00:00:00Z) — check that this Prometheus "
            "scrapes dcgm-exporter (port 9400) and that the window holds data (--start/--end)",
        )
    ]


@pytest.mark.parametrize(
    ("window", "says"),
    [
        (["--start", "2026-09-01T00:00:00Z", "--end", "2026-09-01T00:00:00Z"], "error: end must be after start"),
        (["--start", "2026-09-01T00:30:00Z", "--end", "2026-09-01T02:00:00Z"], "whole UTC hours"),
    ],
)
def test_an_empty_or_ragged_window_is_one_line(window: list[str], says: str, tmp_path: Path) -> None:
    p = check_against("http://127.0.0.1:9", tmp_path / "site", *window)
    assert p.returncode == 1 and p.stdout == ""
    [line] = p.stderr.strip().splitlines()
    assert says in line


def test_start_without_end_is_a_usage_mistake(tmp_path: Path) -> None:
    p = check_against("http://127.0.0.1:9", tmp_path / "site", "--start", "2026-09-01T00:00:00Z")
    assert p.returncode == 2
    [line] = p.stderr.strip().splitlines()
    assert line.startswith("usage error:") and "both --start and --end" in line


# --- scale ---------------------------------------------------------------------------------

WIDE_SERIES = 100_000


def wide_fleet(hour_ms: int) -> list[Series]:
    """100,000 GPU_UTIL series (12,500 hosts of 8 GPUs, 1,000 jobs), one sample every 15 min."""
    ts = np.arange(hour_ms, hour_ms + HOUR_MS, 15 * 60_000, dtype=np.int64)
    values = np.full(len(ts), 50.0)
    out = []
    for i in range(WIDE_SERIES):
        labels = {
            "__name__": UTIL,
            "UUID": f"GPU-{i:08d}-0000-0000-0000-000000000000",
            "gpu": str(i % 8),
            "modelName": "NVIDIA H100 80GB HBM3",
            "Hostname": f"wide-{i // 8:05d}",
            "hpc_job": f"wide-job-{i % 1000:03d}",
        }
        out.append(Series(labels, ts, values))
    return out


def test_100k_series_stay_bounded_in_time_and_memory(tmp_path: Path) -> None:
    hour = int(START.timestamp() * 1000)
    (tmp_path / "vm").mkdir()
    with servers.victoria(tmp_path / "vm") as url:
        servers.load_victoria(url, wide_fleet(hour))
        cfg = make_site(tmp_path / "site", url)
        cfg.write_text(cfg.read_text().replace('scrape_interval = "15s"', 'scrape_interval = "15m"'))
        out, err = tmp_path / "out.txt", tmp_path / "err.txt"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUMETER_", "STRIPE_"))}
        began = time.monotonic()
        with out.open("w") as o, err.open("w") as e:
            proc = subprocess.Popen(
                [
                    GPUMETER,
                    "check",
                    "--config",
                    str(cfg),
                    "--start",
                    "2026-09-01T00:00:00Z",
                    "--end",
                    "2026-09-01T01:00:00Z",
                ],
                stdout=o,
                stderr=e,
                env=env,
            )
            _, status, usage = os.wait4(proc.pid, 0)
        took = time.monotonic() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    p = subprocess.CompletedProcess(proc.args, proc.returncode, out.read_text(), err.read_text())
    found = findings(p)
    assert took < 180, f"check took {took:.0f} s"
    assert peak_mb < 800, f"check peaked at {peak_mb:.0f} MB"
    assert p.returncode == 1  # the wide fleet's hosts are not in nodes.csv
    dcgm = named(found, "telemetry.dcgm")[0][1]
    assert f"{WIDE_SERIES} series" in dcgm and f"{UTIL} on {WIDE_SERIES} GPUs" in dcgm
    [(status, hosts)] = named(found, "inventory.hosts")
    assert status == "FAIL" and "12500 of 12500 hosts" in hosts and "and 12495 more" in hosts
    [(status, jobs)] = named(found, "inventory.jobs")
    assert status == "WARN" and "1000 of 1000 job ids" in jobs and "and 995 more" in jobs
    assert named(found, "telemetry.scrape_interval")[0][0] == "PASS"
    assert named(found, "telemetry.coverage")[0][0] == "PASS"
    assert max(len(line) for line in p.stdout.splitlines()) < 1000


# --- the demo ------------------------------------------------------------------------------


def test_the_demo_fleet_checks_clean_in_a_real_victoriametrics(tmp_path: Path) -> None:
    """``gpumeter demo``'s site and its fleet's samples in a VictoriaMetrics: no FAIL.

    The demo fleet carries the real world's traps, so a WARN is allowed where the fleet
    really has what it warns about: duplicate scrapes, exporter outages (gaps), a job
    missing from jobs.csv.
    """
    out = tmp_path / "demo"
    made = run(["demo", "--out", str(out), "--days", "1"], passphrase=None)
    assert made.returncode == 0, made.stderr
    fleet = small_fleet(seed=1, start=datetime(2026, 10, 1, tzinfo=UTC), days=1.0)
    cfg = out / "gpumeter.toml"
    (tmp_path / "vm").mkdir()
    with servers.victoria(tmp_path / "vm") as url:
        servers.load_victoria(url, fleet.series)
        cfg.write_text(cfg.read_text().replace('prometheus_url = "http://127.0.0.1:9090"', f'prometheus_url = "{url}"'))
        p = run(
            ["check", "--config", str(cfg), "--start", "2026-10-01T00:00:00Z", "--end", "2026-10-02T00:00:00Z"],
            passphrase=(out / "keys" / "demo-passphrase.txt").read_text().strip(),
        )
    found = findings(p)
    assert p.returncode == 0, p.stdout
    warned = {name: rest for status, name, rest in found if status == "WARN"}
    assert {status for status, _, _ in found} <= {"PASS", "WARN"}
    assert set(warned) <= {"telemetry.duplicates", "telemetry.coverage", "inventory.jobs"}
    if "telemetry.duplicates" in warned:
        assert len(fleet.targets) > len(fleet.nodes) or any(e.kind == "upgrade" for e in fleet.events)
    if "telemetry.coverage" in warned:
        assert any(e.kind in ("outage", "restart") for e in fleet.events)
    if "inventory.jobs" in warned:
        assert fleet.unlisted_job_ids and all(repr(j) in warned["inventory.jobs"] for j in fleet.unlisted_job_ids)
