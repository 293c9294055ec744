"""Metering errors.

::

    GpumeterError (gpumeter.errors)
    ├── InputError                 bad inventory file / rates (file, line, value)
    └── MeteringError              metering could not produce exact numbers
        ├── TelemetryError         Prometheus unreachable, timed out, or answered badly
        └── RangeError             a requested range is malformed (not UTC hours, end <= start)
"""

from __future__ import annotations

from gpumeter.errors import GpumeterError


class MeteringError(GpumeterError):
    """Metering could not produce exact numbers; nothing was stored."""


class TelemetryError(MeteringError):
    """Prometheus (or a compatible backend) failed or answered something unusable.

    ``kind`` says how, for ``serve``'s ``gpumeter_backend_errors_total{kind}``: one of
    ``timeout``, ``connection``, ``status`` (5xx or 429 until the retries ran out),
    ``refused`` (the backend rejected the query), ``bad_answer`` (truncated or unusable
    JSON), or ``other``.
    """

    KINDS = ("timeout", "connection", "status", "refused", "bad_answer", "other")

    def __init__(self, message: str, *, kind: str = "other", value: object = None) -> None:
        super().__init__(message, value=value)
        self.kind = kind if kind in self.KINDS else "other"


class RangeError(MeteringError):
    """A --start/--end/--month value is malformed."""
