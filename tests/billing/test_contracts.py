"""contracts.toml: what it holds, and every bad value stopped with its file, line and value."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing.contracts import (
    DEFAULT_PRIORITY,
    Contracts,
    CreditKind,
    parse_contracts,
    verify_references,
)
from billing.errors import ContractsError
from gpumeter.months import Month

H100 = "NVIDIA H100 80GB HBM3"

GOOD = f"""
[[reservation]]
id = "RES-1"
tenant = "acme"
model = "{H100}"
site = "par1"
gpus = 8
start = "2026-10-15"
end = "2027-10-15"
eur_per_gpu_hour = "1.90"

[[minimum_spend]]
tenant = "globex"
eur_per_month = "5000.00"
start = "2026-01"
end = "2027-01"

[[credit]]
id = "PROMO-1"
tenant = "acme"
kind = "promotional"
eur = "1000.00"
priority = 1
start = "2026-10-01"
expires = "2026-11-15"

[[credit]]
id = "PRE-1"
tenant = "acme"
kind = "prepaid"
eur = "500"
start = 2026-10-01
"""


def test_a_good_file_parses_into_exact_records() -> None:
    c = parse_contracts(GOOD, file="contracts.toml")
    (r,) = c.reservations
    assert (r.id, r.tenant, r.model, r.site, r.gpus, r.start, r.end, r.eur_per_gpu_hour, r.line) == (
        "RES-1", "acme", H100, "par1", 8, date(2026, 10, 15), date(2027, 10, 15), Decimal("1.90"), 2,
    )  # fmt: skip
    # 17 days of October (15th to 31st) x 24 h x 8 GPUs; all 30 days of November
    assert (r.days_in(Month.parse("2026-10")), r.included_hours(Month.parse("2026-10"))) == (17, 3264)
    assert r.included_hours(Month.parse("2026-11")) == 8 * 24 * 30
    assert r.days_in(Month.parse("2027-10")) == 14 and r.days_in(Month.parse("2026-09")) == 0
    (m,) = c.minimum_spends
    assert m.covers(Month.parse("2026-01")) and m.covers(Month.parse("2026-12"))
    assert not m.covers(Month.parse("2027-01")) and not m.covers(Month.parse("2025-12"))
    promo, pre = c.credits
    assert promo.kind is CreditKind.PROMOTIONAL and promo.last_month == Month.parse("2026-11")
    assert pre.priority == DEFAULT_PRIORITY and pre.expires is None and pre.start == date(2026, 10, 1)
    assert promo.available_in(Month.parse("2026-10")) and promo.available_in(Month.parse("2026-11"))
    assert not promo.available_in(Month.parse("2026-12")) and not promo.available_in(Month.parse("2026-09"))
    assert c.tenants_in(Month.parse("2026-10")) == {"acme", "globex"}
    assert c.tenants_in(Month.parse("2027-11")) == set()


def test_credits_draw_by_priority_then_expiry_undated_last_then_id() -> None:
    text = """
[[credit]]
id = "B"
tenant = "t"
kind = "promotional"
eur = "1.00"
start = "2026-01-01"

[[credit]]
id = "A"
tenant = "t"
kind = "promotional"
eur = "1.00"
start = "2026-01-01"

[[credit]]
id = "C"
tenant = "t"
kind = "prepaid"
eur = "1.00"
start = "2026-01-01"
expires = "2027-01-01"

[[credit]]
id = "D"
tenant = "t"
kind = "promotional"
eur = "1.00"
priority = 7
start = "2026-01-01"
"""
    assert [c.id for c in parse_contracts(text).credits_of("t")] == ["D", "C", "A", "B"]


def test_no_file_configured_means_no_contracts() -> None:
    from billing.contracts import NO_CONTRACTS, read_contracts

    assert read_contracts(None) is NO_CONTRACTS and Contracts() == NO_CONTRACTS


def _swap(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


BAD = [
    (_swap('id = "RES-1"\n', ""), 2, "id is required", None),
    (_swap('id = "PRE-1"', 'id = "PROMO-1"'), 28, "used twice", "PROMO-1"),
    (_swap('id = "PRE-1"', 'id = "RES-1"'), 28, "used twice", "RES-1"),
    (_swap('end = "2027-10-15"', 'end = "2026-10-15"'), 9, "end must be after start", "2026-10-15"),
    (_swap('end = "2027-10-15"', 'end = "2026-10-01"'), 9, "end must be after start", "2026-10-01"),
    (_swap("gpus = 8", "gpus = 0"), 7, "gpus must be a whole number of at least 1", 0),
    (_swap("gpus = 8", 'gpus = "8"'), 7, "gpus must be a whole number", "8"),
    (_swap('eur_per_gpu_hour = "1.90"', "eur_per_gpu_hour = 1.9"), 10, "not a TOML float", 1.9),
    (_swap('eur_per_gpu_hour = "1.90"', 'eur_per_gpu_hour = "-1.90"'), 10, "must be positive", "-1.90"),
    (_swap('eur_per_gpu_hour = "1.90"', 'eur_per_gpu_hour = "0"'), 10, "must be positive", "0"),
    (_swap('eur_per_gpu_hour = "1.90"', 'eur_per_gpu_hour = "1.9000001"'), 10, "more than 6 decimals", "1.9000001"),
    (_swap('eur = "1000.00"', 'eur = "1000.005"'), 22, "finer than a cent", "1000.005"),
    (_swap('eur = "1000.00"', 'eur = "-5.00"'), 22, "must be positive", "-5.00"),
    (_swap('eur = "1000.00"', "eur = 1000"), 22, "not a TOML integer", 1000),
    (_swap('eur_per_month = "5000.00"', 'eur_per_month = "0.00"'), 14, "must be positive", "0.00"),
    (_swap('eur = "500"', 'eur = "500"\ncurrency = "USD"'), 32, "currency must be EUR", "USD"),
    (_swap('eur = "1000.00"', 'usd = "1000.00"'), 22, "EUR only", "usd"),
    (_swap('kind = "prepaid"', 'kind = "gift"'), 30, "promotional or prepaid", "gift"),
    (_swap('start = "2026-10-15"', 'start = "15/10/2026"'), 8, "UTC date", "15/10/2026"),
    (_swap('start = "2026-01"', 'start = "2026-13"'), 15, "month such as", "2026-13"),
    (_swap('expires = "2026-11-15"', 'expires = "2026-09-30"'), 25, "expires must be after start", "2026-09-30"),
    (_swap("priority = 1", "priority = 1.5"), 23, "priority must be a whole number", 1.5),
    (_swap('site = "par1"', 'sites = "par1"'), 6, "unknown key 'sites'", "sites"),
    (GOOD + "\n[[reserve]]\nid = 'x'\n", None, "unknown top-level key 'reserve'", "reserve"),
    (
        GOOD + f'\n[[reservation]]\nid = "RES-2"\ntenant = "acme"\nmodel = "{H100}"\nsite = "par1"\ngpus = 1\n'
        'start = "2027-10-01"\nend = "2028-01-01"\neur_per_gpu_hour = "2.00"\n',
        34,
        "overlaps 'RES-1'",
        "RES-2",
    ),
    (
        GOOD + '\n[[minimum_spend]]\ntenant = "globex"\neur_per_month = "1.00"\nstart = "2026-12"\n',
        34,
        "overlaps",
        "globex",
    ),
    ("[[credit]\n", None, "not valid TOML", None),
]


@pytest.mark.parametrize(("text", "line", "message", "value"), BAD)
def test_a_bad_value_names_file_line_and_value(text: str, line: int | None, message: str, value: object) -> None:
    with pytest.raises(ContractsError) as caught:
        parse_contracts(text, file="site/contracts.toml")
    err = caught.value
    assert message in err.message
    assert (err.file, err.line) == ("site/contracts.toml", line)
    if value is not None:
        assert err.value == value
    assert err.explain().startswith(f"site/contracts.toml:{line}: " if line else "site/contracts.toml: ")


def test_reservations_of_another_site_or_tenant_or_term_do_not_overlap() -> None:
    extra = (
        f'\n[[reservation]]\nid = "RES-2"\ntenant = "acme"\nmodel = "{H100}"\ngpus = 1\n'  # no site
        'start = "2026-10-15"\nend = "2027-01-01"\neur_per_gpu_hour = "2.00"\n'
        f'\n[[reservation]]\nid = "RES-3"\ntenant = "acme"\nmodel = "{H100}"\nsite = "par1"\ngpus = 1\n'
        'start = "2027-10-15"\nend = "2028-01-01"\neur_per_gpu_hour = "2.00"\n'  # starts as RES-1 ends
    )
    assert [r.id for r in parse_contracts(GOOD + extra).reservations] == ["RES-1", "RES-2", "RES-3"]


@pytest.mark.parametrize(
    ("names", "line", "message", "value"),
    [
        ({"tenants": {"globex"}}, 4, "tenant 'acme'", "acme"),
        ({"tenants": {"acme"}}, 13, "tenant 'globex'", "globex"),
        ({"models": {"NVIDIA A30"}}, 5, f"model {H100!r}", H100),
        ({"sites": {"ams1"}}, 6, "site 'par1'", "par1"),
    ],
)
def test_names_must_be_known_tenants_rated_models_and_sites(
    names: dict[str, set[str]], line: int, message: str, value: str
) -> None:
    known: dict[str, set[str]] = {"tenants": {"acme", "globex"}, "models": {H100}, "sites": {"par1"}} | names
    with pytest.raises(ContractsError) as caught:
        verify_references(parse_contracts(GOOD, file="c.toml"), **known)
    assert message in caught.value.message and (caught.value.file, caught.value.line, caught.value.value) == (
        "c.toml",
        line,
        value,
    )
