"""Budget alerts against a real DuckDB store and a real local webhook receiver.

The usage is written into the store as ``collect`` leaves it (tests/billing/conftest.py);
the alerts go over real sockets to :mod:`tests.billing.webhook_receiver` on 127.0.0.1.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing import alerts
from billing.alert_delivery import AlertSettings, alert_settings, deliver
from billing.alerts import evaluate, month_to_date_nets
from billing.budgets import Budget, event_id
from billing.errors import BillingError, PricingError
from billing.run import invoice_month
from gpumeter.config import Config, load_config
from gpumeter.errors import ConfigError
from gpumeter.months import Month
from testing.servers import free_port
from tests.billing.conftest import A30, H100, Site, at
from tests.billing.webhook_receiver import HANG, receiving

SECRET = "test-webhook-secret"
OCT, NOV = Month.parse("2026-10"), Month.parse("2026-11")
HOUR = 3600


def with_alerts(site: Site, alerts_toml: str) -> Config:
    """The site's gpumeter.toml with an ``[alerts]`` section appended, loaded again."""
    path = site.root / "gpumeter.toml"
    path.write_text(path.read_text(encoding="utf-8") + "\n[alerts]\n" + alerts_toml, encoding="utf-8")
    return load_config(path)


def fired(site: Site) -> list[tuple[str, str, int, Decimal, Decimal]]:
    return [
        (t, m, p, b, n)
        for t, m, p, b, n in site.con.execute(
            "SELECT tenant, month, threshold_percent, budget_eur, net_eur FROM budget_alerts ORDER BY ALL"
        ).fetchall()
    ]


def attempts(site: Site) -> list[tuple[str, str, int | None]]:
    rows = site.con.execute(
        "SELECT d.event_id, d.outcome, d.http_status FROM budget_deliveries d ORDER BY d.id"
    ).fetchall()
    return [(e, o, s) for e, o, s in rows]


def budget(site: Site, tenant: str, monthly: str, thresholds: tuple[int, ...] = (50, 80, 100)) -> None:
    alerts.set_budget(site.con, Budget(tenant, Decimal(monthly), thresholds))


def test_each_threshold_fires_once_per_tenant_and_month_whatever_the_total_does(site: Site) -> None:
    site.add_job("train", "acme")
    site.add_usage("train", H100, 100 * HOUR)  # 280.00 EUR
    budget(site, "acme", "500")
    first = evaluate(site.con, site.config, [OCT])
    assert [(a.threshold_percent, a.net) for a in first] == [(50, Decimal("280.00"))]
    assert evaluate(site.con, site.config, [OCT]) == []  # the same total again: nothing new

    site.add_job("eval", "acme")
    site.add_usage("eval", H100, 50 * HOUR, window="2026-10-06T10:00:00")  # 420.00 in all: 84 %
    assert [a.threshold_percent for a in evaluate(site.con, site.config, [OCT])] == [80]

    # the month is re-collected with less usage, then with it again: nothing un-fires or re-fires
    site.con.execute("DELETE FROM usage WHERE job_id = 'eval'")
    assert evaluate(site.con, site.config, [OCT]) == []
    site.add_usage("eval", H100, 50 * HOUR, window="2026-10-06T10:00:00")
    assert evaluate(site.con, site.config, [OCT]) == []

    # another month is another set of thresholds
    site.add_usage("train", H100, 90 * HOUR, window="2026-11-02T10:00:00")  # 252.00: 50 %
    assert [(a.month, a.threshold_percent) for a in evaluate(site.con, site.config, [OCT, NOV])] == [("2026-11", 50)]
    assert fired(site) == [
        ("acme", "2026-10", 50, Decimal("500.00"), Decimal("280.00")),
        ("acme", "2026-10", 80, Decimal("500.00"), Decimal("420.00")),
        ("acme", "2026-11", 50, Decimal("500.00"), Decimal("252.00")),
    ]


def test_a_budget_changed_mid_month_fires_what_it_newly_reaches_and_nothing_twice(site: Site) -> None:
    site.add_job("train", "acme")
    site.add_usage("train", H100, 100 * HOUR)  # 280.00 EUR
    budget(site, "acme", "1000")
    assert evaluate(site.con, site.config, [OCT]) == []  # 28 %
    budget(site, "acme", "500")  # lowered: 56 %
    assert [(a.threshold_percent, a.budget) for a in evaluate(site.con, site.config, [OCT])] == [
        (50, Decimal("500.00"))
    ]
    budget(site, "acme", "2000")  # raised: 14 %; the 50 % alert stays sent, and is not sent again
    assert evaluate(site.con, site.config, [OCT]) == []
    budget(site, "acme", "2000", (10, 50))  # thresholds changed: 10 % is new and reached
    assert [a.threshold_percent for a in evaluate(site.con, site.config, [OCT])] == [10]
    budget(site, "acme", "200", (10, 50, 100, 140))  # 140 %: everything reached; only 100 and 140 are new
    assert [a.threshold_percent for a in evaluate(site.con, site.config, [OCT])] == [100, 140]
    assert [p for _, _, p, _, _ in fired(site)] == [10, 50, 100, 140]


def test_no_budget_no_pricing(site: Site) -> None:
    site.add_job("train", "acme")
    site.add_usage("train", "A GPU no rate prices", HOUR)
    assert evaluate(site.con, site.config, [OCT]) == []  # nothing read, nothing priced


def test_the_net_is_what_the_draft_invoice_says(site: Site) -> None:
    site.write_rates(
        """
[[rate]]
model = "NVIDIA H100 80GB HBM3"
eur_per_gpu_hour = "2.80"
  [[rate.tier]]
  from_gpu_hours = "10"
  eur_per_gpu_hour = "2.50"

[[rate]]
model = "NVIDIA A30"
eur_per_gpu_hour = "1.20"

[[discount]]
tenant = "acme"
percent = "7.5"
"""
    )
    site.add_job("train", "acme")
    site.add_job("mig", "acme")
    site.add_job("other", "berlin")
    site.add_usage("train", H100, Decimal("43210.123456789"))
    site.add_usage("mig", A30, 7 * HOUR, profile="2g.12gb")
    site.add_usage("other", H100, 5 * HOUR)
    nets = month_to_date_nets(site.con, site.config, OCT, ["acme", "berlin", "nyc"])
    drafts = {r.tenant: r.net for r in invoice_month(site.con, site.config, "2026-10", False)}
    assert nets == {"acme": drafts["acme"], "berlin": drafts["berlin"], "nyc": Decimal("0.00")}
    assert nets["acme"] > 0


def test_the_net_counts_contracts_as_the_invoice_does_before_and_after_issue(site: Site) -> None:
    site.write_contracts(
        f'[[reservation]]\nid = "RES-1"\ntenant = "acme"\nmodel = "{H100}"\ngpus = 1\n'
        'start = "2026-10-01"\nend = "2026-11-01"\neur_per_gpu_hour = "1.90"\n\n'
        '[[credit]]\nid = "PROMO"\ntenant = "acme"\nkind = "promotional"\neur = "100.00"\nstart = "2026-10-01"\n\n'
        '[[credit]]\nid = "PRE"\ntenant = "acme"\nkind = "prepaid"\neur = "50.00"\nstart = "2026-10-01"\n'
    )
    site.add_job("train", "acme")
    site.add_usage("train", H100, 10 * HOUR)  # 10 GPU-hours in one hour: 1 drawn, 9 at 2.80 = 25.20
    # the reservation's whole month counts from the first hour (744 h x 1.90 = 1413.60, used or
    # not), the promotional credit is deducted (net 1338.80), the prepaid one pays, it is not a price
    budget(site, "acme", "2000")
    assert month_to_date_nets(site.con, site.config, OCT, ["acme"]) == {"acme": Decimal("1338.80")}
    assert [(a.threshold_percent, a.net) for a in evaluate(site.con, site.config, [OCT])] == [(50, Decimal("1338.80"))]
    (issued,) = invoice_month(site.con, site.config, "2026-10", True, now=at(2))
    assert (issued.net, issued.total, issued.due) == (Decimal("1338.80"), Decimal("1606.56"), Decimal("1556.56"))
    assert month_to_date_nets(site.con, site.config, OCT, ["acme"]) == {"acme": Decimal("1338.80")}
    # more usage after issue: a supplementary invoice (4 h beyond the reservation, the credit
    # spent) is pending; the month's net is the issued one plus it
    site.add_usage("train", H100, 5 * HOUR, window="2026-10-06T10:00:00")
    (extra,) = [r for r in invoice_month(site.con, site.config, "2026-10", False) if r.status == "draft"]
    assert extra.net == Decimal("11.20")
    assert month_to_date_nets(site.con, site.config, OCT, ["acme"]) == {"acme": Decimal("1350.00")}


def test_another_tenants_unpriceable_usage_does_not_stop_a_budget_but_its_own_does(site: Site) -> None:
    site.add_job("train", "acme")
    site.add_job("odd", "nyc")
    site.add_usage("train", H100, 100 * HOUR)
    site.add_usage("odd", "A GPU no rate prices", HOUR)
    budget(site, "acme", "100")
    assert [a.threshold_percent for a in evaluate(site.con, site.config, [OCT])] == [50, 80, 100]
    budget(site, "nyc", "100")
    with pytest.raises(PricingError, match="A GPU no rate prices"):
        evaluate(site.con, site.config, [OCT])


# --- [alerts] --------------------------------------------------------------------------------


def test_settings_defaults_and_values(site: Site) -> None:
    assert alert_settings(site.config) == AlertSettings()
    cfg = with_alerts(
        site,
        'webhook_url = "https://hooks.example.eu/gpumeter?x=1"\nsource = "https://gpumeter.example.eu"\n'
        "timeout_s = 2.5\nattempts = 5\nbackoff_s = 0\n",
    )
    s = alert_settings(cfg)
    assert s == AlertSettings("https://hooks.example.eu/gpumeter?x=1", "https://gpumeter.example.eu", 2.5, 5, 0.0)
    assert [AlertSettings(backoff_s=1.5).delay_s(n) for n in (1, 2, 3, 8)] == [1.5, 3.0, 6.0, 60.0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('webhook_url = "ftp://hooks.example.eu/x"', "webhook_url must be an http:// or https:// URL"),
        ('webhook_url = "hooks.example.eu/x"', "webhook_url must be an http:// or https:// URL"),
        ('webhook_url = "https:///x"', "webhook_url has no host"),
        ('webhook_url = "https://user:pw@hooks.example.eu/x"', "must not carry credentials"),
        ("webhook_url = 42", "webhook_url must be a string"),
        ('timeout_s = "10"', "timeout_s must be a number, not a string"),
        ("timeout_s = 0", "timeout_s must be a number of seconds"),
        ("timeout_s = nan", "timeout_s must be a number of seconds"),
        ("attempts = 0", "attempts must be a whole number from 1 to 10"),
        ("attempts = true", "attempts must be a whole number"),
        ("backoff_s = -1", "backoff_s must be a number of seconds"),
        ('source = ""', "source must be a non-empty string"),
        ('webhook = "https://x.example"', "unknown key"),
    ],
)
def test_bad_alert_settings_name_file_line_and_value(site: Site, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:  # a wrong key or type: when the file is read
        alert_settings(with_alerts(site, f"# budget alerts\n{line}\n"))
    toml = (site.root / "gpumeter.toml").read_text(encoding="utf-8").splitlines()
    assert info.value.file == str(site.root / "gpumeter.toml")
    assert info.value.line is not None and toml[info.value.line - 1] == line


# --- delivery --------------------------------------------------------------------------------


def two_alerts(site: Site) -> list[str]:
    """acme reaches 50 and 80 % of its October budget; returns the two event ids, in order."""
    site.add_job("train", "acme")
    site.add_usage("train", H100, 100 * HOUR)  # 280.00
    budget(site, "acme", "300")
    assert [a.threshold_percent for a in evaluate(site.con, site.config, [OCT])] == [50, 80]
    return [event_id(AlertSettings().source, "acme", "2026-10", p) for p in (50, 80)]


def pending(site: Site) -> int:
    return int(site.con.execute("SELECT count(*) FROM budget_alerts WHERE delivered_at IS NULL").fetchall()[0][0])


def test_a_500_is_retried_with_backoff_and_the_alert_delivered_once(site: Site) -> None:
    ids = two_alerts(site)
    pauses: list[float] = []
    with receiving(SECRET, answers=[500]) as rx:
        settings = AlertSettings(rx.url, backoff_s=0.25)
        report = deliver(site.con, settings, SECRET, sleep=pauses.append)
    assert report.delivered == ids and report.pending == 0 and report.problem is None
    assert rx.problems() == []
    assert [d.answered for d in rx.deliveries] == [500, 200, 200]
    assert rx.deliveries[0].body == rx.deliveries[1].body  # the retry is the same event, byte for byte
    assert [e["id"] for e in rx.accepted] == ids
    assert [e["data"]["threshold_percent"] for e in rx.accepted] == [50, 80]
    assert rx.accepted[0]["data"] == {
        "tenant": "acme",
        "month": "2026-10",
        "threshold_percent": 50,
        "budget": "300.00",
        "net": "280.00",
        "currency": "EUR",
    }
    assert pauses == [0.25]
    assert attempts(site) == [(ids[0], "refused", 500), (ids[0], "accepted", 200), (ids[1], "accepted", 200)]
    assert pending(site) == 0
    # delivered alerts are never sent again
    with receiving(SECRET) as rx2:
        assert deliver(site.con, AlertSettings(rx2.url), SECRET).delivered == []
    assert rx2.deliveries == []


def test_an_endpoint_that_is_down_keeps_every_alert_until_it_is_back(site: Site) -> None:
    ids = two_alerts(site)
    port = free_port()  # nothing listens there yet
    pauses: list[float] = []
    settings = AlertSettings(f"http://127.0.0.1:{port}/hooks/budget", timeout_s=2, attempts=3, backoff_s=0.5)
    report = deliver(site.con, settings, SECRET, sleep=pauses.append)
    assert report.delivered == [] and report.pending == 2
    assert report.problem is not None and "is not taking alerts" in report.problem
    assert pauses == [0.5, 1.0]  # exponential backoff between the attempts of this run
    # the run stopped at the first alert instead of hammering the endpoint with the second
    assert attempts(site) == [(ids[0], "unreachable", None)] * 3
    assert pending(site) == 2
    with receiving(SECRET, port=port) as rx:
        report = deliver(site.con, settings, SECRET, sleep=pauses.append)
    assert report.delivered == ids and report.pending == 0
    assert [e["id"] for e in rx.accepted] == ids and len(rx.deliveries) == 2 and rx.problems() == []


def test_a_refused_alert_does_not_hold_back_the_others(site: Site) -> None:
    ids = two_alerts(site)
    with receiving(SECRET, answers=[422]) as rx:
        report = deliver(site.con, AlertSettings(rx.url, backoff_s=0), SECRET)
    assert report.delivered == [ids[1]] and report.pending == 1
    assert report.problem is not None and "refused" in report.problem and "422" in report.problem
    assert attempts(site) == [(ids[0], "refused", 422), (ids[1], "accepted", 200)]
    with receiving(SECRET) as rx:
        assert deliver(site.con, AlertSettings(rx.url), SECRET).delivered == [ids[0]]


def test_without_a_secret_or_a_url_nothing_is_sent_and_nothing_is_lost(site: Site) -> None:
    two_alerts(site)
    with receiving(SECRET) as rx:
        for secret in (None, "", "  "):
            report = deliver(site.con, AlertSettings(rx.url), secret)
            assert report.pending == 2 and report.delivered == []
            assert report.problem is not None and "GPUMETER_WEBHOOK_SECRET is not set" in report.problem
        report = deliver(site.con, AlertSettings(), SECRET, config_path="site/gpumeter.toml")
        assert report.problem == "no [alerts] webhook_url in site/gpumeter.toml: nothing sent"
    assert rx.deliveries == [] and attempts(site) == [] and pending(site) == 2


def test_a_request_is_bounded_by_the_timeout(site: Site) -> None:
    ids = two_alerts(site)
    with receiving(SECRET, answers=[HANG]) as rx:
        began = time.monotonic()
        report = deliver(site.con, AlertSettings(rx.url, timeout_s=1.0, attempts=1), SECRET)
        took = time.monotonic() - began
    assert took < 3.0
    assert report.pending == 2 and report.problem is not None and "no answer within 1 s" in report.problem
    assert attempts(site) == [(ids[0], "unreachable", None)]


def test_after_metering_delivers_pending_alerts_even_when_a_month_cannot_be_priced(site: Site) -> None:
    ids = two_alerts(site)
    site.add_job("odd", "acme")
    site.add_usage("odd", "A GPU no rate prices", HOUR, window="2026-11-03T00:00:00")
    said: list[str] = []
    with receiving(SECRET) as rx:
        cfg = with_alerts(site, f'webhook_url = "{rx.url}"\n')
        not_decided = (
            r"rates.toml: budget alerts for 2026-11 not decided \(the metered usage is stored\): .*'A GPU no rate"
        )
        with pytest.raises(BillingError, match=not_decided):
            alerts.after_metering(site.con, cfg, [NOV], secret=SECRET, say=said.append)
    assert [e["id"] for e in rx.accepted] == ids
    assert said == ["budget alerts: 2 delivered"]


def test_after_metering_says_what_it_decided_and_why_alerts_wait(site: Site) -> None:
    site.add_job("train", "acme")
    site.add_usage("train", H100, 100 * HOUR)  # 280.00
    budget(site, "acme", "300")
    said: list[str] = []
    at = datetime(2026, 10, 5, 11, tzinfo=UTC)
    alerts.after_metering(site.con, site.config, [OCT], secret=SECRET, say=said.append, at=at)
    assert said == [
        "budget alert: tenant acme reached 50% of its 2026-10 budget (280.00 of 300.00 EUR excl. VAT)",
        "budget alert: tenant acme reached 80% of its 2026-10 budget (280.00 of 300.00 EUR excl. VAT)",
        f"warning: 2 budget alert(s) pending: no [alerts] webhook_url in {site.config.path}: nothing sent; "
        "retried at the next collect or metered hour, or by `gpumeter budgets deliver`",
    ]
    decided = site.con.execute("SELECT DISTINCT decided_at FROM budget_alerts").fetchall()
    assert decided == [(at,)]
