"""Time grid, PromQL quoting and configuration checks."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpumeter.config import load_config
from gpumeter.errors import ConfigError
from gpumeter.months import MonthError
from gpumeter.party import Party
from metering.errors import RangeError, TelemetryError
from metering.prom import PromClient, client_for
from metering.promql import quote, raw_selector, regex_alternation
from metering.windows import Span, month_span, parse_instant
from tests.sites import make_site


def test_month_spans_are_utc_calendar_months() -> None:
    s = month_span("2026-12")
    assert (s.start_ms, s.end_ms) == (
        int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000),
        int(datetime(2027, 1, 1, tzinfo=UTC).timestamp() * 1000),
    )
    assert len(month_span("2026-02").windows()) == 28 * 24
    for bad in ("2026-13", "2026-1", "26-01", "2026/01", "1999-12"):
        with pytest.raises(MonthError):
            month_span(bad)


def test_instants_need_an_offset_and_whole_hours() -> None:
    assert parse_instant("2026-10-01T02:00:00+02:00") == datetime(2026, 10, 1, tzinfo=UTC)
    assert parse_instant("2026-10-01") == datetime(2026, 10, 1, tzinfo=UTC)
    with pytest.raises(RangeError, match="offset"):
        parse_instant("2026-10-01T00:00:00")
    with pytest.raises(RangeError, match="whole UTC hours"):
        Span.of(parse_instant("2026-10-01T00:30:00Z"), parse_instant("2026-10-01T02:00:00Z"))
    with pytest.raises(RangeError, match="after"):
        Span.of(parse_instant("2026-10-02T00:00:00Z"), parse_instant("2026-10-01T00:00:00Z"))
    assert [
        c.windows() for c in Span.of(parse_instant("2026-10-01T00:00Z"), parse_instant("2026-10-01T05:00Z")).chunks(2)
    ] == [[x, x + 3_600_000] for x in range(1_790_812_800_000, 1_790_812_800_000 + 4 * 3_600_000, 2 * 3_600_000)] + [
        [1_790_812_800_000 + 4 * 3_600_000]
    ]


def test_label_values_are_escaped_in_promql() -> None:
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    pattern = regex_alternation(['we"ird\\job', "x.y"])
    # the regex, once unquoted, matches exactly the two values and nothing else
    unquoted = pattern[1:-1].encode().decode("unicode_escape")
    rx = re.compile(f"^(?:{unquoted})$")
    assert rx.match('we"ird\\job') and rx.match("x.y") and not rx.match("xzy")
    assert raw_selector("UUID", ["GPU-1"]).startswith('{__name__=~"(?:DCGM_FI_DEV_GPU_UTIL|')


def test_query_range_refuses_more_than_11000_steps() -> None:
    c = PromClient("http://127.0.0.1:9")
    with pytest.raises(TelemetryError, match="11000"):
        c.range_frame("up", 0, 11_001 * 15_000, 15)


def test_config_errors_name_the_file(tmp_path: Path) -> None:
    cfg = make_site(tmp_path, "http://127.0.0.1:9090")
    c = load_config(cfg)
    assert c.telemetry.scrape_interval_ms == 15_000
    assert c.store.database == tmp_path / "var" / "gpumeter.duckdb"
    cfg.write_text(cfg.read_text().replace('scrape_interval = "15s"', 'scrape_interval = "7s"'))
    with pytest.raises(ConfigError, match="divide one hour") as e:
        load_config(cfg)
    assert str(cfg) in e.value.explain()
    cfg.write_text("this is = not toml [")
    with pytest.raises(ConfigError, match="TOML"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_the_supplier_is_a_party_and_its_payment_terms_apart(tmp_path: Path) -> None:
    cfg = tmp_path / "gpumeter.toml"
    cfg.write_text(
        "[billing.supplier]\n"
        'legal_name = "Nuage GPU SAS"\ncountry = "FR"\nvat_id = "fr 40 303265045"\nsiren = "303 265 045"\n'
        "payment_terms_days = 45\n"
    )
    c = load_config(cfg)
    assert c.billing.supplier == Party("Nuage GPU SAS", "FR", "FR40303265045", siren="303265045")
    assert c.billing.payment_terms_days == 45
    assert load_config(tmp_path / "gpumeter.toml").billing.supplier.identifier == ""
    for bad, match in (
        ('identifier = "acme"', "unknown key 'identifier'"),
        ('einvoice = "peppol"', "unknown key 'einvoice'"),  # a customer's format (tenants.csv), not the supplier's
        ('payment_terms_days = "30"', "payment_terms_days"),
        ("siren = 303265045", "siren must be a string"),
    ):
        cfg.write_text(f'[billing.supplier]\nlegal_name = "N"\ncountry = "FR"\n{bad}\n')
        with pytest.raises(ConfigError, match=match):
            load_config(cfg)


def test_serve_and_sharding_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "gpumeter.toml"
    cfg.write_text("")
    t = load_config(cfg).telemetry
    assert (t.settle_ms, t.late_window_ms, t.workers, t.query_url, t.headers, t.bearer_token_env) == (
        600_000,
        6 * 3_600_000,
        1,
        None,
        (),
        None,
    )
    assert load_config(cfg).audit.checkpoint_every_ms is None
    cfg.write_text(
        '[telemetry]\nsettle = "0m"\nlate_window = "0h"\nworkers = 8\nquery_url = "https://mimir.example/prometheus"\n'
        'headers = { "X-Scope-OrgID" = "gpu-cloud" }\nbearer_token_env = "MIMIR_TOKEN"\n'
        '[audit]\ncheckpoint_every = "1h"\n'
    )
    c = load_config(cfg)
    assert (c.telemetry.settle_ms, c.telemetry.late_window_ms, c.telemetry.workers) == (0, 0, 8)
    assert c.telemetry.headers == (("X-Scope-OrgID", "gpu-cloud"),) and c.telemetry.bearer_token_env == "MIMIR_TOKEN"
    assert c.audit.checkpoint_every_ms == 3_600_000
    for bad, match in (
        ('late_window = "90m"', "whole hours"),
        ('settle = "soon"', "duration"),
        ("workers = 0", "1 to 256"),
        ("workers = 300", "1 to 256"),
        ('query_url = "mimir:8080"', "http"),
        ('headers = { "Authorization" = "Bearer x" }', "must not carry Authorization"),
        ('headers = { "X-Bad Name" = "x" }', "HTTP header name"),
        ('bearer_token_env = "not a name"', "environment variable"),
    ):
        cfg.write_text(f"[telemetry]\n{bad}\n")
        with pytest.raises(ConfigError, match=match) as e:
            load_config(cfg)
        assert str(cfg) in e.value.explain()


def test_the_bearer_token_comes_from_the_environment_only(tmp_path: Path) -> None:
    cfg = tmp_path / "gpumeter.toml"
    cfg.write_text('[telemetry]\nbearer_token_env = "MIMIR_TOKEN"\nheaders = { "X-Scope-OrgID" = "t1" }\n')
    t = load_config(cfg).telemetry
    for environ in ({}, {"MIMIR_TOKEN": "  "}):
        with pytest.raises(ConfigError, match="MIMIR_TOKEN, which is not set"):
            client_for(t, environ)
    client_for(t, {"MIMIR_TOKEN": "s3cret"}).close()  # what it sends: tests/test_serve.py, through a proxy


def test_named_sets_are_one_table_for_usage_and_audit() -> None:
    """``allowed_countries = ["EU+EFTA"]`` means the same to ``usage`` and to the audit log."""
    from audit.policy import policy
    from metering.report import allowed_set

    for items in (["EU+EFTA"], ["EEA", "CH"], ["EU"], ["EFTA", "FR"]):
        assert allowed_set(items) == policy(items).countries
