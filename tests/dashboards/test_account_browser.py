"""My account in a real browser: ``gpumeter dashboard`` on the demo site, Debian's Chromium.
A tenant user signs in, has exactly one page, and downloads every file the page offers —
each table's CSV, each of its documents as PDF, Factur-X XML and JSON, its auditor bundle —
and none of them names another tenant, its jobs, projects or documents."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from gpumeter import store
from gpumeter.config import load_config
from tests.dashboards.fixtures import MONTH, SCOPED_TENANT
from tests.dashboards.test_browser import chromium, serving, settle, shoot, sign_in
from tests.tenant_leaks import leaks, others_of

pytestmark = pytest.mark.browser


def download(page: Page, label: str, folder: Path) -> Path:
    """Click a download button once the page's script run is over (a click that lands while
    Streamlit redraws the page can hit a button being replaced: seen once under heavy load)."""
    settle(page)
    button = page.get_by_role("button", name=label, exact=True)
    expect(button).to_be_enabled(timeout=60_000)
    with page.expect_download(timeout=120_000) as started:
        button.click()
    target = folder / started.value.suggested_filename
    started.value.save_as(target)
    return target


def test_a_tenant_user_downloads_only_its_own_data(demo_site: Path, tmp_path: Path) -> None:
    with store.connect(load_config(demo_site).store.database, read_only=True) as con:
        others = others_of(con, SCOPED_TENANT)
        numbers = [
            n
            for (n,) in con.execute(
                "SELECT number FROM billing_documents WHERE tenant = ? ORDER BY number", [SCOPED_TENANT]
            ).fetchall()
        ]
    got = tmp_path / "downloads"
    got.mkdir()
    with (
        serving(demo_site, tmp_path / "dashboard.log") as url,
        chromium(tmp_path / "profile", accept_downloads=True, viewport={"width": 1440, "height": 3000}) as browser,
    ):
        page = browser.new_page()
        page.goto(url)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)
        sign_in(page, "ten-laguna")
        expect(page.get_by_role("heading", name="My account")).to_be_visible(timeout=60_000)
        settle(page)
        for other in ("Finance", "Utilisation", "Compliance", "Auditor", "Access"):
            expect(page.get_by_role("link", name=other)).to_have_count(0)
        shoot(page, tmp_path, "account")

        tables = [f"usage {MONTH} by {by}" for by in ("project", "job_id", "gpu_model")]
        for tab, table in zip(("By project", "By job", "By GPU model"), tables, strict=True):
            page.get_by_role("tab", name=tab).click()
            download(page, f"Download {table} (CSV)", got)
        page.get_by_text("Every job-month row").click()
        for table in (
            f"usage {MONTH}",
            f"budget alerts {MONTH}",
            "invoices and credit notes",
            f"sovereignty findings {MONTH}",
            f"sovereignty verdicts {MONTH}",
        ):
            download(page, f"Download {table} (CSV)", got)
        for number in numbers:
            page.get_by_test_id("stSelectbox").filter(has_text="Document").click()
            page.get_by_role("option", name=number).click()
            settle(page)
            for suffix in ("pdf", "factur-x.xml", "json"):
                download(page, f"Download {number}.{suffix}", got)
        download(page, "Build and download my bundle", got)
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)

    names = sorted(p.name for p in got.iterdir())
    assert len(names) == 8 + 3 * len(numbers) + 1, names
    assert f"gpumeter-audit-{MONTH}-{SCOPED_TENANT}.zip" in names
    assert [hit for p in sorted(got.iterdir()) for hit in leaks(others, p.name, p.read_bytes())] == []
    jobs = (got / f"usage-{MONTH}.csv").read_text(encoding="utf-8")
    assert SCOPED_TENANT in jobs and "nlp-it" in jobs  # its own rows are there
