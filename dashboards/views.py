"""Each page's data, cached on the data's version: what pages call (and what the bench times).

Every function here takes the :class:`~dashboards.settings.Site`, reads the store's
:class:`~dashboards.reader.DataVersion` (re-read at most every ``version_ttl_s``), and
returns results from ``st.cache_data`` entries keyed on the site and on the version of
exactly the data they were computed from: a month's usage aggregate on that month's window
digests, revenue on the issued documents, the log check on the log size and checkpoint.
While ``collect`` writes the current month, every other month comes from the cache. A
page run reads through one short read-only connection (opened at its first cache miss,
closed when the run ends: :meth:`dashboards.reader.StoreAccess.session`).

The TTL bounds memory, not freshness: a changed version is a different cache key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import polars as pl
import streamlit as st

from audit import policy
from audit.keys import keyring_path
from billing.budgets import Budget
from dashboards import account, compliance, exports, finance, utilisation
from dashboards.auth import UserRecord, list_users, recent_failures
from dashboards.gate import Refusal, gate_for
from dashboards.reader import DataVersion, StoreAccess, data_version
from dashboards.settings import Site, file_version
from gpumeter.config import Config
from gpumeter.errors import GpumeterError
from gpumeter.months import Month
from metering.inventory import Tenant

TTL_S = 900
MAX_ENTRIES = 512


def version(site: Site) -> DataVersion:
    return data_version(site.access, max_age_s=site.settings.version_ttl_s)


def month_of(moment: datetime) -> str:
    return str(Month.of(moment))


# --------------------------------------------------------------------------- cached pieces
# The leading-underscore arguments are not hashed (st.cache_data); ``key`` names the site.


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _rollup(_access: StoreAccess, key: str, month: str, month_version: str) -> pl.DataFrame:
    with _access.read() as con:
        return utilisation.rollup(con, month)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _gaps(_access: StoreAccess, key: str, month: str, month_version: str, interval_ms: int) -> pl.DataFrame:
    with _access.read() as con:
        return utilisation.gaps(con, month, interval_ms)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _revenue_lines(_access: StoreAccess, key: str, billing_version: str) -> pl.DataFrame:
    with _access.read() as con:
        return finance.revenue_lines(con)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _revenue_split(
    _lines: pl.DataFrame, _usage: dict[str, pl.DataFrame], key: str, billing_version: str, months: tuple[str, ...]
) -> pl.DataFrame:
    return finance.revenue_by_site_lines(_lines, _usage)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _documents(_access: StoreAccess, key: str, billing_version: str, month: str | None) -> pl.DataFrame:
    with _access.read() as con:
        return finance.documents(con, month)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _invoices(_access: StoreAccess, key: str, billing_version: str, month: str) -> pl.DataFrame:
    with _access.read() as con:
        return finance.invoices_with_payment(con, month)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _unbilled(
    _access: StoreAccess, _config: Config, key: str, month: str, month_version: str, billing_version: str, rates: str
) -> finance.Unbilled:
    with _access.read() as con:
        return finance.unbilled(con, _config, month)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _judged(
    _access: StoreAccess, key: str, month: str, month_version: str, boundary: tuple[str, ...]
) -> compliance.BoundaryMonth:
    with _access.read() as con:
        return compliance.judge_month(con, month, policy.policy(boundary))


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _log_status(_access: StoreAccess, _config: Config, key: str, audit_version: str, ring: str) -> compliance.LogStatus:
    with _access.read() as con:
        return compliance.log_status(con, _config.audit.signing_key, _config.audit.origin)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _exports(_access: StoreAccess, key: str, audit_version: str, month: str | None) -> pl.DataFrame:
    with _access.read() as con:
        return exports.recent_exports(con, month)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _months_and_tenants(
    _access: StoreAccess, key: str, usage: str, billing: str, audit: str
) -> tuple[list[str], list[str]]:
    with _access.read() as con:
        return exports.months(con), exports.tenants(con)


# --------------------------------------------------------------------------- per page


def months(site: Site, now: datetime) -> list[str]:
    """Months to offer, newest first: every month with data, and the current one."""
    v = version(site)
    known, _ = _months_and_tenants(site.access, site.key, v.usage, v.billing, v.audit)
    return sorted({*known, month_of(now)}, reverse=True)


def latest_month(site: Site, now: datetime) -> str:
    """The newest metered month, else the newest month with any data, else the current one."""
    v = version(site)
    if v.usage_months:
        return v.usage_months[-1]
    known, _ = _months_and_tenants(site.access, site.key, v.usage, v.billing, v.audit)
    return known[0] if known else month_of(now)


def tenants(site: Site) -> list[str]:
    v = version(site)
    return _months_and_tenants(site.access, site.key, v.usage, v.billing, v.audit)[1]


def usage_rollups(site: Site, months: list[str] | None = None) -> dict[str, pl.DataFrame]:
    """Each month's usage aggregate (default: every metered month), oldest first."""
    v = version(site)
    wanted = v.usage_months if months is None else sorted(months)
    return {m: _rollup(site.access, site.key, m, v.month(m)) for m in wanted}


@dataclass(frozen=True)
class UtilisationData:
    month: str
    trend: pl.DataFrame  # every metered month's aggregate
    selected: pl.DataFrame  # the chosen month's aggregate
    gaps: pl.DataFrame


def utilisation_data(site: Site, month: str) -> UtilisationData:
    """The Utilisation page's data; its store reads share one connection."""
    with site.access.session():
        return _utilisation_data(site, month)


def _utilisation_data(site: Site, month: str) -> UtilisationData:
    v = version(site)
    rollups = usage_rollups(site)
    selected = rollups.get(month)
    if selected is None:
        selected = _rollup(site.access, site.key, month, v.month(month))
    gaps = _gaps(site.access, site.key, month, v.month(month), site.interval_ms)
    return UtilisationData(month, utilisation.combine(rollups.values()), selected, gaps)


@dataclass(frozen=True)
class FinanceData:
    revenue: pl.DataFrame  # signed lines, each with a site
    invoices_month: str | None
    invoices: pl.DataFrame
    credit_notes: pl.DataFrame
    unbilled: finance.Unbilled


def finance_data(site: Site, invoices_month: str | None, unbilled_month: str) -> FinanceData:
    """The Finance page's data; its store reads share one connection."""
    with site.access.session():
        return _finance_data(site, invoices_month, unbilled_month)


def _finance_data(site: Site, invoices_month: str | None, unbilled_month: str) -> FinanceData:
    v = version(site)
    lines = _revenue_lines(site.access, site.key, v.billing)
    invoiced = sorted(set(lines.get_column("month").to_list())) if lines.height else []
    usage = usage_rollups(site, invoiced)
    split = _revenue_split(lines, usage, site.key, v.billing, tuple(f"{m}={v.month(m)}" for m in invoiced))
    docs = _documents(site.access, site.key, v.billing, None)
    invoices = _invoices(site.access, site.key, v.billing, invoices_month or unbilled_month)
    unbilled = _unbilled(
        site.access,
        site.config,
        site.key,
        unbilled_month,
        v.month(unbilled_month),
        v.billing,
        file_version(site.config.billing.rates),
    )
    return FinanceData(
        revenue=split,
        invoices_month=invoices_month,
        invoices=invoices,
        credit_notes=docs.filter(pl.col("kind") == "credit_note"),
        unbilled=unbilled,
    )


def invoiced_months(site: Site) -> list[str]:
    """Periods with issued documents, newest first."""
    v = version(site)
    docs = _documents(site.access, site.key, v.billing, None)
    return sorted(set(docs.get_column("period").to_list()), reverse=True)


@dataclass(frozen=True)
class ComplianceData:
    boundary: compliance.BoundaryMonth
    log: compliance.LogStatus


def compliance_data(site: Site, month: str) -> ComplianceData:
    """The Compliance page's data; its store reads share one connection."""
    with site.access.session():
        return _compliance_data(site, month)


def _compliance_data(site: Site, month: str) -> ComplianceData:
    v = version(site)
    judged = _judged(site.access, site.key, month, v.month(month), tuple(site.config.audit.allowed_countries))
    ring = file_version(keyring_path(site.config.audit.signing_key))
    log = _log_status(site.access, site.config, site.key, v.audit, ring)
    return ComplianceData(judged, log)


@dataclass(frozen=True)
class AuditorData:
    months: list[str]
    tenants: list[str]
    exports: pl.DataFrame


def auditor_data(site: Site, month: str, now: datetime) -> AuditorData:
    """The Auditor page's data; its store reads share one connection."""
    with site.access.session():
        return _auditor_data(site, month, now)


def _auditor_data(site: Site, month: str, now: datetime) -> AuditorData:
    v = version(site)
    return AuditorData(months(site, now), tenants(site), _exports(site.access, site.key, v.audit, month))


@dataclass(frozen=True)
class AccessData:
    users: list[UserRecord]
    failures: list[tuple[datetime, str, str, str]]
    turned_away: list[Refusal]  # refused before any check, kept in this server's memory


def access_data(site: Site) -> AccessData:
    """Users and refused sign-ins are read fresh on every run (small, and security-relevant)."""
    with site.access.read() as con:
        users = list_users(con)
    return AccessData(users, recent_failures(site.access), gate_for(site.access.path).refusals())


# --------------------------------------------------------------------------- My account
# Every cached piece takes the tenant as a hashed argument: two tenants never share an entry.


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _account_months(_access: StoreAccess, key: str, tenant: str, usage: str, billing: str) -> list[str]:
    with _access.read() as con:
        return account.months(con, tenant)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _account_usage(_access: StoreAccess, key: str, tenant: str, month: str, month_version: str) -> pl.DataFrame:
    with _access.read() as con:
        return account.usage(con, tenant, month)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _account_documents(_access: StoreAccess, key: str, tenant: str, billing_version: str) -> pl.DataFrame:
    with _access.read() as con:
        return account.documents(con, tenant)


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _account_sovereignty(
    _access: StoreAccess, key: str, tenant: str, month: str, month_version: str, boundary: tuple[str, ...]
) -> compliance.BoundaryMonth:
    with _access.read() as con:
        return account.sovereignty(con, tenant, month, policy.policy(boundary))


@st.cache_data(ttl=TTL_S, max_entries=MAX_ENTRIES, show_spinner=False)
def _account_priced(
    _access: StoreAccess, _config: Config, key: str, tenant: str, month: str, month_version: str, rates: str
) -> tuple[Decimal | None, str | None]:
    """The month's usage priced like its invoice (EUR excl. VAT), or why it cannot be."""
    try:
        with _access.read() as con:
            return account.priced(account.focus(con, _config, tenant, month)), None
    except GpumeterError as exc:
        return None, exc.explain()


@dataclass(frozen=True)
class AccountData:
    tenant: Tenant
    month: str
    usage: pl.DataFrame  # the month's job-month rows
    documents: pl.DataFrame  # every month's
    sovereignty: compliance.BoundaryMonth
    budget: Budget | None
    alerts: pl.DataFrame  # the month's
    priced: Decimal | None
    priced_error: str | None
    contracts: account.Contracts


def account_months(site: Site, tenant: str, now: datetime) -> tuple[list[str], str]:
    """The tenant's months with data and the current one, newest first; and the one to open
    on: its newest month with data, else the current one."""
    v = version(site)
    known = _account_months(site.access, site.key, tenant, v.usage, v.billing)
    return sorted({*known, month_of(now)}, reverse=True), known[0] if known else month_of(now)


def account_data(site: Site, tenant: str, month: str) -> AccountData:
    """My account's data for ``tenant``; its store reads share one connection."""
    with site.access.session():
        v = version(site)
        with site.access.read() as con:  # small and not versioned: read on every run
            info = account.tenant_info(con, tenant)
            budget = account.budget(con, tenant)
            alerts = account.alerts(con, tenant, month)
            contracts = account.contracts(con, site.config, tenant, month)
        boundary = tuple(site.config.audit.allowed_countries)
        net, error = _account_priced(
            site.access,
            site.config,
            site.key,
            tenant,
            month,
            v.month(month),
            file_version(site.config.billing.rates),
        )
        return AccountData(
            tenant=info,
            month=month,
            usage=_account_usage(site.access, site.key, tenant, month, v.month(month)),
            documents=_account_documents(site.access, site.key, tenant, v.billing),
            sovereignty=_account_sovereignty(site.access, site.key, tenant, month, v.month(month), boundary),
            budget=budget,
            alerts=alerts,
            priced=net,
            priced_error=error,
            contracts=contracts,
        )


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False)
def _account_files(_access: StoreAccess, key: str, tenant: str, number: str) -> list[account.DocumentFile]:
    with _access.read() as con:
        return account.document_files(con, tenant, number)


def account_files(site: Site, tenant: str, number: str) -> list[account.DocumentFile]:
    """One of the tenant's issued documents as files (issued documents never change)."""
    return _account_files(site.access, site.key, tenant, number)


def clear() -> None:
    """Forget every cached result (tests and the bench)."""
    st.cache_data.clear()


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False)
def _invoice_pdf(_access: StoreAccess, key: str, number: str) -> finance.InvoiceFile:
    with _access.read() as con:
        return finance.invoice_pdf(con, number)


def invoice_pdf(site: Site, number: str) -> finance.InvoiceFile:
    """An issued document's PDF (issued documents never change, so it is cached by number)."""
    return _invoice_pdf(site.access, site.key, number)
