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
    """Prometheus (or a compatible backend) failed or answered something unusable."""


class RangeError(MeteringError):
    """A --start/--end/--month value is malformed."""
