"""Budget alerts as a user gets them: the installed ``gpumeter`` in a subprocess, collecting
from a real Prometheus (the scenarios of tests/scenarios.py), alerting a real local receiver
(:mod:`tests.billing.webhook_receiver`) that checks every signature and CloudEvent."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from billing.run import invoice_month
from gpumeter import store
from gpumeter.config import load_config
from metering.run import collect
from metering.windows import Span, parse_instant
from testing.stores import new_store
from tests.billing.webhook_receiver import HANG, Receiver, receiving
from tests.sites import make_site

GPUMETER = str(Path(sys.executable).parent / "gpumeter")
SECRET = "cli-webhook-secret"
DAY1 = ("--start", "2026-10-01T00:00:00Z", "--end", "2026-10-01T03:00:00Z")  # acme: job-edge-1, job-edge-A
DAY5 = ("--start", "2026-10-05T00:00:00Z", "--end", "2026-10-05T03:00:00Z")  # acme: MIG and shared-GPU jobs
EDGE = ("--start", "2026-10-31T22:00:00Z", "--end", "2026-11-01T02:00:00Z")  # acme: job-month, into November


def env(secret: str | None = SECRET) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("GPUMETER_AUDIT_PASSPHRASE", "GPUMETER_WEBHOOK_SECRET")}
    if secret is not None:
        e["GPUMETER_WEBHOOK_SECRET"] = secret
    return e


def run(*args: str, cwd: Path, secret: str | None = SECRET, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([GPUMETER, *args], cwd=cwd, capture_output=True, text=True, env=env(secret), timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"gpumeter {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


def site_with_alerts(root: Path, prometheus_url: str, webhook_url: str | None) -> Path:
    """A site with ``[alerts]`` and a store as ``gpumeter init`` leaves it (without a signing key)."""
    make_site(root, prometheus_url)
    alerts = "\n[alerts]\ntimeout_s = 5\nattempts = 3\nbackoff_s = 0.05\n"
    if webhook_url is not None:
        alerts += f'webhook_url = "{webhook_url}"\n'
    with (root / "gpumeter.toml").open("a", encoding="utf-8") as fh:
        fh.write(alerts)
    new_store(root / "var" / "gpumeter.duckdb").close()
    return root


def scout_nets(root: Path, prometheus_url: str, *spans: tuple[str, str, str, str]) -> list[Decimal]:
    """acme's October net in a draft invoice after each of ``spans`` is metered, on a site of its own."""
    site = site_with_alerts(root, prometheus_url, None)
    cfg = load_config(site / "gpumeter.toml")
    nets = []
    with store.opened(cfg, "write") as con:
        for _, start, _, end in spans:
            collect(con, cfg, Span.of(parse_instant(start), parse_instant(end)))
            drafts = invoice_month(con, cfg, "2026-10", False)
            nets.append(next(d.net for d in drafts if d.tenant == "acme"))
    return nets


def alert_rows(site: Path) -> list[tuple[str, str, int, bool]]:
    con = duckdb.connect(str(site / "var" / "gpumeter.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT tenant, month, threshold_percent, delivered_at IS NOT NULL FROM budget_alerts ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    return [(t, m, p, d) for t, m, p, d in rows]


def accepted(rx: Receiver) -> list[tuple[str, int, str]]:
    return [(e["data"]["month"], e["data"]["threshold_percent"], e["data"]["net"]) for e in rx.accepted]


@pytest.mark.prometheus
def test_thresholds_fire_once_as_collects_add_usage_and_never_on_recollects(
    prometheus_url: str, tmp_path: Path
) -> None:
    # A first site, without budgets, tells what acme's October costs after each collect.
    first, both = scout_nets(tmp_path / "scout", prometheus_url, DAY1, DAY5)
    step = math.floor(first * 100 / both)  # the first collect reaches this share of the month
    assert 1 <= step < 100

    with receiving(SECRET) as rx:
        site = site_with_alerts(tmp_path / "site", prometheus_url, rx.url)
        p = run("budgets", "set", "acme", "--monthly", str(both), "--thresholds", f"1000,100,{step},{step}", cwd=site)
        assert f"budget of acme: {both} EUR per month excl. VAT, alerts at {step}%, 100%, 1000%" in p.stderr
        p = run("collect", *DAY1, cwd=site)
        assert f"budget alert: tenant acme reached {step}% of its 2026-10 budget ({first} of {both} EUR" in p.stderr
        assert "budget alerts: 1 delivered" in p.stderr
        assert accepted(rx) == [("2026-10", step, str(first))]

        p = run("collect", *DAY5, cwd=site)
        assert "reached 100% of its 2026-10 budget" in p.stderr
        assert accepted(rx) == [("2026-10", step, str(first)), ("2026-10", 100, str(both))]

        for _ in range(2):  # re-collects of the same month: no second event, nothing sent again
            p = run("collect", "--start", DAY1[1], "--end", DAY5[3], cwd=site)
            assert "collected 99 windows" in p.stderr and "budget alert" not in p.stderr, p.stderr
        assert len(rx.deliveries) == 2 and rx.problems() == []
        event = rx.accepted[1]
        assert event["source"] == "/gpumeter/budgets" and event["subject"] == "acme"
        assert event["data"] == {
            "tenant": "acme",
            "month": "2026-10",
            "threshold_percent": 100,
            "budget": str(both),
            "net": str(both),
            "currency": "EUR",
        }
    assert alert_rows(site) == sorted([("acme", "2026-10", step, True), ("acme", "2026-10", 100, True)])
    report = run("budgets", "alerts", "--month", "2026-10", cwd=site).stdout
    assert report.count("delivered") == 2 and "pending" not in report


@pytest.mark.prometheus
def test_a_500_is_retried_and_a_webhook_that_is_down_gets_everything_at_the_next_run(
    prometheus_url: str, tmp_path: Path
) -> None:
    with receiving(SECRET, answers=[500]) as rx:
        site = site_with_alerts(tmp_path / "site", prometheus_url, rx.url)
        port = rx.port
        run("budgets", "set", "acme", "--monthly", "0.01", cwd=site)
        p = run("collect", *DAY1, cwd=site)
        assert "budget alerts: 3 delivered" in p.stderr
        assert [d.answered for d in rx.deliveries] == [500, 200, 200, 200]
        assert [t for _, t, _ in accepted(rx)] == [50, 80, 100]
    # the receiver is gone: November's alerts are decided, kept, and the collect still succeeds
    p = run("collect", *EDGE, cwd=site)
    assert p.stderr.count("reached") == 3 and "of its 2026-11 budget" in p.stderr
    assert "warning: 3 budget alert(s) pending" in p.stderr and "is not taking alerts" in p.stderr
    assert [r for r in alert_rows(site) if r[1] == "2026-11"] == [("acme", "2026-11", t, False) for t in (50, 80, 100)]
    with receiving(SECRET, port=port) as rx:
        p = run("collect", *DAY5, cwd=site)  # the next run, whatever it meters, delivers them
        assert "budget alerts: 3 delivered" in p.stderr and "reached" not in p.stderr
        assert [(m, t) for m, t, _ in accepted(rx)] == [("2026-11", 50), ("2026-11", 80), ("2026-11", 100)]
        assert len(rx.deliveries) == 3 and rx.problems() == []
    assert all(delivered for *_, delivered in alert_rows(site))


@pytest.mark.prometheus
def test_a_run_killed_between_the_decision_and_the_delivery_is_delivered_once_by_the_next(
    prometheus_url: str, tmp_path: Path
) -> None:
    with receiving(SECRET, answers=[HANG]) as rx:
        site = site_with_alerts(tmp_path / "site", prometheus_url, rx.url)
        run("budgets", "set", "acme", "--monthly", "0.01", cwd=site)
        proc = subprocess.Popen(
            [GPUMETER, "collect", *DAY1],
            cwd=site,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert rx.got_request.wait(120), "the collect never sent its first alert"
            proc.send_signal(signal.SIGKILL)  # the alert is decided; its delivery never got an answer
        finally:
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        rx.release.set()
        assert rx.accepted == []
        assert alert_rows(site) == [("acme", "2026-10", t, False) for t in (50, 80, 100)]

        p = run("budgets", "deliver", cwd=site)
        assert "budget alerts: 3 delivered" in p.stderr
        p = run("collect", *DAY1, cwd=site)  # and the next collect decides nothing new
        assert "budget alert" not in p.stderr
        assert [t for _, t, _ in accepted(rx)] == [50, 80, 100]
        assert len(rx.deliveries) == 4 and rx.deliveries[0].body == rx.deliveries[1].body
        assert rx.problems() == []
    report = run("budgets", "alerts", cwd=site).stdout
    assert report.count("delivered") == 3
    p = run("budgets", "deliver", cwd=site)
    assert "no budget alert pending" in p.stderr


@pytest.mark.prometheus
def test_without_the_secret_alerts_wait_and_the_run_says_so_once(prometheus_url: str, tmp_path: Path) -> None:
    with receiving(SECRET) as rx:
        site = site_with_alerts(tmp_path / "site", prometheus_url, rx.url)
        run("budgets", "set", "acme", "--monthly", "0.01", cwd=site)
        p = run("collect", *DAY1, cwd=site, secret=None)
        assert p.stderr.count("GPUMETER_WEBHOOK_SECRET is not set") == 1
        assert "3 budget alert(s) pending" in p.stderr
        p = run("budgets", "deliver", cwd=site, secret="", check=False)
        assert p.returncode == 1
        assert "error: 3 budget alert(s) still pending: GPUMETER_WEBHOOK_SECRET is not set" in p.stderr
        assert rx.deliveries == []
        p = run("budgets", "deliver", cwd=site)
        assert "budget alerts: 3 delivered" in p.stderr and len(rx.accepted) == 3


def test_bad_budget_input_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    site = site_with_alerts(tmp_path / "site", "http://127.0.0.1:9", "https://hooks.example.eu/gpumeter")
    for args, message in (
        (("--monthly", "10.005"), "'--monthly': '10.005' has more than two decimals"),
        (("--monthly", "100", "--thresholds", "50,0"), "'--thresholds': threshold 0 is outside 1-1000"),
    ):
        p = run("budgets", "set", "acme", *args, cwd=site, check=False)
        assert p.returncode == 2 and "usage error" in p.stderr and message in p.stderr, p.stderr
    p = run("budgets", "set", "nobody", "--monthly", "100", cwd=site, check=False)
    assert p.returncode == 1
    assert f"error: {site / 'tenants.csv'}: no such tenant in tenants.csv (value 'nobody')" in p.stderr

    toml = site / "gpumeter.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8").replace("https://hooks.example.eu/gpumeter", "ftp://hooks.example.eu/x"),
        encoding="utf-8",
    )
    line = toml.read_text(encoding="utf-8").splitlines().index('webhook_url = "ftp://hooks.example.eu/x"') + 1
    p = run("budgets", "set", "acme", "--monthly", "100", cwd=site, check=False)
    assert p.returncode == 1
    assert f"{toml}:{line}: [alerts] webhook_url must be an http:// or https:// URL" in p.stderr
    assert "no budgets" in run("budgets", "list", cwd=site).stderr

    toml.write_text(toml.read_text(encoding="utf-8").replace("ftp://", "https://"), encoding="utf-8")
    run("budgets", "set", "acme", "--monthly", "100", cwd=site)
    p = run("budgets", "set", "acme", "--monthly", "250.5", "--thresholds", "90", cwd=site)
    assert "250.50 EUR per month excl. VAT, alerts at 90% (was 100.00 EUR at 50%, 80%, 100%)" in p.stderr
    assert "budget of acme removed" in run("budgets", "remove", "acme", cwd=site).stderr
    p = run("budgets", "remove", "acme", cwd=site, check=False)
    assert p.returncode == 1 and "error: this tenant has no budget (value 'acme')" in p.stderr
