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

from metering.samples import GR_ACTIVE, UTIL, Series
from metering.windows import HOUR_MS
from simulator import Fleet, Target, Traps, small_fleet, write_inventory
from testing import servers
from testing.peak import run_measured
from testing.proxy import proxy
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


def test_check_asks_as_collect_asks_through_a_query_frontend_with_a_token(
    fleet: Fleet, fleet_url: str, tmp_path: Path
) -> None:
    """``query_url``, ``headers`` and the bearer token of [telemetry] reach the backend (seen by
    a proxy standing in for a query frontend); an unset token variable is one FAIL line."""
    cfg = healthy_site(tmp_path / "site", fleet, fleet_url)
    with proxy(fleet_url) as (frontend, faults):
        text = cfg.read_text().replace(
            "[telemetry]\n",
            f'[telemetry]\nquery_url = "{frontend}"\nbearer_token_env = "GPUMETER_TEST_TOKEN"\n'
            'headers = { "X-Scope-OrgID" = "gpu-cloud" }\n',
            1,
        )
        cfg.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUMETER_", "STRIPE_"))}
        env["GPUMETER_AUDIT_PASSPHRASE"] = PASSPHRASE
        unset = subprocess.run(
            [GPUMETER, "check", "--config", str(cfg), *WINDOW], capture_output=True, text=True, env=env
        )
        [(status, says)] = named(findings(unset), "telemetry")
        assert unset.returncode == 1 and status == "FAIL" and "GPUMETER_TEST_TOKEN" in says
        assert faults.requests == 0
        env["GPUMETER_TEST_TOKEN"] = "s3cret-token"
        p = subprocess.run([GPUMETER, "check", "--config", str(cfg), *WINDOW], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "s3cret-token" not in p.stdout + p.stderr  # never printed
    queries = [h for h in faults.headers if h]
    assert queries and all(h.get("Authorization") == "Bearer s3cret-token" for h in queries)
    assert all(h.get("X-Scope-OrgID") == "gpu-cloud" for h in queries)


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


@pytest.mark.parametrize("kind", ["prometheus", "victoria"])
def test_duplicates_counted_once_pass_and_one_gpu_on_two_hosts_warns(kind: str, fleet: Fleet, tmp_path: Path) -> None:
    """A second scrape job on one host is counted once by the meter: named, not warned about.
    A copy of one GPU's series that names another host is: the job would be attributed to
    both hosts (and both countries)."""
    host, other = fleet.nodes[0].hostname, fleet.nodes[1].hostname
    gpu = next(g for g in fleet.gpus if g.hostname == host and not g.mig)
    [primary] = {t.job for t in fleet.targets if t.hostname == host}
    second = [
        Series({**s.labels, "job": "dcgm-2"}, s.ts_ms, s.values)
        for s in fleet.series
        if s.labels.get("Hostname") == host
    ]
    moved = [
        Series({**s.labels, "Hostname": other, "job": "dcgm-2"}, s.ts_ms, s.values)
        for s in fleet.series
        if s.labels.get("UUID") == gpu.uuid and s.labels["__name__"] == UTIL
    ]
    assert second and moved
    series = [*fleet.series, *second, *moved]
    (tmp_path / kind).mkdir()
    with contextlib.ExitStack() as stack:
        if kind == "prometheus":
            url = stack.enter_context(servers.prometheus(series, tmp_path / kind))
        else:
            url = stack.enter_context(servers.victoria(tmp_path / kind))
            servers.load_victoria(url, series)
        cfg = healthy_site(tmp_path / "site", fleet, url)
        p = run(["check", "--json", "--config", str(cfg), *WINDOW])
    assert p.returncode == 0, p.stdout + p.stderr
    by = {f["check"]: f for f in json.loads(p.stdout)}
    assert {c for c, f in by.items() if f["status"] != "PASS"} == {"telemetry.duplicates"}
    dup = by["telemetry.duplicates"]
    assert dup["status"] == "WARN"
    assert dup["details"]["conflicting_gpus"] == 1
    assert dup["details"]["conflicts"] == [f"{gpu.uuid}: hosts {', '.join(repr(h) for h in sorted((host, other)))}"]
    assert dup["details"]["causes"][f"two scrape jobs ({', '.join(repr(j) for j in sorted((primary, 'dcgm-2')))})"] == [
        host
    ]
    units_on_host = sum(len(g.mig) or 1 for g in fleet.gpus if g.hostname == host)
    assert dup["details"]["duplicated_gpus"] == units_on_host
    assert "attributed to every host named" in dup["message"] and "same host, model and MIG profile" in dup["fix"]


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
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUMETER_", "STRIPE_"))}
        args = [GPUMETER, "check", "--config", str(cfg), "--start", "2026-09-01T00:00:00Z"]
        measured = run_measured([*args, "--end", "2026-09-01T01:00:00Z"], tmp_path, env)
    p, took, peak_mb = measured.result, measured.seconds, measured.peak_mb
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


def units_with_gaps_in_victoria(fleet: Fleet, span_ms: tuple[int, int]) -> set[tuple[str, str]]:
    """(uuid, GPU_I_ID) with a coverage gap once ``fleet`` is in a VictoriaMetrics, from its records.

    - every GPU and MIG instance of a host whose exporter had an outage or a restart inside
      the window (no samples for a stretch);
    - every one with a NaN evidence reading that no other series of it covers in that
      scrape slot: VictoriaMetrics drops NaN samples at ingestion (ADR 0001), so the slot
      is empty there (Prometheus keeps it: held, not busy).
    """
    start, end = span_ms
    down = {e.hostname for e in fleet.events if e.kind in ("outage", "restart") and start < e.start_ms < end}
    units = {(g.uuid, str(m.gpu_i_id)) for g in fleet.gpus if g.hostname in down for m in g.mig}
    units |= {(g.uuid, "") for g in fleet.gpus if g.hostname in down and not g.mig}
    slot_ms = fleet.spec.scrape_interval_s * 1000
    evidence: dict[tuple[str, str], list[Series]] = {}
    for s in fleet.series:
        unit = (s.labels.get("UUID") or s.labels.get("uuid", ""), s.labels.get("GPU_I_ID", ""))
        if (s.labels["__name__"], bool(unit[1])) in ((UTIL, False), (GR_ACTIVE, True)):
            evidence.setdefault(unit, []).append(s)
    for unit, series in evidence.items():
        kept = set().union(*({int(t) // slot_ms for t in s.ts_ms[~np.isnan(s.values)]} for s in series))
        dropped = {int(t) // slot_ms for s in series for t in s.ts_ms[np.isnan(s.values)]}
        if dropped - kept:
            units.add(unit)
    return units


def test_the_demo_fleet_checks_clean_in_a_real_victoriametrics(tmp_path: Path) -> None:
    """``gpumeter demo``'s site and its fleet's samples in a VictoriaMetrics: no FAIL.

    The demo fleet carries the real world's traps. Its duplicate scrapes (a second scrape
    job, an HA pair, the Hostname -> hostname rename) are counted once by the meter: PASS,
    naming each cause on exactly the hosts the simulator put it on. WARN only where the
    fleet really changes what is billed: the job missing from jobs.csv, and the GPUs whose
    samples are missing (exporter outages and restarts, and NaN readings VictoriaMetrics drops).
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
        args = ["check", "--config", str(cfg), "--start", "2026-10-01T00:00:00Z", "--end", "2026-10-02T00:00:00Z"]
        passphrase = (out / "keys" / "demo-passphrase.txt").read_text().strip()
        p = run(args, passphrase=passphrase)
        doc = run([*args, "--json"], passphrase=passphrase)
    found = findings(p)
    assert p.returncode == 0, p.stdout
    by = {f["check"]: f for f in json.loads(doc.stdout)}
    # what the simulator put in the fleet, inside the window
    start_ms, end_ms = int(fleet.spec.start.timestamp() * 1000), int(fleet.spec.start.timestamp() * 1000) + 24 * HOUR_MS
    gapped = units_with_gaps_in_victoria(fleet, (start_ms, end_ms))
    assert fleet.unlisted_job_ids and gapped  # the traps are on: both are there to be warned about
    assert {name for status, name, _ in found if status != "PASS"} == {"inventory.jobs", "telemetry.coverage"}
    assert {status for status, name, _ in found if name in ("inventory.jobs", "telemetry.coverage")} == {"WARN"}

    jobs = by["inventory.jobs"]
    assert all(repr(j) in jobs["message"] for j in fleet.unlisted_job_ids)
    assert f"{len(fleet.unlisted_job_ids)} of " in jobs["message"]

    coverage = by["telemetry.coverage"]["details"]
    assert coverage["gap_gpus"] == len(gapped)
    shown = {(e["uuid"], e["gpu_i_id"]) for e in coverage["examples"]}
    assert shown <= gapped and (len(shown) == len(gapped) or len(shown) == 5)

    duplicates = by["telemetry.duplicates"]
    assert duplicates["status"] == "PASS" and duplicates["message"].endswith("each slot counts once")
    per_host: dict[str, set[Target]] = {}
    for t in fleet.targets:
        per_host.setdefault(t.hostname, set()).add(t)
    upgraded = sorted({e.hostname for e in fleet.events if e.kind == "upgrade" and start_ms < e.start_ms < end_ms})
    ha = sorted(h for h, ts in per_host.items() if len({t.replica for t in ts}) > 1)
    scrape_jobs: dict[str, list[str]] = {}
    for h, ts in sorted(per_host.items()):
        names = sorted({t.job for t in ts})
        if len(names) == 2:
            scrape_jobs.setdefault(f"two scrape jobs ({', '.join(repr(j) for j in names)})", []).append(h)
    expected = {
        "the host label renamed Hostname -> hostname (a dcgm-exporter upgrade)": upgraded,
        "an HA Prometheus pair (label 'replica')": ha,
        **scrape_jobs,
    }
    assert upgraded and ha and scrape_jobs  # each trap is on in the demo
    assert duplicates["details"]["causes"] == expected
    assert 0 < duplicates["details"]["duplicated_gpus"] <= sum(len(g.mig) or 1 for g in fleet.gpus)
