"""The pure parts: roles and exports, the sign-in backoff, revenue apportioning, CSV, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from dashboards.errors import AccessDenied, RateLimited
from dashboards.finance import UNALLOCATED, apportion, revenue_by, revenue_by_site_lines
from dashboards.ratelimit import Backoff, Throttle, check_throttle, verify_throttle
from dashboards.roles import Page, Role, Viewer, check_export, export_tenants, pages_for, verify_export
from dashboards.settings import dashboard_settings
from dashboards.ui import csv_bytes
from gpumeter.config import load_config
from gpumeter.errors import ConfigError

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def test_pages_per_role() -> None:
    assert pages_for(Viewer("a", Role.ADMIN)) == (
        Page.FINANCE,
        Page.UTILISATION,
        Page.COMPLIANCE,
        Page.AUDITOR,
        Page.ACCESS,
    )
    assert pages_for(Viewer("m", Role.TENANT, "acme")) == (Page.ACCOUNT,)
    assert pages_for(Viewer("f", Role.FINANCE)) == (Page.FINANCE, Page.UTILISATION)
    assert pages_for(Viewer("c", Role.COMPLIANCE)) == (Page.COMPLIANCE, Page.UTILISATION)
    assert pages_for(Viewer("u", Role.AUDITOR)) == (Page.AUDITOR, Page.COMPLIANCE)
    assert pages_for(Viewer("t", Role.AUDITOR, "acme")) == (Page.AUDITOR,)
    with pytest.raises(AccessDenied):
        Viewer("f", Role.FINANCE, "acme")
    with pytest.raises(AccessDenied, match="bound to one tenant"):
        Viewer("m", Role.TENANT)


def test_who_may_export_what() -> None:
    scoped = Viewer("t", Role.AUDITOR, "acme")
    assert check_export(scoped, "acme").passed
    assert not check_export(scoped, "globex").passed
    assert not check_export(scoped, None).passed  # not the whole log either
    assert check_export(Viewer("u", Role.AUDITOR), None).passed
    assert check_export(Viewer("a", Role.ADMIN), "globex").passed
    assert not check_export(Viewer("f", Role.FINANCE), "acme").passed
    with pytest.raises(AccessDenied, match="may export only tenant 'acme', not tenant 'globex'"):
        verify_export(scoped, "globex")
    assert export_tenants(scoped, ["acme", "globex"]) == ["acme"]
    customer = Viewer("m", Role.TENANT, "acme")
    assert check_export(customer, "acme").passed
    assert not check_export(customer, "globex").passed and not check_export(customer, None).passed
    assert export_tenants(customer, ["acme", "globex"]) == ["acme"]
    assert export_tenants(Viewer("u", Role.AUDITOR), ["acme", "globex"]) == [None, "acme", "globex"]


def test_backoff_doubles_after_the_free_failures_and_is_capped() -> None:
    b = Backoff(free_failures=5, base_delay_s=1.0, max_delay_s=900.0)
    assert [b.delay_s(n) for n in range(4, 9)] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert b.delay_s(40) == 900.0


def test_throttle_per_user_and_per_client() -> None:
    t = Throttle()
    five = [NOW - timedelta(seconds=10 - i) for i in range(5)]  # the last one 6 s ago
    assert check_throttle(t, five[:4], [], NOW).passed
    refused = check_throttle(t, five, [], NOW - timedelta(seconds=5.5))  # 0.5 s after the 5th failure
    assert not refused.passed and refused.scope == "user"
    assert refused.retry_at == five[-1] + timedelta(seconds=1)
    assert check_throttle(t, five, [], NOW).passed  # the 1 s wait is over
    many = [NOW - timedelta(seconds=30)] * 25
    by_client = check_throttle(t, [], many, NOW)
    assert not by_client.passed and by_client.scope == "client"
    with pytest.raises(RateLimited, match="from this address; try again in"):
        verify_throttle(t, [], many, NOW)
    old = [NOW - timedelta(hours=2)] * 50  # outside the window: forgotten
    assert check_throttle(t, old, old, NOW).passed
    with pytest.raises(ValueError, match="timezone-aware"):
        check_throttle(t, [], [], datetime(2026, 1, 1))  # noqa: DTZ001 - the naive time under test


def test_apportion_adds_up_to_the_cent() -> None:
    parts = apportion(Decimal("100.00"), [("a", 1), ("b", 1), ("c", 1)])
    assert parts == [("a", Decimal("33.34")), ("b", Decimal("33.33")), ("c", Decimal("33.33"))]
    neg = apportion(Decimal("-0.05"), [("x", 3), ("y", 7)])  # 1.5 and 3.5 cents: the tie goes by name
    assert neg == [("x", Decimal("-0.02")), ("y", Decimal("-0.03"))]
    assert apportion(Decimal("12.34"), [("x", 0)]) == [(UNALLOCATED, Decimal("12.34"))]
    for amount in ("0.01", "999.99", "1234567.89", "-3.33"):
        split = apportion(Decimal(amount), [("p", 7), ("q", 11), ("r", 13), ("s", 1)])
        assert sum((p for _, p in split), Decimal(0)) == Decimal(amount)
    with pytest.raises(ValueError, match="whole number of cents"):
        apportion(Decimal("1.005"), [("a", 1)])


def test_revenue_by_site_keeps_priced_sites_and_splits_the_rest() -> None:
    lines = pl.DataFrame(
        {
            "month": ["2026-10", "2026-10", "2026-10"],
            "number": ["GM-1", "GM-1", "GMC-1"],
            "kind": ["invoice", "invoice", "credit_note"],
            "tenant": ["acme", "acme", "acme"],
            "gpu_model": ["H100", "H100", "H100"],
            "site": [None, "par1", None],
            "amount": [Decimal("10.00"), Decimal("5.00"), Decimal("-1.00")],
        },
        schema_overrides={"amount": pl.Decimal(18, 2)},
    )
    usage = pl.DataFrame(
        {
            "tenant": ["acme", "acme", None],
            "gpu_model": ["H100", "H100", "H100"],
            "site": ["par1", "fra1", "par1"],
            "gpu_ns": [Decimal(3), Decimal(1), Decimal(100)],
        },
        schema_overrides={"gpu_ns": pl.Decimal(38, 0)},
    )
    split = revenue_by_site_lines(lines, {"2026-10": usage})
    by_site = dict(revenue_by(split, "site").select("site", "net_eur").iter_rows())
    assert by_site == {"fra1": Decimal("2.25"), "par1": Decimal("11.75")}
    assert sum(by_site.values()) == Decimal("14.00")
    credited = dict(revenue_by(split, "site").select("site", "credited_eur").iter_rows())
    assert credited == {"fra1": Decimal("-0.25"), "par1": Decimal("-0.75")}


def test_a_minimum_spend_true_up_is_split_by_all_of_the_tenants_gpu_time() -> None:
    """A true-up line names no GPU model: it is split over the sites where the tenant's GPU
    time of any model ran; a tenant with no GPU time that month keeps it unallocated."""
    lines = pl.DataFrame(
        {
            "month": ["2026-10", "2026-10", "2026-10"],
            "number": ["GM-1", "GM-1", "GM-2"],
            "kind": ["invoice", "invoice", "invoice"],
            "tenant": ["acme", "acme", "idle"],
            "gpu_model": ["H100", "", ""],
            "site": [None, None, None],
            "amount": [Decimal("10.00"), Decimal("4.00"), Decimal("7.00")],
        },
        schema_overrides={"amount": pl.Decimal(18, 2)},
    )
    usage = pl.DataFrame(
        {
            "tenant": ["acme", "acme", "acme"],
            "gpu_model": ["H100", "L40S", "H100"],
            "site": ["par1", "fra1", "fra1"],
            "gpu_ns": [Decimal(1), Decimal(2), Decimal(1)],
        },
        schema_overrides={"gpu_ns": pl.Decimal(38, 0)},
    )
    split = revenue_by_site_lines(lines, {"2026-10": usage})
    by_site = dict(revenue_by(split, "site").select("site", "net_eur").iter_rows())
    # H100 line 10.00 by H100 time (par1 1, fra1 1); the true-up 4.00 by all time (par1 1, fra1 3)
    assert by_site == {"par1": Decimal("6.00"), "fra1": Decimal("8.00"), UNALLOCATED: Decimal("7.00")}


def test_csv_is_exact() -> None:
    frame = pl.DataFrame(
        {
            "amount": [Decimal("0.10"), Decimal("-1234.56")],
            "hosts": [["a", "b"], []],
            "at": [datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 1, 1, tzinfo=UTC)],
        },
        schema_overrides={"amount": pl.Decimal(18, 2)},
    )
    assert csv_bytes(frame).decode().splitlines() == [
        "amount,hosts,at",
        "0.10,a;b,2026-10-01T00:00:00+00:00",
        '-1234.56,"",2026-10-01T01:00:00+00:00',  # an empty list is an empty string, not a null
    ]


def test_dashboard_settings(tmp_path: Path) -> None:
    def settings(table: str) -> object:
        (tmp_path / "gpumeter.toml").write_text(f"[dashboard]\n{table}\n", encoding="utf-8")
        return dashboard_settings(load_config(tmp_path / "gpumeter.toml"))

    s = settings('oidc = true\noidc_provider = "microsoft"\nread_wait_s = 5')
    assert (s.oidc, s.oidc_provider, s.read_wait_s, s.version_ttl_s) == (True, "microsoft", 5.0, 2.0)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="unknown key"):
        settings("theme = 'dark'")
    with pytest.raises(ConfigError, match="oidc must be true or false, not a string"):
        settings('oidc = "yes"')
    with pytest.raises(ConfigError, match="must not be negative"):
        settings("read_wait_s = -1")
    s = settings('session_idle = "2h"\ntrusted_proxy_header = "X-Forwarded-For"')
    assert (s.session_idle_s, s.trusted_proxy_header) == (7200.0, "X-Forwarded-For")  # type: ignore[attr-defined]
    assert settings("").session_idle_s == 1800.0  # type: ignore[attr-defined]  # 30 minutes unless set
    with pytest.raises(ConfigError, match="session_idle must be a duration"):
        settings('session_idle = "half an hour"')
    with pytest.raises(ConfigError, match="must be an HTTP header name"):
        settings('trusted_proxy_header = "X-Forwarded-For: 1.2.3.4"')
