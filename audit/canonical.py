"""Audit entries as bytes: RFC 8785 (JCS) canonical JSON, and what makes an entry valid.

The bytes of an entry are what the Merkle tree hashes, so they must be reproducible by
anyone: RFC 8785 fixes key order, spacing, string escapes and number forms. The
``rfc8785`` package is the reference. For the values entries are made of — objects with
ASCII keys, arrays, strings, booleans, null and integers of at most 53 bits — the
standard library's ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` produces the same bytes (same escapes, code-point order equals
UTF-16 order for ASCII keys, no floats involved) about five times faster, so it is used
there; anything else (floats, large integers, non-ASCII keys) goes through ``rfc8785``.
Values made of exactly those built-in types (no subclasses) are written by orjson, which
gives the same bytes again several times faster. A property test holds them all equal.

An entry is a JSON object with at least ``type`` (a non-empty string) and ``time`` (an
RFC 3339 date-time in UTC: ``Z`` or ``+00:00``). Exact quantities (GPU-seconds, money)
are decimal *strings*: JSON numbers in JCS are IEEE doubles. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import accumulate
from typing import Any

import orjson
import rfc8785

from audit.errors import EntryError

_RFC3339_UTC = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|\+00:00)$",
)
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def format_time(moment: datetime) -> str:
    """A UTC-aware datetime as RFC 3339 with ``Z``; microseconds only when non-zero."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise EntryError("time must be timezone-aware (UTC)", value=moment.isoformat())
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def parse_time(text: str) -> datetime:
    """An RFC 3339 UTC string as an aware datetime (fractions beyond microseconds are cut)."""
    m = _RFC3339_UTC.match(text) if isinstance(text, str) else None
    if m is None:
        raise EntryError("time must be an RFC 3339 UTC date-time such as 2026-07-01T00:00:00Z", value=text)
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or ""
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError as exc:
        raise EntryError(f"time is not a real date-time: {exc}", value=text) from exc


@lru_cache(maxsize=4096)
def _real_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _is_time(text: str) -> bool:
    """True when :func:`parse_time` would accept ``text`` (False: ask it why not)."""
    m = _RFC3339_UTC.match(text)
    if m is None:
        return False
    year, month, day, hour, minute, second = map(int, m.group(1, 2, 3, 4, 5, 6))
    return hour < 24 and minute < 60 and second < 60 and _real_date(year, month, day)


@dataclass(frozen=True)
class EntryCheck:
    """Whether a value is a valid audit entry, and why not."""

    passed: bool
    findings: tuple[str, ...]


def check_entry(entry: object) -> EntryCheck:
    """An entry is a JSON object with a ``type`` and an RFC 3339 UTC ``time``."""
    findings: list[str] = []
    if not isinstance(entry, dict) and not isinstance(entry, Mapping):  # dict first: ABC checks are slow
        return EntryCheck(False, ("an entry must be a JSON object",))
    kind = entry.get("type")
    if not isinstance(kind, str) or not _TYPE.match(kind):
        findings.append("type must be a lower-case identifier string")
    when = entry.get("time")
    if not isinstance(when, str):
        findings.append("time must be an RFC 3339 UTC string")
    elif not _is_time(when):
        try:
            parse_time(when)
        except EntryError as exc:
            findings.append(exc.message)
    return EntryCheck(not findings, tuple(findings))


def verify_entry(entry: object) -> None:
    """Raise :class:`EntryError` unless ``entry`` is a valid audit entry."""
    result = check_entry(entry)
    if not result.passed:
        raise EntryError("; ".join(result.findings))


_SAFE_INT = (1 << 53) - 1


def _plain(value: object) -> bool:
    """True when ``json.dumps`` is byte-for-byte RFC 8785 for ``value`` (see the docstring)."""
    if value is None or isinstance(value, str | bool):
        return True
    if isinstance(value, int):
        return -_SAFE_INT <= value <= _SAFE_INT
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and _plain(v) for k, v in value.items())
    return False


_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def _exact(value: object) -> bool:
    """True for values made only of exactly ``str``, ``int``, ``bool``, ``None``, ``list`` and
    ``dict`` with ASCII string keys (no subclasses, no floats); integers are bounded by
    orjson's OPT_STRICT_INTEGER. For those orjson writes what ``json.dumps`` writes in
    :func:`_dumps` (same escapes, keys in code-point order, no spaces)."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return True
    if t is dict:
        for k, v in value.items():  # type: ignore[attr-defined]
            tv = type(v)
            if type(k) is not str or not k.isascii():
                return False
            if not (tv is str or tv is int or tv is bool or v is None or _exact(v)):
                return False
        return True
    if t is list:
        return all(map(_exact, value))  # type: ignore[call-overload]
    return False


def _dumps(value: Any) -> bytes:
    """RFC 8785 bytes of any JSON value; raises :class:`EntryError` if it has none."""
    try:
        return _encode(value)
    except RecursionError as exc:
        raise EntryError("entry is nested too deeply") from exc


def _encode(value: Any) -> bytes:
    if _exact(value):
        try:
            # copied: orjson's bytes keep their ~4 KiB output buffer, and logs keep entry bytes
            return memoryview(orjson.dumps(value, option=_OPTIONS)).tobytes()
        except orjson.JSONEncodeError:  # an integer beyond 53 bits, a lone surrogate: as below
            pass
    try:
        if _plain(value):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
        data: bytes = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise EntryError(f"entry cannot be canonicalised: {exc}") from exc
    return data


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The RFC 8785 bytes of a valid entry (what the tree hashes)."""
    verify_entry(entry)
    return _dumps(dict(entry))


def parse_entry(data: bytes) -> dict[str, Any]:
    """Entry bytes back to an object; the bytes must already be canonical and valid."""
    result = parse_entries([data])[0]
    if isinstance(result, EntryError):
        raise result
    return result


def _table(pairs: dict[bytes, bytes]) -> bytes:
    table = bytearray(range(256))
    for chars, to in pairs.items():
        for c in chars:
            table[c] = to[0]
    return bytes(table)


# A float in compact JSON is a number token right after ":" (a member), "[" or "," (an
# element) holding "." or an exponent. Mapped through _NUMBERS (digits to "0", ".eE" to
# ".", ":,[" to ":"), every float matches _FLOAT; with every other byte but "-" and '"'
# deleted first, a chunk without a match holds no float at all. Strings can match too
# (":1.5" inside text): those entries merely take the general path.
_NUMBERS = _table({b"0123456789": b"0", b".eE": b".", b":,[": b":"})
_NOT_NUMBERS = bytes(c for c in range(256) if c not in b'0123456789.eE:,[-"')
_FLOAT = re.compile(rb":-?0+\.")


# Where _FLOAT matches, ":" (or "," or "[") is followed by digits, perhaps after "-", and then
# by one of ".eE": with digits, "-" and "+" deleted and ".eE" mapped to ".", that is ":.". So
# a chunk without ":." after this mapping holds no match, which one pass and one search show.
_NO_DIGITS = bytes(b":"[0] if c in b":,[" else b"."[0] if c in b".eE" else b"x"[0] for c in range(256))
_DIGITS = b"0123456789-+"


def _may_hold_floats(datas: Sequence[bytes], together: bytes) -> set[int]:
    """Positions of the entries that may hold a float (a superset of those that do);
    ``together`` is ``datas`` joined by ``,``."""
    if b":." not in together.translate(_NO_DIGITS, _DIGITS):
        return set()
    joined = b"\n".join(datas)
    ends = list(accumulate(len(d) + 1 for d in datas))  # entry k ends before ends[k]
    return {bisect_right(ends, m.start()) for m in _FLOAT.finditer(joined.translate(_NUMBERS))}


def parse_entries(datas: Sequence[bytes]) -> list[dict[str, Any] | EntryError]:
    """Each entry's bytes back to an object, or the :class:`EntryError` that refuses it.

    The rule: the bytes are exactly one JSON value (strict RFC 8259, parsed by orjson:
    no NaN, no lone surrogates, nesting bounded), a valid entry (:func:`check_entry`,
    evaluated once per distinct ``type`` and ``time``), and equal to :func:`_dumps` of
    that value — its RFC 8785 form. For an entry without floats whose bytes are ASCII,
    that form is orjson's sorted-keys output (see :func:`_exact`). Those entries of a
    batch are compared all at once: orjson writes a list as its items' outputs joined by
    ``,`` inside ``[...]``, so the list's output equals ``[`` + the entries' bytes joined by
    ``,`` + ``]`` exactly when each entry's bytes equal its own output (each item's output
    starts with ``{`` and ends at that object's closing brace, followed by ``,`` or ``]``,
    which pins where every entry starts and ends). When they differ, each entry is
    compared alone, to find the ones that take the general path.
    """
    together = b",".join(datas)
    suspects = _may_hold_floats(datas, together) if len(datas) > 1 else set(range(len(datas)))
    verdicts: dict[tuple[str, str], EntryCheck] = {}
    out: list[dict[str, Any] | EntryError] = []
    direct: list[int] = []  # entries whose RFC 8785 form is orjson's output
    for k, data in enumerate(datas):
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            out.append(EntryError(f"entry is not UTF-8 JSON: {exc}"))
            continue
        if type(value) is not dict:
            out.append(EntryError("an entry must be a JSON object"))
            continue
        kind, when = value.get("type"), value.get("time")
        if type(kind) is str and type(when) is str:
            verdict = verdicts.get((kind, when))
            if verdict is None:
                verdict = verdicts[(kind, when)] = check_entry(value)
        else:
            verdict = check_entry(value)
        if not verdict.passed:
            out.append(EntryError("; ".join(verdict.findings)))
            continue
        if k not in suspects and data.isascii():
            direct.append(k)
        out.append(value)
    if len(direct) < len(datas):
        together = b",".join([datas[k] for k in direct])
    if _orjson([out[k] for k in direct]) == b"[" + together + b"]":
        same = set(direct)
    else:
        same = {k for k in direct if _orjson(out[k]) == datas[k]}  # type: ignore[arg-type]  # dicts, see above
    for k, value in enumerate(out):
        if type(value) is dict and k not in same:
            out[k] = _general(value, datas[k])
    return out


def _general(value: dict[str, Any], data: bytes) -> dict[str, Any] | EntryError:
    """``value`` if ``data`` is its RFC 8785 form computed in full (:func:`_dumps`), else why not."""
    try:
        again = _dumps(value)
    except EntryError as exc:
        return exc
    if again != data:
        return EntryError("entry bytes are not RFC 8785 canonical JSON")
    if _integral_float(value):
        return EntryError("entry holds an integer beyond 53 bits")
    return value


def _integral_float(value: object) -> bool:
    """True when ``value`` holds a float that RFC 8785 spells as an integer literal.

    orjson reads an integer token beyond 64 bits as a float, which re-encodes to the same
    digits; such a token is an integer beyond 53 bits, refused like any other.
    """
    if isinstance(value, float):
        return value.is_integer() and abs(value) < 1e21
    t = type(value)
    if t is dict:
        return any(map(_integral_float, value.values()))  # type: ignore[attr-defined]  # a dict, checked above
    if t is list:
        return any(map(_integral_float, value))  # type: ignore[call-overload]  # a list, checked above
    return False


def _orjson(value: dict[str, Any] | list[Any]) -> bytes | None:
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:  # an integer beyond 53 bits, nesting beyond orjson's limit
        return None
