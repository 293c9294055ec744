"""Who sees what: roles, their pages, and who may export which bundle (pure).

=============  ==========================================================
role           pages
=============  ==========================================================
finance        Finance, Utilisation
compliance     Compliance, Utilisation
auditor        Auditor, Compliance (an auditor scoped to one tenant: Auditor only)
tenant         My account (always bound to one tenant)
admin          every page but My account, and Access (users and failed sign-ins)
=============  ==========================================================

A tenant-scoped auditor sees only the Auditor page, because every other page shows all
tenants, and may export only its tenant's bundle — never the whole log. A tenant user
(a customer's own login) sees only My account, whose reader filters every query by the
bound tenant (:mod:`dashboards.account`), and may export only its own bundle. Admins have
no tenant, so My account is not theirs. The pages the
entrypoint registers with ``st.navigation`` are exactly :func:`pages_for`, so a page a
role may not see does not exist in that session at all; exports are checked again
where they are built (:func:`verify_export`), not only by hiding a widget.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dashboards.errors import AccessDenied


class Role(StrEnum):
    FINANCE = "finance"
    COMPLIANCE = "compliance"
    AUDITOR = "auditor"
    TENANT = "tenant"
    ADMIN = "admin"


class Page(StrEnum):
    """The dashboard pages; the value is the page's file stem and URL path."""

    FINANCE = "finance"
    UTILISATION = "utilisation"
    COMPLIANCE = "compliance"
    AUDITOR = "auditor"
    ACCESS = "access"
    ACCOUNT = "account"


TITLES = {
    Page.FINANCE: "Finance",
    Page.UTILISATION: "Utilisation",
    Page.COMPLIANCE: "Compliance",
    Page.AUDITOR: "Auditor",
    Page.ACCESS: "Access",
    Page.ACCOUNT: "My account",
}

ICONS = {
    Page.FINANCE: ":material/euro:",
    Page.UTILISATION: ":material/memory:",
    Page.COMPLIANCE: ":material/verified_user:",
    Page.AUDITOR: ":material/inventory_2:",
    Page.ACCESS: ":material/group:",
    Page.ACCOUNT: ":material/account_circle:",
}

_PAGES: dict[Role, tuple[Page, ...]] = {
    Role.FINANCE: (Page.FINANCE, Page.UTILISATION),
    Role.COMPLIANCE: (Page.COMPLIANCE, Page.UTILISATION),
    Role.AUDITOR: (Page.AUDITOR, Page.COMPLIANCE),
    Role.TENANT: (Page.ACCOUNT,),
    Role.ADMIN: tuple(p for p in Page if p is not Page.ACCOUNT),
}

SCOPED_ROLES = (Role.AUDITOR, Role.TENANT)
"""The roles a user can be bound to one tenant in; a tenant user always is."""


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise AccessDenied(
            f"unknown role (roles: {', '.join(r.value for r in Role)})",
            value=text,
        ) from None


@dataclass(frozen=True)
class Viewer:
    """The signed-in person: a name, a role, and for a scoped auditor or a tenant user the one tenant."""

    name: str
    role: Role
    tenant: str | None = None
    via: str = "password"  # password | oidc

    def __post_init__(self) -> None:
        if self.tenant is not None and self.role not in SCOPED_ROLES:
            raise AccessDenied("only an auditor or a tenant user can be scoped to a tenant", value=self.role.value)
        if self.tenant is None and self.role is Role.TENANT:
            raise AccessDenied("a tenant user is bound to one tenant", value=self.name)


def pages_for(viewer: Viewer) -> tuple[Page, ...]:
    """The pages this viewer may open, in menu order."""
    if viewer.role is Role.AUDITOR and viewer.tenant is not None:
        return (Page.AUDITOR,)
    return _PAGES[viewer.role]


def may_open(viewer: Viewer, page: Page) -> bool:
    return page in pages_for(viewer)


@dataclass(frozen=True)
class ExportCheck:
    """Whether ``viewer`` may export the bundle of ``tenant`` (None: the whole log)."""

    passed: bool
    tenant: str | None
    reason: str


def check_export(viewer: Viewer, tenant: str | None) -> ExportCheck:
    if viewer.role not in (Role.AUDITOR, Role.TENANT, Role.ADMIN):
        return ExportCheck(False, tenant, f"the {viewer.role.value} role cannot export auditor bundles")
    if viewer.tenant is not None and tenant != viewer.tenant:
        what = "the whole log" if tenant is None else f"tenant {tenant!r}"
        return ExportCheck(False, tenant, f"{viewer.name} may export only tenant {viewer.tenant!r}, not {what}")
    return ExportCheck(True, tenant, "allowed")


def verify_export(viewer: Viewer, tenant: str | None) -> ExportCheck:
    """As :func:`check_export`, raising :class:`AccessDenied` when refused."""
    result = check_export(viewer, tenant)
    if not result.passed:
        raise AccessDenied(result.reason)
    return result


def export_tenants(viewer: Viewer, tenants: list[str]) -> list[str | None]:
    """The bundle scopes to offer: a scoped viewer its tenant only; else the whole log first."""
    if viewer.tenant is not None:
        return [viewer.tenant]
    return [None, *tenants]
