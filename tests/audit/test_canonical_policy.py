"""Entries as RFC 8785 bytes, and named sovereignty boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import canonical, policy
from audit.errors import EntryError, PolicyError, SovereigntyViolation
from gpumeter.countries import EEA, EU27


def test_canonical_bytes_are_rfc8785_and_round_trip() -> None:
    entry: dict[str, Any] = {
        "type": "t",
        "time": "2026-07-01T00:00:00Z",
        "b": [3, "é", None, True],
        "a": {"z": 1, "y": "x\n"},
    }
    data = canonical.canonical(entry)
    assert data == rfc8785.dumps(entry)
    assert data.startswith(b'{"a":{"y":"x\\n","z":1},"b":[3,"\xc3\xa9",null,true]')
    assert canonical.parse_entry(data) == entry


@pytest.mark.parametrize(
    "entry",
    [
        [],
        {"time": "2026-07-01T00:00:00Z"},
        {"type": "", "time": "2026-07-01T00:00:00Z"},
        {"type": "Bad Type", "time": "2026-07-01T00:00:00Z"},
        {"type": "t"},
        {"type": "t", "time": 1751328000},
        {"type": "t", "time": "2026-07-01 00:00:00Z"},
        {"type": "t", "time": "2026-07-01T00:00:00"},
        {"type": "t", "time": "2026-07-01T02:00:00+02:00"},
        {"type": "t", "time": "2026-07-01T00:00:00-00:00"},
        {"type": "t", "time": "2026-02-30T00:00:00Z"},
    ],
)
def test_invalid_entries(entry: object) -> None:
    assert not canonical.check_entry(entry).passed
    with pytest.raises(EntryError):
        canonical.verify_entry(entry)


def test_utc_offsets_and_fractions_accepted() -> None:
    for t in ("2026-07-01T00:00:00+00:00", "2026-07-01T00:00:00.123456789Z"):
        assert canonical.check_entry({"type": "t", "time": t}).passed
    assert canonical.parse_time("2026-07-01T00:00:00.5Z").microsecond == 500000


def test_non_canonical_bytes_rejected() -> None:
    for data in (
        b'{"type":"t", "time":"2026-07-01T00:00:00Z"}',
        b'{"type":"t","time":"2026-07-01T00:00:00Z","type":"t"}',
        b'{"time":"2026-07-01T00:00:00Z","type":"t","x":1.0}',
        b'{"time":"2026-07-01T00:00:00Z","type":"t","x":9007199254740993}',
        b"\xff",
    ):
        with pytest.raises(EntryError):
            canonical.parse_entry(data)


def test_format_time_needs_aware_datetimes() -> None:
    assert canonical.format_time(datetime(2026, 7, 1, 2, tzinfo=timezone(timedelta(hours=2)))) == "2026-07-01T00:00:00Z"
    assert canonical.format_time(datetime(2026, 7, 1, microsecond=5, tzinfo=UTC)) == "2026-07-01T00:00:00.000005Z"
    with pytest.raises(EntryError):
        canonical.format_time(datetime(2026, 7, 1))  # noqa: DTZ001 - the naive datetime is the point


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), _json, max_size=5))
def test_any_valid_entry_round_trips_through_its_bytes(extra: dict) -> None:  # type: ignore[type-arg]
    entry = {**extra, "type": "t", "time": "2026-07-01T00:00:00Z"}
    try:
        data = canonical.canonical(entry)
    except EntryError:  # lone surrogates cannot be UTF-8
        return
    assert canonical.parse_entry(data) == entry


def test_named_policies() -> None:
    assert policy.policy().id == "EU/v1" and policy.policy().countries == EU27
    assert policy.policy(["EEA"]).countries == EEA
    efta = policy.policy(["EU+EFTA"])
    assert efta.countries == EU27 | {"IS", "LI", "NO", "CH"}
    ch = policy.policy(["EU", "CH"])
    assert ch.id == "EU+CH/v1" and ch.countries == EU27 | {"CH"}
    doc = ch.document()
    assert doc["countries"] == sorted(EU27 | {"CH"}) and doc["items"] == ["EU", "CH"]
    for bad in ([], ["XX"], ["eu"], ["EU", "EU"]):
        with pytest.raises(PolicyError):
            policy.policy(bad)


def test_check_job_and_verify_job() -> None:
    eu = policy.policy(["EU"])
    nodes = {"gpu-fr-1": "FR", "gpu-ch-1": "CH"}
    storage = {"s3://eu-data": "DE", "s3://us-data": "US"}

    def loc(uri: str) -> str | None:
        return next((c for p, c in storage.items() if uri.startswith(p)), None)

    ok = policy.check_job(
        "j1", "acme", ["gpu-fr-1"], ["s3://eu-data/x"], host_country=nodes, location_country=loc, boundary=eu
    )
    assert ok.passed and ok.countries == ("FR",) and ok.data_countries == ("DE",) and ok.policy == "EU/v1"
    bad = policy.check_job(
        "j2", "acme", ["gpu-ch-1", "ghost"], ["s3://us-data/y"], host_country=nodes, location_country=loc, boundary=eu
    )
    assert not bad.passed
    assert bad.findings == (
        "host ghost is not in nodes.csv",
        "host gpu-ch-1 is in CH, outside the boundary",
        "data location s3://us-data/y is in US, outside the boundary",
    )
    ch = policy.policy(["EU", "CH"])
    assert policy.check_job("j3", None, ["gpu-ch-1"], [], host_country=nodes, location_country=loc, boundary=ch).passed
    with pytest.raises(SovereigntyViolation) as err:
        policy.verify_job("j2", "acme", ["gpu-ch-1"], [], host_country=nodes, location_country=loc, boundary=eu)
    assert err.value.exit_code == 3 and "j2" in str(err.value)


_any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(), _any_json, max_size=5))
def test_fast_path_bytes_equal_the_rfc8785_package(extra: dict[str, Any]) -> None:
    entry = {**extra, "type": "t", "time": "2026-07-01T00:00:00Z"}
    try:
        want: bytes | None = rfc8785.dumps(entry)
    except (rfc8785.CanonicalizationError, ValueError):
        want = None
    try:
        got: bytes | None = canonical.canonical(entry)
    except EntryError:
        got = None
    assert got == want
    if want is not None and not _has_float(entry):
        assert canonical.parse_entry(want) == entry


def _has_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    return isinstance(value, list) and any(_has_float(v) for v in value)


_exact_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)  # across the 53-bit bound
    | st.text(st.characters(codec="utf-8"))  # control characters, quotes, backslashes, non-ASCII
    | st.text(st.characters(min_codepoint=0, max_codepoint=0x7F)),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(st.characters(max_codepoint=0x7F)), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(st.characters(max_codepoint=0x7F)), _exact_json, max_size=6), st.integers(0, 2**53 + 2))
def test_orjson_fast_path_bytes_equal_the_rfc8785_package(extra: dict[str, Any], n: int) -> None:
    """Values of exactly str/int/bool/None/list/dict with ASCII keys are written by orjson."""
    entry = {**extra, "n": n, "m": -n, "type": "t", "time": "2026-07-01T00:00:00Z"}
    try:
        want: bytes | None = rfc8785.dumps(entry)
    except (rfc8785.CanonicalizationError, ValueError):
        want = None
    try:
        got: bytes | None = canonical.canonical(entry)
    except EntryError:
        got = None
    assert got == want


def test_orjson_fast_path_leaves_other_types_to_the_reference() -> None:
    class Text(str):
        pass

    when = datetime(2026, 7, 1, tzinfo=UTC)
    for value in ((1, 2), when, Text("x"), 1.5, {"é": 1}, "\ud800"):
        entry = {"type": "t", "time": "2026-07-01T00:00:00Z", "v": value}
        try:
            want: bytes | None = rfc8785.dumps(entry)
        except (rfc8785.CanonicalizationError, ValueError, TypeError):
            want = None
        try:
            got: bytes | None = canonical.canonical(entry)
        except EntryError:
            got = None
        assert got == want, value


def _oracle(data: bytes) -> dict[str, Any] | None:
    """What the rule says, computed with the rfc8785 package alone: the entry, or None."""
    import json

    try:
        value = json.loads(data.decode("utf-8"))
        if not canonical.check_entry(value).passed or rfc8785.dumps(value) != data:
            return None
    except (ValueError, rfc8785.CanonicalizationError, RecursionError):
        return None
    out: dict[str, Any] = value
    return out


def _spellings(entry: dict[str, Any]) -> list[bytes]:
    """The canonical bytes of ``entry`` and a few other spellings of the same value."""
    import json

    try:
        data = rfc8785.dumps(entry)
    except (rfc8785.CanonicalizationError, ValueError):
        return []
    return [
        data,
        json.dumps(entry).encode(),  # spaces, escapes, key order as given
        json.dumps(entry, sort_keys=True, separators=(",", ":")).encode(),  # ASCII escapes, Python's floats
        data.replace(b":", b": ", 1),
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.text(), _any_json, max_size=4), min_size=1, max_size=6), st.randoms())
def test_parsing_a_batch_decides_each_entry_as_the_rule_does(extras: list[dict[str, Any]], rnd: Any) -> None:
    datas = [d for extra in extras for d in _spellings({**extra, "type": "t", "time": "2026-07-01T00:00:00Z"})]
    datas += [b"[1]", b'{"type":"t","time":"2026-07-01T00:00:00Z"}{}', b"\xff", b"[" * 5000 + b"]" * 5000]
    rnd.shuffle(datas)
    got = canonical.parse_entries(datas)
    for data, result in zip(datas, got, strict=True):
        want = _oracle(data)
        if want is None:
            assert isinstance(result, EntryError), data
        else:
            assert result == want, data
