"""The Prometheus edge: every HTTP call metering makes goes through :class:`PromClient`.

It wraps prometheus-api-client's ``PrometheusConnect`` with the retry policy (timeouts, 5xx
and answers cut short retried with exponential backoff, GET only so retries are safe; urllib3
retries what fails before the body arrives, :meth:`PromClient._call` a body that breaks off
midway), turns every failure
into a :class:`TelemetryError`, detects at run time whether the backend's range selectors
are closed ``[t-r, t]`` (Prometheus 2.x) or left-open ``(t-r, t]`` (Prometheus 3.x, Mimir,
VictoriaMetrics), and converts results into :class:`metering.samples.Series`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, overload

import numpy as np
import orjson
import polars as pl
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from metering.errors import TelemetryError
from metering.samples import Series
from metering.windows import from_ms

Params = Mapping[str, str | list[str]]
"""Query parameters; a list repeats its parameter (``match[]``)."""

MAX_RESOLUTION = 11_000  # points per series a query_range may ask for (Prometheus API limit)


class _FastJSONResponse(requests.Response):
    """A response whose ``json()`` decodes with orjson (Prometheus answers can be large)."""

    def json(self, **kwargs: Any) -> Any:
        return orjson.loads(self.content)


class _Session(requests.Session):
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = super().send(request, **kwargs)
        response.__class__ = _FastJSONResponse
        return response


class _CutShort(Exception):
    """An answer whose body broke off (IncompleteRead, a reset link): retried by ``_call``."""


def _value(text: str) -> float:
    return float(text)  # Prometheus sends "NaN", "+Inf", "1e-07", plain decimals


class PromClient:
    """A Prometheus HTTP API client with retries, timeouts and boundary detection."""

    def __init__(self, url: str, *, timeout_s: float = 120.0, retries: int = 4, backoff_s: float = 0.5) -> None:
        self.url = url.rstrip("/")
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff_s,
            status_forcelist=[408, 429, 500, 502, 503, 504],
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
        )
        self._timeout = timeout_s
        self.retries = retries
        self._backoff_s = backoff_s
        self._conn = PrometheusConnect(url=self.url, retry=retry, timeout=timeout_s, session=_Session())
        self._closed_ranges: bool | None = None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PromClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return self._call_once(what, fn, *args, **kwargs)
            except _CutShort as cut:
                if attempt == self.retries:
                    raise TelemetryError(
                        f"Prometheus at {self.url} kept cutting its answer short on {what} (retries exhausted)"
                    ) from cut.__cause__
                time.sleep(self._backoff_s * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _call_once(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            raise _CutShort from exc  # the connection broke off mid-answer: safe to ask again (GET)
        except PrometheusApiClientException as exc:
            raise TelemetryError(f"Prometheus at {self.url} refused {what}: {_short(exc)}") from exc
        except requests.exceptions.RetryError as exc:
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            raise TelemetryError(
                f"Prometheus at {self.url} kept failing on {what} ({_short(str(reason or exc))}; retries exhausted)"
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise TelemetryError(f"Prometheus at {self.url} timed out on {what} after {self._timeout:g}s") from exc
        except requests.exceptions.ConnectionError as exc:
            if isinstance(getattr(exc.args[0] if exc.args else None, "reason", None), ReadTimeoutError):
                raise TelemetryError(
                    f"Prometheus at {self.url} timed out on {what} after {self._timeout:g}s (retries exhausted)"
                ) from exc
            raise TelemetryError(f"cannot reach Prometheus at {self.url}") from exc
        except requests.exceptions.RequestException as exc:
            raise TelemetryError(f"HTTP error talking to Prometheus at {self.url}: {exc}") from exc
        except (ValueError, KeyError) as exc:
            raise TelemetryError(f"unusable answer from Prometheus at {self.url} on {what}") from exc

    @overload
    def get(self, path: str, params: Params | None = None) -> requests.Response: ...

    @overload
    def get(self, path: str, params: Params | None = None, *, missing_ok: bool) -> requests.Response | None: ...

    def get(self, path: str, params: Params | None = None, *, missing_ok: bool = False) -> requests.Response | None:
        """A GET of ``path`` under the base URL, with the client's timeout and retries.

        An HTTP error status (after retries) is a :class:`TelemetryError` naming it; with
        ``missing_ok``, a 404 is None.
        """
        url = self.url + path
        response: requests.Response = self._call(
            f"GET {path}", self._conn._session.get, url, params=params, timeout=self._timeout
        )
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise TelemetryError(
                f"{self.url} answered HTTP {response.status_code} to GET {path}: {_short(response.text.strip())}"
            )
        return response

    def api(self, path: str, params: Params | None = None) -> Any:
        """The ``data`` of a Prometheus HTTP API answer (``{"status": "success", "data": ...}``)."""
        response = self.get(path, params)
        try:
            doc = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            kind = response.headers.get("Content-Type", "?").split(";")[0]
            raise TelemetryError(
                f"{self.url} answered GET {path} with {kind}, not the Prometheus API's JSON: "
                f"{_short(response.text.strip())}"
            ) from exc
        if not isinstance(doc, dict) or doc.get("status") != "success" or "data" not in doc:
            raise TelemetryError(f"{self.url} answered GET {path} without success: {_short(str(doc))}")
        return doc["data"]

    def label_names(self, matchers: list[str], start_ms: int, end_ms: int) -> list[str]:
        """``/api/v1/labels``: the label names of the series ``matchers`` select in the range."""
        data = self.api(
            "/api/v1/labels",
            {"match[]": matchers, "start": f"{start_ms / 1000:.3f}", "end": f"{end_ms / 1000:.3f}"},
        )
        if not isinstance(data, list):
            raise TelemetryError(f"unusable answer from {self.url} on GET /api/v1/labels")
        return [str(x) for x in data]

    @property
    def timeout_s(self) -> float:
        return self._timeout

    def instant(self, query: str, at_ms: int) -> list[dict[str, Any]]:
        """``/api/v1/query`` at a time given in Unix ms."""
        result: list[dict[str, Any]] = self._call(
            "an instant query", self._conn.custom_query, query, params={"time": f"{at_ms / 1000:.3f}"}
        )
        return result

    def range_frame(
        self, query: str, start_ms: int, end_ms: int, step_s: int
    ) -> tuple[list[dict[str, str]], pl.DataFrame]:
        """``/api/v1/query_range`` as (labels per series, frame of idx, t_ms, value).

        start/end must be whole seconds (the client rounds them), within 11,000 steps.
        """
        if start_ms % 1000 or end_ms % 1000:
            raise TelemetryError("query_range times must be whole seconds (the client rounds them)")
        steps = (end_ms - start_ms) // 1000 // step_s
        if steps > MAX_RESOLUTION:
            raise TelemetryError(f"query_range of {steps} steps exceeds Prometheus' limit of {MAX_RESOLUTION}")
        raw = self._call(
            "a range query",
            self._conn.custom_query_range,
            query,
            start_time=from_ms(start_ms),
            end_time=from_ms(end_ms),
            step=str(step_s),
        )
        labels = [dict(item["metric"]) for item in raw]
        lengths = [len(item["values"]) for item in raw]
        ts = [p[0] for item in raw for p in item["values"]]
        vs = [p[1] for item in raw for p in item["values"]]
        frame = pl.DataFrame(
            {
                "idx": np.repeat(np.arange(len(raw), dtype=np.int32), lengths),
                "t_ms": np.rint(np.asarray(ts, dtype=np.float64) * 1000).astype(np.int64),
                "value": np.asarray(vs, dtype=np.float64),
            }
        )
        return labels, frame

    def raw_series(self, selector: str, start_ms: int, end_ms: int) -> list[Series]:
        """Every raw sample of ``selector`` with ``start_ms <= ts < end_ms``.

        An instant query of a range selector evaluated at ``end_ms - 1ms``; the range is
        over-fetched by a millisecond and filtered here, which gives the half-open window on
        closed and left-open backends alike.
        """
        span = end_ms - start_ms + 1
        result = self.instant(f"{selector}[{span}ms]", end_ms - 1)
        out = []
        for item in result:
            values = item.get("values") or []
            if not values:
                continue
            ts = np.rint(np.array([t for t, _ in values], dtype=np.float64) * 1000).astype(np.int64)
            vs = np.array([v for _, v in values], dtype=np.float64)  # numpy parses "NaN", "+Inf", "1e-07"
            keep = (ts >= start_ms) & (ts < end_ms)
            if keep.any():
                out.append(Series(dict(item["metric"]), ts[keep], vs[keep]))
        return out

    # -- boundary semantics -------------------------------------------------------------

    def closed_ranges(self) -> bool:
        """True when ``x[r]`` at t covers [t-r, t] (Prometheus 2.x); False for (t-r, t].

        The probe evaluates ``count_over_time(vector(1)[1m:1m])`` at a minute-aligned time:
        2 on closed backends, 1 on left-open ones. Version strings are not trusted.
        """
        if self._closed_ranges is None:
            at_ms = 1_700_000_040_000  # minute-aligned; any aligned time works
            res = self.instant("count_over_time(vector(1)[1m:1m])", at_ms)
            try:
                n = int(float(res[0]["value"][1]))
            except (IndexError, KeyError, ValueError, TypeError) as exc:
                raise TelemetryError(f"boundary probe got an unusable answer from {self.url}: {res!r}") from exc
            if n not in (1, 2):
                raise TelemetryError(f"boundary probe answered {n}, expected 1 or 2", value=n)
            self._closed_ranges = n == 2
        return self._closed_ranges

    def backend_name(self) -> str:
        return "prometheus-closed" if self.closed_ranges() else "prometheus-open"

    def range_ms(self, width_ms: int) -> int:
        """The selector duration that, with ``offset 1ms`` at an aligned t, covers exactly [t-width, t)."""
        return width_ms - 1 if self.closed_ranges() else width_ms


def _short(exc: Exception | str) -> str:
    """One line of at most ~300 characters, keeping the start and the end (where the reason is)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:140] + " … " + text[-160:]


def finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))


def at(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)
