"""PromQL text for the metering queries (pure).

Label values go into PromQL only through :func:`quote` (string literal escaping) and
:func:`regex_alternation` (RE2 escaping, then string escaping); label *names* come from
configuration and are checked to be identifiers.

Every aggregate is written ``f(sel[R] offset 1ms)`` and evaluated at window ends t, so that
it covers exactly [t-width, t): with ``offset 1ms`` the selection ends at t-1ms, and R is
``width-1ms`` on closed backends, ``width`` on left-open ones (see :meth:`PromClient.range_ms`).

Sharding (:func:`shard_branches`): with N workers the GPUs are split into N shards by the
last character of their UUID, and each shard's aggregates select only its GPUs. The key
is the GPU, not the host: every series of a GPU — a second scrape job, an HA pair, a host
label renamed by an exporter upgrade — carries its UUID, so a GPU is always metered whole
within one shard, and shards add up to exactly what one worker finds. UUIDs are random
hex, so shards are even; the last shard takes every UUID the others do not match (any
character, no UUID at all), so no series is ever left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from metering.samples import ENERGY, GR_ACTIVE, UTIL, escape_label_value

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def quote(value: str) -> str:
    """A PromQL double-quoted string literal holding ``value`` exactly."""
    return '"' + escape_label_value(value) + '"'


def regex_alternation(values: Iterable[str]) -> str:
    """A quoted RE2 pattern matching exactly one of ``values`` (anchored by PromQL)."""
    alts = sorted({re.escape(v) for v in values})
    return quote("(?:" + "|".join(alts) + ")")


def label_name(name: str) -> str:
    if not _LABEL_NAME.match(name):
        raise ValueError(f"not a label name: {name!r}")
    return name


def evidence_selectors(extra: str = "") -> tuple[str, str]:
    """(whole-GPU, MIG-instance) evidence selectors, with optional extra matchers."""
    more = f",{extra}" if extra else ""
    return (f'{UTIL}{{GPU_I_ID=""{more}}}', f'{GR_ACTIVE}{{GPU_I_ID!=""{more}}}')


ALL_GPUS: tuple[str, ...] = ("",)
"""The one branch of an unsharded query: no extra matcher."""

_HEX = "0123456789abcdef"


def _classes(buckets: list[int], width: int) -> str:
    """An RE2 pattern for UUIDs whose last ``width`` hex digits (as a number) are in ``buckets``."""
    if width == 1:
        digits = "".join(_HEX[b] + _HEX[b].upper() if _HEX[b].isalpha() else _HEX[b] for b in buckets)
        return f".*[{digits}]"
    by_first: dict[int, list[int]] = {}
    for b in buckets:
        by_first.setdefault(b // 16, []).append(b % 16)
    alts = []
    for first, seconds in sorted(by_first.items()):
        head = _HEX[first] + (_HEX[first].upper() if _HEX[first].isalpha() else "")
        tail = "".join(_HEX[x] + (_HEX[x].upper() if _HEX[x].isalpha() else "") for x in seconds)
        alts.append(f"[{head}][{tail}]")
    return ".*(?:" + "|".join(alts) + ")"


def shard_branches(index: int, count: int) -> tuple[str, ...]:
    """Extra matchers whose ``or`` selects exactly the series of shard ``index`` of ``count``.

    Shard i takes the GPUs whose UUID ends in its share of the hex digits (the last one for
    up to 16 shards, the last two beyond); the last shard takes what no other matches. Each
    shard has two branches: series with a ``UUID`` label, and series with only the old
    exporter's ``uuid`` (:func:`metering.samples.uuid_of` reads either).
    """
    if not 0 <= index < count or count > 256:
        raise ValueError(f"no shard {index} of {count}")
    if count == 1:
        return ALL_GPUS
    width = 1 if count <= 16 else 2
    n = 16**width
    owner = [b * count // n for b in range(n)]
    if index < count - 1:
        pattern = quote(_classes([b for b in range(n) if owner[b] == index], width))
        return (f"UUID=~{pattern}", f'UUID="",uuid=~{pattern}')
    others = quote(_classes([b for b in range(n) if owner[b] != index], width))
    return (f'UUID!="",UUID!~{others}', f'UUID="",uuid!~{others}')


def _terms(func: str, selectors: Iterable[str], range_ms: int, offset_ms: int = 1) -> str:
    return " or ".join(f"{func}({sel}[{range_ms}ms] offset {offset_ms}ms)" for sel in selectors)


def _with(selector: str, extra: str) -> str:
    """``name{a="x"}`` or ``name`` with more matchers added."""
    if not extra:
        return selector
    return selector[:-1] + "," + extra + "}" if selector.endswith("}") else f"{selector}{{{extra}}}"


def over_evidence(
    func: str, range_ms: int, branches: tuple[str, ...] = ALL_GPUS, *, extra: str = "", offset_ms: int = 1
) -> str:
    """``func`` over both evidence metrics, one result per series (metric name dropped).

    ``branches`` are a shard's matchers (:func:`shard_branches`), ``extra`` adds matchers to
    every branch; ``offset_ms`` moves the range back (1 ms: the window that ends at the
    evaluation time, half-open).
    """
    whole, mig = evidence_selectors(extra)
    return _terms(func, [_with(sel, b) for b in branches for sel in (whole, mig)], range_ms, offset_ms)


def over_energy(func: str, range_ms: int, branches: tuple[str, ...] = ALL_GPUS) -> str:
    return _terms(func, [_with(ENERGY, b) for b in branches], range_ms)


def raw_selector(uuid_label: str, uuids: Iterable[str], metrics: Iterable[str] = (UTIL, GR_ACTIVE, ENERGY)) -> str:
    """Raw samples of the metered metrics for a set of GPUs."""
    names = regex_alternation(metrics)
    return f"{{__name__=~{names},{label_name(uuid_label)}=~{regex_alternation(uuids)}}}"
