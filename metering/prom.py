"""The Prometheus edge: every HTTP call metering makes goes through :class:`PromClient`.

It wraps prometheus-api-client's ``PrometheusConnect`` with the retry policy (timeouts and
5xx retried with exponential backoff, GET only so retries are safe; a truncated or
unparsable answer is asked again too), turns every failure into a :class:`TelemetryError`
that says what kind it was, detects at run time whether the backend's range selectors
are closed ``[t-r, t]`` (Prometheus 2.x) or left-open ``(t-r, t]`` (Prometheus 3.x, Mimir,
VictoriaMetrics), and converts results into :class:`metering.samples.Series`.

:func:`client_for` is the one place a client is made from ``[telemetry]``: the query
frontend URL when there is one, the extra headers (Mimir's ``X-Scope-OrgID``), and a
bearer token read from the environment variable the configuration names.
"""

from __future__ import annotations

import math
import os
import re
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
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ReadTimeoutError
from urllib3.util.retry import Retry

from gpumeter.config import TelemetryConfig
from gpumeter.errors import ConfigError
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


def _value(text: str) -> float:
    return float(text)  # Prometheus sends "NaN", "+Inf", "1e-07", plain decimals


_STATUS = re.compile(r"HTTP Status Code (\d{3})")


# an answer not JSON or cut short (broke off mid-body): safe to ask again (GET only)
_ASK_AGAIN = (ValueError, KeyError, requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)


class PromClient:
    """A Prometheus HTTP API client with retries, timeouts and boundary detection."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 120.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        headers: Mapping[str, str] | None = None,
        connections: int = 16,
    ) -> None:
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
        session = _Session()
        self._conn = PrometheusConnect(
            url=self.url, retry=retry, timeout=timeout_s, session=session, headers=dict(headers or {})
        )
        # as many pooled connections as queries may run at once (shards x their queries)
        session.mount(self.url, HTTPAdapter(max_retries=retry, pool_maxsize=max(10, connections)))
        self._closed_ranges: bool | None = None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PromClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` with every failure a :class:`TelemetryError`.

        Connection failures, timeouts and 5xx answers are retried by the HTTP adapter; an
        answer cut short or not JSON (a proxy restarting, say) is asked again here, as
        often and with the same backoff.
        """
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except _ASK_AGAIN as exc:
                if attempt == self.retries:
                    raise TelemetryError(
                        f"unusable answer from Prometheus at {self.url} on {what}", kind="bad_answer"
                    ) from exc
                time.sleep(self._backoff_s * 2**attempt)
            except PrometheusApiClientException as exc:
                m = _STATUS.search(str(exc))
                status = int(m.group(1)) if m else 0
                if status >= 500 or status == 429:
                    raise TelemetryError(
                        f"Prometheus at {self.url} kept answering {status} on {what} (retries exhausted)",
                        kind="status",
                    ) from exc
                raise TelemetryError(f"Prometheus at {self.url} refused {what}: {_short(exc)}", kind="refused") from exc
            except requests.exceptions.RetryError as exc:
                reason = getattr(exc.args[0], "reason", None) if exc.args else None
                raise TelemetryError(
                    f"Prometheus at {self.url} kept failing on {what} "
                    f"({_short(str(reason or exc))}; retries exhausted)",
                    kind="status",
                ) from exc
            except requests.exceptions.Timeout as exc:
                raise TelemetryError(
                    f"Prometheus at {self.url} timed out on {what} after {self._timeout:g}s", kind="timeout"
                ) from exc
            except requests.exceptions.ConnectionError as exc:
                if _read_timeouts(exc):  # requests reports read timeouts that exhausted the retries so
                    raise TelemetryError(
                        f"Prometheus at {self.url} timed out on {what} after {self._timeout:g}s (retries exhausted)",
                        kind="timeout",
                    ) from exc
                raise TelemetryError(f"cannot reach Prometheus at {self.url}", kind="connection") from exc
            except requests.exceptions.RequestException as exc:
                raise TelemetryError(f"HTTP error talking to Prometheus at {self.url}: {exc}") from exc
        raise AssertionError("unreachable")  # the loop returns or raises

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
            f"GET {path}",
            self._conn._session.get,
            url,
            params=params,
            headers=self._conn.headers,
            timeout=self._timeout,
        )
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise TelemetryError(
                f"{self.url} answered HTTP {response.status_code} to GET {path}: {_short(response.text.strip())}",
                kind="status" if response.status_code >= 500 or response.status_code == 429 else "refused",
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

    def server_time_ms(self) -> int:
        """The backend's clock (``time()`` evaluated now), in Unix ms: a cheap reachability probe too."""
        result: Any = self._call("a clock query", self._conn.custom_query, "time()")
        try:
            # a scalar answers [t, "t"]; some backends wrap it as a one-element vector
            value = result[1] if isinstance(result[0], int | float) else result[0]["value"][1]
            return round(float(value) * 1000)
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            raise TelemetryError(f"the clock query got an unusable answer from {self.url}", kind="bad_answer") from exc

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


def client_for(t: TelemetryConfig, environ: Mapping[str, str] | None = None) -> PromClient:
    """The client ``[telemetry]`` describes; the bearer token comes from ``environ`` (default the process's).

    Queries go to ``query_url`` (a query frontend) when set, else ``prometheus_url``.
    """
    headers = dict(t.headers)
    if t.bearer_token_env is not None:
        env = os.environ if environ is None else environ
        token = env.get(t.bearer_token_env, "").strip()
        if not token:
            raise ConfigError(
                f"[telemetry] bearer_token_env names {t.bearer_token_env}, which is not set in the environment"
            )
        headers["Authorization"] = f"Bearer {token}"
    return PromClient(
        t.query_url or t.prometheus_url,
        timeout_s=t.timeout_s,
        retries=t.retries,
        headers=headers,
        connections=4 * t.workers + 4,
    )


def _read_timeouts(exc: requests.exceptions.ConnectionError) -> bool:
    reason = exc.args[0] if exc.args else None
    return isinstance(reason, MaxRetryError) and isinstance(reason.reason, ReadTimeoutError)


def _short(exc: Exception | str) -> str:
    """One line of at most ~300 characters, keeping the start and the end (where the reason is)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:140] + " … " + text[-160:]


def finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))


def at(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)
