"""Errors of the dashboards, one tree under :class:`gpumeter.errors.GpumeterError`.

::

    GpumeterError                 (gpumeter.errors)
    └── DashboardError            the dashboards cannot do what was asked        exit 1
        ├── UserError             a bad user name, role, tenant or password (``gpumeter users``)
        ├── AccessDenied          a role asked for a page or an export it may not have
        ├── UnknownTenant         a tenant that tenants.csv does not hold (My account, ``gpumeter export``)
        └── RateLimited           too many failed sign-ins: names when to try again

Store problems (locked longer than the wait, schema too old) stay
:class:`gpumeter.errors.StoreError`; a page shows any of these as one line, never a
traceback. No message ever contains a password.
"""

from __future__ import annotations

from datetime import datetime

from gpumeter.errors import GpumeterError


class DashboardError(GpumeterError):
    """Base of every error the dashboards raise on purpose."""


class UserError(DashboardError):
    """A dashboard user cannot be added, changed or removed as asked."""


class AccessDenied(DashboardError):
    """The signed-in user's role does not allow this page or this export."""


class UnknownTenant(DashboardError):
    """A tenant's own view or export was asked for a tenant the store does not know."""


class RateLimited(DashboardError):
    """Too many recent failed sign-ins for this user or from this client."""

    def __init__(self, message: str, *, retry_at: datetime, scope: str) -> None:
        super().__init__(message)
        self.retry_at = retry_at
        self.scope = scope
