"""A simulated telemetry backend: the demo meters through the real collector with no server.

:class:`SimulatedBackend` holds series in memory and answers the four calls
:class:`metering.collector.ChunkMeter` and :func:`metering.run.collect` make of a backend
(``backend_name``, ``range_ms``, ``range_frame``, ``raw_series``; the
``metering.collector.MetricsClient`` protocol) the way a Prometheus 3.x or VictoriaMetrics
server would over the same samples:

- a range selector ``x[R]`` evaluated at t selects the samples with ``t-R < ts <= t``
  (left-open), and ``offset d`` evaluates it at ``t-d``; so ``f(x[R] offset 1ms)`` at an
  hour end t covers exactly ``[t-R, t)``;
- a range query is evaluated at ``start, start+step, …`` up to ``end``; a series has a point
  only where its range holds a sample; ``count_over_time``, ``sum_over_time``,
  ``min_over_time`` and ``resets`` drop the metric name, ``last_over_time`` keeps it; NaN
  samples count, make a sum NaN, are passed over by a min (unless all are NaN), and are
  never a reset; ``a or b`` adds b's series whose label sets a lacks at that step;
- :meth:`SimulatedBackend.raw_series` gives every sample with ``start_ms <= ts < end_ms``.

It understands exactly the PromQL the collector writes — ``f(sel[Nms] offset Nms)`` joined
by ``or`` with f one of the five functions above, and bare selectors ``name{…}`` or ``{…}``
with ``=``, ``!=``, ``=~``, ``!~`` matchers (regexes fully anchored) — and raises
``ValueError`` on anything else.

Samples live in two flat arrays: a composite key (series number x span + time) that sorts
by series then time, and the values; every range is then two binary searches, and sums
and resets are segment sums, for all series and steps of a query at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from metering.samples import Series, series_key

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

MAX_RESOLUTION = 11_000  # points per series a range query may ask for, as Prometheus allows
ROLLUPS = ("count_over_time", "sum_over_time", "last_over_time", "min_over_time", "resets")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}

Matcher = tuple[str, str, str]  # label name, operator, value


@dataclass(frozen=True)
class Term:
    """``func(selector[range_ms] offset offset_ms)``."""

    func: str
    matchers: tuple[Matcher, ...]
    range_ms: int
    offset_ms: int


class _Parser:
    """A recursive-descent reader of the PromQL subset above."""

    _SPACE = re.compile(r"\s*")
    _NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
    _LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
    _OP = re.compile(r"=~|!~|!=|=")
    _STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
    _DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"simulated backend: expected {what} at {self.pos} in {self.text!r}")

    def skip(self) -> None:
        m = self._SPACE.match(self.text, self.pos)
        self.pos = m.end() if m else self.pos

    def take(self, pattern: re.Pattern[str], what: str) -> re.Match[str]:
        self.skip()
        m = pattern.match(self.text, self.pos)
        if not m:
            raise self.fail(what)
        self.pos = m.end()
        return m

    def literal(self, token: str) -> bool:
        self.skip()
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str) -> None:
        if not self.literal(token):
            raise self.fail(repr(token))

    def end(self) -> None:
        self.skip()
        if self.pos != len(self.text):
            raise self.fail("the end of the query")

    def string(self) -> str:
        body = self.take(self._STRING, "a double-quoted string").group(1)
        out: list[str] = []
        chars = iter(body)
        for c in chars:
            if c == "\\":
                e = next(chars)
                if e not in _ESCAPES:
                    raise self.fail(f"a known escape, not \\{e}")
                c = _ESCAPES[e]
            out.append(c)
        return "".join(out)

    def duration(self) -> int:
        m = self.take(self._DURATION, "a duration")
        return int(m.group(1)) * _UNITS_MS[m.group(2)]

    def selector(self) -> tuple[Matcher, ...]:
        self.skip()
        matchers: list[Matcher] = []
        name = self._NAME.match(self.text, self.pos)
        if name:
            self.pos = name.end()
            matchers.append(("__name__", "=", name.group()))
        if self.literal("{"):
            while not self.literal("}"):
                label = self.take(self._LABEL, "a label name").group()
                op = self.take(self._OP, "a matcher operator").group()
                matchers.append((label, op, self.string()))
                if not self.literal(","):
                    self.expect("}")
                    break
        if not matchers:
            raise self.fail("a selector")
        return tuple(matchers)

    def term(self) -> Term:
        func = self.take(self._NAME, "a function").group()
        if func not in ROLLUPS:
            raise ValueError(f"simulated backend: unsupported function {func!r} in {self.text!r}")
        self.expect("(")
        matchers = self.selector()
        self.expect("[")
        range_ms = self.duration()
        self.expect("]")
        offset_ms = 0
        self.skip()
        if self.text.startswith("offset", self.pos):
            self.pos += len("offset")
            offset_ms = self.duration()
        self.expect(")")
        return Term(func, matchers, range_ms, offset_ms)


def parse_range_query(text: str) -> list[Term]:
    """The terms of ``t1 or t2 or …``."""
    p = _Parser(text)
    terms = [p.term()]
    while True:
        p.skip()
        if not re.match(r"or\b", text[p.pos :]):
            break
        p.pos += 2
        terms.append(p.term())
    p.end()
    return terms


def parse_selector(text: str) -> tuple[Matcher, ...]:
    p = _Parser(text)
    matchers = p.selector()
    p.end()
    return matchers


def _test(op: str, value: str) -> Callable[[str], bool]:
    if op == "=":
        return lambda v: v == value
    if op == "!=":
        return lambda v: v != value
    pattern = re.compile(value, re.S)
    if op == "=~":
        return lambda v: pattern.fullmatch(v) is not None
    return lambda v: pattern.fullmatch(v) is None


class SimulatedBackend:
    """An in-process, Prometheus-3-like backend over ``series`` (see the module doc)."""

    def __init__(self, series: Iterable[Series], *, name: str = "simulated") -> None:
        self.name = name
        merged: dict[str, list[Series]] = {}
        for s in series:
            if len(s.ts_ms):
                merged.setdefault(series_key(s.labels), []).append(s)
        named = sorted(merged)
        self._labels: list[dict[str, str]] = []
        ts_parts: list[I64] = []
        value_parts: list[F64] = []
        for k in named:
            parts = merged[k]
            self._labels.append(dict(parts[0].labels))
            ts = np.concatenate([np.asarray(p.ts_ms, dtype=np.int64) for p in parts])
            vs = np.concatenate([np.asarray(p.values, dtype=np.float64) for p in parts])
            order = np.argsort(ts, kind="stable")
            ts_parts.append(ts[order])
            value_parts.append(vs[order])
        del merged
        lengths = np.array([len(t) for t in ts_parts], dtype=np.int64)
        # key = series number * span + (ts - base); base and span leave room below and above
        # every sample, so clipped bounds never reach into a neighbouring series.
        self._base = min((int(t[0]) for t in ts_parts), default=0) - 1
        self._span = max((int(t[-1]) for t in ts_parts), default=0) - self._base + 2
        self._keys: I64 = np.repeat(np.arange(len(named), dtype=np.int64) * self._span, lengths)
        if ts_parts:
            self._keys += np.concatenate(ts_parts) - self._base
        self._values: F64 = np.concatenate([*value_parts, np.zeros(0)])
        del ts_parts, value_parts
        # drops: a sample below its predecessor in the same series (NaN never is)
        self._drops = np.zeros(len(self._values), dtype=np.uint8)
        self._drops[1:] = self._values[1:] < self._values[:-1]
        self._drops[np.cumsum(lengths)[:-1]] = 0  # a series' first sample follows no other
        for a in (self._keys, self._values, self._drops):
            a.setflags(write=False)
        # result label sets (with and without the metric name), numbered in their text order
        bare = [{k: v for k, v in lab.items() if k != "__name__"} for lab in self._labels]
        texts = {series_key(lab): lab for lab in (*self._labels, *bare)}
        ordered = sorted(texts)
        number = {t: i for i, t in enumerate(ordered)}
        self._sets = [texts[t] for t in ordered]
        self._named_set = np.array([number[t] for t in named], dtype=np.int64)
        self._bare_set = np.array([number[series_key(lab)] for lab in bare], dtype=np.int64)
        # postings: label name -> value -> series numbers; an absent label matches ""
        postings: dict[str, dict[str, list[int]]] = {}
        for i, labels in enumerate(self._labels):
            for k, v in labels.items():
                postings.setdefault(k, {}).setdefault(v, []).append(i)
        self._postings = {k: {v: np.array(ids, dtype=np.int64) for v, ids in vs.items()} for k, vs in postings.items()}

    # -- the client interface the collector uses -----------------------------------------

    def backend_name(self) -> str:
        return self.name

    def range_ms(self, width_ms: int) -> int:
        """Ranges are left-open, as in Prometheus 3.x: ``x[w] offset 1ms`` at t covers [t-w, t)."""
        return width_ms

    def range_frame(
        self, query: str, start_ms: int, end_ms: int, step_s: int
    ) -> tuple[list[dict[str, str]], pl.DataFrame]:
        """The range query's result as (labels per series, frame of idx, t_ms, value)."""
        if step_s <= 0 or end_ms < start_ms:
            raise ValueError("simulated backend: a range query needs step > 0 and end >= start")
        n = (end_ms - start_ms) // (step_s * 1000) + 1
        if n > MAX_RESOLUTION:
            raise ValueError(f"simulated backend: {n} points per series exceed {MAX_RESOLUTION}")
        times = start_ms + np.arange(n, dtype=np.int64) * (step_s * 1000)
        sets: list[I64] = []
        steps: list[I64] = []
        values: list[F64] = []
        for term in parse_range_query(query):
            s, k, v = self._rollup(term, times)
            if sets:  # `or`: a right-hand series only at steps where the left has none with its labels
                fresh = ~np.isin(s * n + k, np.concatenate(sets) * n + np.concatenate(steps))
                s, k, v = s[fresh], k[fresh], v[fresh]
            sets.append(s)
            steps.append(k)
            values.append(v)
        all_sets = np.concatenate(sets)
        order = np.lexsort((np.concatenate(steps), all_sets))
        present, idx = np.unique(all_sets[order], return_inverse=True)
        frame = pl.DataFrame(
            {
                "idx": idx.astype(np.int32),
                "t_ms": times[np.concatenate(steps)[order]],
                "value": np.concatenate(values)[order],
            },
            schema={"idx": pl.Int32, "t_ms": pl.Int64, "value": pl.Float64},
        )
        return [dict(self._sets[i]) for i in present.tolist()], frame

    def raw_series(self, selector: str, start_ms: int, end_ms: int) -> list[Series]:
        """Every sample of the series ``selector`` picks with ``start_ms <= ts < end_ms``."""
        sids = self._select(parse_selector(selector))
        a = np.searchsorted(self._keys, sids * self._span + self._clip(start_ms), side="left")
        b = np.searchsorted(self._keys, sids * self._span + self._clip(end_ms), side="left")
        out = []
        for sid, lo, hi in zip(sids.tolist(), a.tolist(), b.tolist(), strict=True):
            if hi > lo:
                ts = self._keys[lo:hi] - sid * self._span + self._base
                out.append(Series(dict(self._labels[sid]), ts, self._values[lo:hi]))
        return out

    # -- evaluation --------------------------------------------------------------------------

    def _clip(self, t_ms: int | I64) -> I64:
        clipped: I64 = np.clip(np.asarray(t_ms, dtype=np.int64) - self._base, 0, self._span - 1)
        return clipped

    def _select(self, matchers: Sequence[Matcher]) -> I64:
        keep = np.ones(len(self._labels), dtype=bool)
        for name, op, value in matchers:
            test = _test(op, value)
            hit = np.zeros(len(self._labels), dtype=bool)
            present = np.zeros(len(self._labels), dtype=bool)
            for v, ids in self._postings.get(name, {}).items():
                present[ids] = True
                if test(v):
                    hit[ids] = True
            if test(""):
                hit |= ~present
            keep &= hit
        return np.flatnonzero(keep).astype(np.int64)

    def _rollup(self, term: Term, times: I64) -> tuple[I64, I64, F64]:
        """One function over one selector at every time: (label set, step index, value) per point."""
        sids = self._select(term.matchers)
        right = times - term.offset_ms  # the range is (right - range, right]
        first = (sids * self._span)[:, None]
        lo = np.searchsorted(self._keys, (first + self._clip(right - term.range_ms)[None, :]).ravel(), side="right")
        hi = np.searchsorted(self._keys, (first + self._clip(right)[None, :]).ravel(), side="right")
        count = hi - lo
        some = count > 0
        values: F64
        if term.func == "count_over_time":
            values = count.astype(np.float64)
        elif term.func == "last_over_time":
            values = self._values[np.maximum(hi - 1, 0)]
        elif term.func == "sum_over_time":
            values = _segment_sums(self._values, lo, hi, some)
        elif term.func == "min_over_time":
            values = _segment_sums(self._values, lo, hi, some, np.fmin)
        else:  # resets: drops after the first sample of the range
            values = _segment_sums(self._drops, lo + 1, hi, count > 1)
        label_sets = self._named_set if term.func == "last_over_time" else self._bare_set
        n = len(times)
        sets = np.repeat(label_sets[sids], n)
        steps = np.tile(np.arange(n, dtype=np.int64), len(sids))
        return sets[some], steps[some], values[some]


def _segment_sums(
    data: npt.NDArray[np.float64] | npt.NDArray[np.uint8],
    lo: I64,
    hi: I64,
    valid: npt.NDArray[np.bool_],
    op: np.ufunc = np.add,
) -> F64:
    """Sum (or ``op``: ``np.fmin`` is Prometheus' min, NaN only when all are) of ``data[lo:hi]``
    for each pair where ``valid`` (lo < hi); 0 elsewhere.

    The selected samples are gathered back to back (ranges may overlap), then reduced per
    range in time order with one ``op.reduceat`` (in float64: exact for counts).
    """
    out: F64 = np.zeros(len(lo), dtype=np.float64)
    if valid.any():
        first, length = lo[valid], (hi - lo)[valid]
        starts = np.cumsum(length) - length
        picked = np.repeat(first - starts, length) + np.arange(int(length.sum()), dtype=np.int64)
        out[valid] = op.reduceat(data[picked], starts, dtype=np.float64)
    return out
