"""My account: the tenant reader over the real demo store (eight tenants, two of them with
budgets and alerts, one with a credit note), each query checked against plain SQL and
against the unscoped data filtered by hand; then the page under AppTest for two tenant
users one after the other in one process (the cache must keep them apart), with every file
the page hands out searched for the other tenants."""

from __future__ import annotations

import hashlib
import tomllib
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from audit import policy
from billing.focus import usage_focus
from dashboards import account
from dashboards.auth import add_user
from dashboards.compliance import judge_month
from dashboards.errors import AccessDenied, UnknownTenant
from gpumeter import store
from gpumeter.config import load_config
from tests.dashboards.conftest import Downloads, OpenApp, assert_clean
from tests.dashboards.fixtures import BUDGETS, CREATED, MONTH, OTHER_TENANT, PASSWORD, SCOPED_TENANT
from tests.tenant_leaks import leaks, others_of

TWO = (SCOPED_TENANT, OTHER_TENANT)


@pytest.fixture
def con(demo_site: Path) -> duckdb.DuckDBPyConnection:
    connection = store.connect(load_config(demo_site).store.database, read_only=True)
    yield connection
    connection.close()


def _window(con: duckdb.DuckDBPyConnection, select: str, tenant: str) -> list[tuple[object, ...]]:
    """``SELECT select`` over the month's usage of ``tenant``'s jobs (the independent answer)."""
    scope = (
        " FROM usage JOIN jobs USING (job_id) WHERE tenant = ?"
        " AND window_start >= '2026-10-01T00:00:00Z' AND window_start < '2026-11-01T00:00:00Z'"
    )
    return con.execute("SELECT " + select + scope, [tenant]).fetchall()


@pytest.mark.parametrize("tenant", TWO)
def test_usage_is_the_tenants_own_and_all_of_it(tenant: str, con: duckdb.DuckDBPyConnection) -> None:
    rows = account.usage(con, tenant, MONTH)
    (expected_jobs, gpu_ns, busy_ns) = _window(con, "list(DISTINCT job_id), sum(gpu_ns), sum(busy_ns)", tenant)[0]
    assert set(rows["tenant"]) == {tenant}
    assert set(rows["job_id"]) == set(expected_jobs)
    assert sum(rows["gpu_seconds"], Decimal(0)) == Decimal(gpu_ns) / 10**9
    assert sum(rows["busy_gpu_seconds"], Decimal(0)) == Decimal(busy_ns) / 10**9
    assert set(rows["month"]) == {MONTH}
    assert account.usage(con, tenant).equals(rows)  # every month of the demo is October
    by_project = account.usage_by(rows, "project")
    projects = con.execute("SELECT DISTINCT project FROM jobs WHERE tenant = ?", [tenant]).fetchall()
    assert set(by_project["project"]) <= {p for (p,) in projects}
    assert by_project["held_gpu_hours"].sum() == pytest.approx(gpu_ns / 3.6e12)
    assert account.usage_by(rows, "job_id")["jobs"].to_list() == [1] * len(expected_jobs)
    assert account.months(con, tenant) == [MONTH]


@pytest.mark.parametrize("tenant", TWO)
def test_documents_budget_and_alerts_are_the_tenants_own(tenant: str, con: duckdb.DuckDBPyConnection) -> None:
    docs = account.documents(con, tenant)
    expected = con.execute("SELECT number FROM billing_documents WHERE tenant = ? ORDER BY number", [tenant]).fetchall()
    assert sorted(docs["number"]) == [n for (n,) in expected] and set(docs["tenant"]) == {tenant}
    assert account.documents(con, tenant, "2026-09").height == 0
    if tenant == SCOPED_TENANT:  # the demo fixture withdrew one of its jobs: a credit note
        assert sorted(docs["kind"]) == ["credit_note", "invoice"]
    monthly, thresholds = BUDGETS[tenant]
    budget = account.budget(con, tenant)
    assert budget is not None and (budget.tenant, budget.monthly, budget.thresholds) == (
        tenant,
        Decimal(monthly),
        thresholds,
    )
    fired = account.alerts(con, tenant, MONTH)
    expected_alerts = con.execute(
        "SELECT threshold_percent FROM budget_alerts WHERE tenant = ? ORDER BY 1", [tenant]
    ).fetchall()
    assert fired["threshold_percent"].to_list() == [t for (t,) in expected_alerts] and fired.height > 0
    assert set(fired["tenant"]) == {tenant}
    assert account.budget(con, "prairie-ml") is None  # a tenant without a budget has none


@pytest.mark.parametrize("tenant", TWO)
def test_a_document_of_another_tenant_cannot_be_fetched(tenant: str, con: duckdb.DuckDBPyConnection) -> None:
    own = con.execute(
        "SELECT number, pdf_sha256, xml_sha256, json_sha256, ubl_sha256 FROM billing_documents"
        " LEFT JOIN billing_ubl_documents USING (number) WHERE tenant = ?",
        [tenant],
    ).fetchall()
    for number, pdf_sha, xml_sha, json_sha, ubl_sha in own:
        files = account.document_files(con, tenant, number)
        names = [f"{number}.pdf", f"{number}.factur-x.xml", f"{number}.json"]
        hashes = [pdf_sha, xml_sha, json_sha]
        if ubl_sha is not None:  # a Peppol tenant's document also has its UBL twin
            names, hashes = [*names, f"{number}.ubl.xml"], [*hashes, ubl_sha]
        assert [f.file_name for f in files] == names
        assert [hashlib.sha256(f.data).hexdigest() for f in files] == hashes
    foreign = con.execute("SELECT number FROM billing_documents WHERE tenant <> ?", [tenant]).fetchall()
    for (number,) in foreign:
        with pytest.raises(AccessDenied, match=f"no issued document {number} for tenant"):
            account.document_files(con, tenant, number)


def test_a_peppol_tenants_documents_include_their_ubl_twin(con: duckdb.DuckDBPyConnection) -> None:
    peppol = con.execute(
        "SELECT tenant, number, ubl_sha256 FROM billing_documents JOIN billing_ubl_documents USING (number)"
        " ORDER BY number LIMIT 1"
    ).fetchall()
    assert peppol, "the demo issues Peppol documents to its Belgian tenants"
    [(tenant, number, ubl_sha)] = peppol
    [ubl] = [f for f in account.document_files(con, tenant, number) if f.file_name.endswith(".ubl.xml")]
    assert hashlib.sha256(ubl.data).hexdigest() == ubl_sha and b"urn:oasis:names:specification:ubl" in ubl.data
    others = con.execute("SELECT DISTINCT tenant FROM billing_documents WHERE tenant <> ?", [tenant]).fetchall()
    for (other,) in others:
        with pytest.raises(AccessDenied):
            account.document_files(con, other, number)


@pytest.mark.parametrize("tenant", TWO)
def test_sovereignty_and_focus_are_the_unscoped_rows_of_the_tenant(
    tenant: str, con: duckdb.DuckDBPyConnection, demo_site: Path
) -> None:
    cfg = load_config(demo_site)
    boundary = policy.policy(cfg.audit.allowed_countries)
    scoped = account.sovereignty(con, tenant, MONTH, boundary)
    everyone = judge_month(con, MONTH, boundary)
    assert_frame_equal(scoped.jobs, everyone.jobs.filter(pl.col("tenant") == tenant))
    assert_frame_equal(scoped.violations, everyone.violations.filter(pl.col("tenant") == tenant))
    assert scoped.job_count > 0 and set(scoped.jobs["tenant"]) == {tenant}
    rows = account.focus(con, cfg, tenant, MONTH)
    assert_frame_equal(rows, usage_focus(con, cfg, MONTH).filter(pl.col("BillingAccountId") == tenant))
    invoiced = con.execute(
        "SELECT net FROM billing_documents WHERE tenant = ? AND kind = 'invoice' ORDER BY seq DESC LIMIT 1", [tenant]
    ).fetchall()[0][0]
    if tenant != SCOPED_TENANT:  # its usage was not withdrawn after invoicing: the net is the invoice's
        assert account.priced(rows) == invoiced


def test_the_reader_refuses_rows_of_another_tenant_and_unknown_tenants(con: duckdb.DuckDBPyConnection) -> None:
    mixed = pl.DataFrame({"tenant": [SCOPED_TENANT, OTHER_TENANT]})
    with pytest.raises(AccessDenied, match="returned another tenant's rows"):
        account._only(mixed, SCOPED_TENANT)
    with pytest.raises(AccessDenied):
        account._only(pl.DataFrame({"tenant": [None]}, schema={"tenant": pl.String}), SCOPED_TENANT)
    with pytest.raises(UnknownTenant, match=r"no such tenant in tenants\.csv"):
        account.tenant_info(con, "nobody-inc")
    assert account.tenant_info(con, SCOPED_TENANT).legal_name == "Laguna Lab S.r.l."
    assert account.usage(con, "nobody-inc", MONTH).height == 0 and account.months(con, "nobody-inc") == []


def test_reserved_capacity_and_credits_left_are_the_tenants_own(
    demo_site: Path, con: duckdb.DuckDBPyConnection
) -> None:
    """The demo's contracts.toml: one tenant reserves, another holds a promotional and a
    prepaid credit; everyone else has none. Checked against the issued rows by plain SQL."""
    cfg = load_config(demo_site)
    terms = tomllib.loads((demo_site.parent / "contracts.toml").read_text())
    [reservation] = terms["reservation"]
    reserved = reservation["tenant"]
    credits = {c["id"]: c for c in terms["credit"]}
    [credit_tenant] = {c["tenant"] for c in credits.values()}
    mine = account.contracts(con, cfg, reserved, MONTH)
    assert mine.reservations is not None and set(mine.reservations["tenant"]) == {reserved}
    expected = con.execute(
        "SELECT sum(gpu_hours), sum(used_gpu_hours) FROM billing_document_lines JOIN billing_documents"
        " USING (number) WHERE tenant = ? AND billing_documents.kind = 'invoice'"
        " AND billing_document_lines.kind = 'reservation' AND period = ?",
        [reserved, MONTH],
    ).fetchone()
    assert expected is not None and expected[0] is not None
    assert (mine.reservations["included_gpu_hours"].sum(), mine.reservations["used_gpu_hours"].sum()) == expected
    theirs = account.contracts(con, cfg, credit_tenant, MONTH)
    assert theirs.reservations is None and theirs.credits is not None
    assert set(theirs.credits["credit"]) == set(credits)
    for row in theirs.credits.iter_rows(named=True):
        moved = dict(
            con.execute(
                "SELECT c.role || '/' || d.kind, sum(c.amount) FROM billing_document_credits AS c JOIN"
                " billing_documents AS d USING (number) WHERE c.credit = ? GROUP BY ALL",
                [row["credit"]],
            ).fetchall()
        )
        drawn = sum((moved.get(f"{r}/invoice", Decimal(0)) for r in ("allowance", "paid")), Decimal(0))
        back = sum((moved.get(f"{r}/credit_note", Decimal(0)) for r in ("allowance", "paid")), Decimal(0))
        expired = moved.get("expired/invoice", Decimal(0)) + moved.get("expired/credit_note", Decimal(0))
        granted = Decimal(credits[row["credit"]]["eur"])
        assert row["granted_eur"] == granted and row["left_eur"] == granted - drawn + back - expired
    assert drawn + expired > 0  # the demo month drew on (or expired) the credits: the check is not vacuous
    nobody = next(t for t in (SCOPED_TENANT, OTHER_TENANT, "prairie-ml") if t not in (reserved, credit_tenant))
    none = account.contracts(con, cfg, nobody, MONTH)
    assert none.note == account.NO_CONTRACTS and none.reservations is None and none.credits is None


def test_a_store_with_users_migrates_to_the_tenant_role(tmp_path: Path) -> None:
    con = store.connect(tmp_path / "old.duckdb")
    try:
        for version, name, sql in store.migrations():
            if version < 15:
                con.execute(sql)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
        con.execute(
            "INSERT INTO dashboard_users VALUES ('aud', 'auditor', 'acme', 'h', ?, NULL, ?)", [CREATED, CREATED]
        )
        with pytest.raises(duckdb.ConstraintException):
            con.execute(
                "INSERT INTO dashboard_users VALUES ('t', 'tenant', 'acme', 'h', ?, NULL, ?)", [CREATED, CREATED]
            )
        assert store.migrate(con) == [v for v, _, _ in store.migrations() if v >= 15]
        assert con.execute("SELECT name, role, tenant FROM dashboard_users").fetchall() == [("aud", "auditor", "acme")]
        con.execute("INSERT INTO dashboard_users VALUES ('t', 'tenant', 'acme', 'h', ?, NULL, ?)", [CREATED, CREATED])
        with pytest.raises(duckdb.ConstraintException):  # a tenant user without its tenant
            con.execute("INSERT INTO dashboard_users VALUES ('u', 'tenant', NULL, 'h', ?, NULL, ?)", [CREATED, CREATED])
    finally:
        con.close()


def test_two_tenant_users_each_see_only_their_own_page_and_files(
    demo_site: Path, open_app: OpenApp, downloads: Downloads
) -> None:
    cfg = load_config(demo_site)
    with store.connect(cfg.store.database) as con:
        add_user(con, "ten-armor", "tenant", OTHER_TENANT, PASSWORD, at=CREATED)
        others = {t: others_of(con, t) for t in TWO}
        numbers = {
            t: [n for (n,) in con.execute("SELECT number FROM billing_documents WHERE tenant = ?", [t]).fetchall()]
            for t in TWO
        }
    for user, tenant in (("ten-laguna", SCOPED_TENANT), ("ten-armor", OTHER_TENANT)):
        downloads.files.clear()
        at = open_app(demo_site, user)
        assert_clean(at)
        assert [t.value for t in at.title] == ["My account"]
        assert at.selectbox(key="account-month").value == MONTH
        assert any(f"tenant {tenant}" in c.value for c in at.caption)
        for number in numbers[tenant]:  # every document of its own, in each of its formats
            at.selectbox(key="account-document").select(number).run()
            assert_clean(at)
        assert sorted(at.selectbox(key="account-document").options) == sorted(numbers[tenant])
        files = dict(downloads.files)
        for number in numbers[tenant]:
            assert {f"{number}.pdf", f"{number}.factur-x.xml", f"{number}.json"} <= set(files)
        assert sum(name.endswith(".csv") for name in files) >= 6  # usage x3 + rows, alerts, documents, verdicts…
        found = [hit for name, data in files.items() for hit in leaks(others[tenant], name, data)]
        assert found == []
        bundle = downloads.click(f"gpumeter-audit-{MONTH}-{tenant}.zip")
        assert bundle.endswith(".zip")  # built and stored (its bytes are searched in the Chromium test)
    with store.connect(cfg.store.database, read_only=True) as con:
        made = con.execute(
            "SELECT tenant, made_by FROM audit_exports WHERE made_by <> 'demo' ORDER BY made_by"
        ).fetchall()
    assert made == [(OTHER_TENANT, "dashboard:ten-armor"), (SCOPED_TENANT, "dashboard:ten-laguna")]


def test_a_tenant_user_whose_tenant_left_tenants_csv_sees_one_line(demo_site: Path, open_app: OpenApp) -> None:
    cfg = load_config(demo_site)
    with store.connect(cfg.store.database) as con:
        con.execute("DELETE FROM tenants WHERE tenant = ?", [SCOPED_TENANT])
    at = open_app(demo_site, "ten-laguna")
    assert not at.exception
    (error,) = at.error
    assert "no such tenant in tenants.csv" in error.value and SCOPED_TENANT in error.value
    assert not at.dataframe and not at.get("download_button")
