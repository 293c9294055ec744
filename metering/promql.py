"""PromQL text for the metering queries (pure).

Label values go into PromQL only through :func:`quote` (string literal escaping) and
:func:`regex_alternation` (RE2 escaping, then string escaping); label *names* come from
configuration and are checked to be identifiers.

Every aggregate is written ``f(sel[R] offset 1ms)`` and evaluated at window ends t, so that
it covers exactly [t-width, t): with ``offset 1ms`` the selection ends at t-1ms, and R is
``width-1ms`` on closed backends, ``width`` on left-open ones (see :meth:`PromClient.range_ms`).
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


def over_evidence(func: str, range_ms: int, *, extra: str = "", offset_ms: int = 1) -> str:
    """``func`` over both evidence metrics, one result per series (metric name dropped).

    ``extra`` adds matchers; ``offset_ms`` moves the range back (1 ms: the window that ends
    at the evaluation time, half-open).
    """
    whole, mig = evidence_selectors(extra)
    return f"{func}({whole}[{range_ms}ms] offset {offset_ms}ms) or {func}({mig}[{range_ms}ms] offset {offset_ms}ms)"


def over_energy(func: str, range_ms: int) -> str:
    return f"{func}({ENERGY}[{range_ms}ms] offset 1ms)"


def raw_selector(uuid_label: str, uuids: Iterable[str], metrics: Iterable[str] = (UTIL, GR_ACTIVE, ENERGY)) -> str:
    """Raw samples of the metered metrics for a set of GPUs."""
    names = regex_alternation(metrics)
    return f"{{__name__=~{names},{label_name(uuid_label)}=~{regex_alternation(uuids)}}}"
