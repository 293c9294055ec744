"""End to end in a real browser: ``gpumeter dashboard`` serving the demo site on 127.0.0.1,
Debian's Chromium driven by Playwright. An auditor signs in, downloads a bundle, and
``gpumeter audit verify`` accepts it; then an admin visits every page. A screenshot of
each page is saved under the test's tmp dir (``screenshots/``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from dashboards.settings import PASSPHRASE_ENV
from gpumeter import store
from gpumeter.config import load_config
from testing import servers
from tests.dashboards.fixtures import GPUMETER, MONTH, PASSPHRASE, PASSWORD, SCOPED_TENANT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def serving(config: Path, log: Path, *, cwd: Path | None = None, port: int | None = None) -> Iterator[str]:
    """``gpumeter dashboard`` for ``config`` on 127.0.0.1 (``port``, or a free one), started in
    ``cwd``, where Streamlit looks for ``.streamlit/secrets.toml``; yields its URL."""
    port = port or servers.free_port()
    argv = [GPUMETER, "dashboard", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)]
    env = {**os.environ, PASSPHRASE_ENV: PASSPHRASE}
    with servers.serve(argv, "/_stcore/health", port, log, env=env, cwd=cwd) as url:
        yield url
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert PASSWORD not in log.read_text()


@pytest.fixture
def dashboard(demo_site: Path, tmp_path: Path) -> Iterator[str]:
    """``gpumeter dashboard`` on the demo site; yields its URL."""
    with serving(demo_site, tmp_path / "dashboard.log") as url:
        yield url


@contextlib.contextmanager
def chromium(profile: Path, **options: Any) -> Iterator[BrowserContext]:
    """Debian's Chromium, headless, driven by Playwright, with its profile in ``profile``."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, **options
        )
        try:
            yield context
        finally:
            context.close()


def settle(page: Page) -> None:
    """Wait until the script run is over and nothing is still loading."""
    page.wait_for_timeout(300)
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1, timeout=60_000)
    expect(page.get_by_test_id("stSkeleton")).to_have_count(0, timeout=60_000)
    page.wait_for_timeout(700)  # charts and tables draw after the run


def shoot(page: Page, folder: Path, name: str) -> Path:
    settle(page)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, name: str) -> None:
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_auditor_downloads_a_bundle_that_verifies(dashboard: str, demo_site: Path, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    bundle = tmp_path / "bundle.zip"
    with chromium(
        tmp_path / "chromium-profile", accept_downloads=True, viewport={"width": 1440, "height": 2200}
    ) as browser:
        page = browser.new_page()
        page.goto(dashboard)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)
        shoot(page, shots, "0-sign-in")

        sign_in(page, "aud-laguna")
        expect(page.get_by_role("heading", name="Auditor bundles")).to_be_visible(timeout=60_000)
        for other in ("Finance", "Utilisation", "Compliance", "Access"):  # a scoped auditor has one page
            expect(page.get_by_role("link", name=other)).to_have_count(0)
        expect(page.get_by_text(f"tenant {SCOPED_TENANT}").first).to_be_visible()
        shoot(page, shots, "1-auditor-scoped")
        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("button", name="Build and download bundle").click()
        assert download.value.suggested_filename == f"gpumeter-audit-{MONTH}-{SCOPED_TENANT}.zip"
        download.value.save_as(bundle)
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)

        # A page's URL never runs the page without the entrypoint's sign-in and role check.
        page.goto(f"{dashboard}/finance")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Page not found")).to_be_visible()
        expect(page.get_by_role("heading", name="Finance")).to_have_count(0)
        page.get_by_role("dialog").get_by_role("button", name="Close").click()

        sign_in(page, "ada")
        expect(page.get_by_role("heading", name="Finance")).to_be_visible(timeout=60_000)
        shoot(page, shots, "2-finance")
        for n, (link, heading) in enumerate(
            [
                ("Utilisation", "Utilisation"),
                ("Compliance", "Compliance"),
                ("Auditor", "Auditor bundles"),
                ("Access", "Access"),
            ],
            start=3,
        ):
            page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click()
            expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=60_000)
            shoot(page, shots, f"{n}-{link.lower()}")
        expect(page.get_by_text("No refused sign-in.")).to_be_visible()  # tables draw on a canvas

    verified = subprocess.run(
        [GPUMETER, "audit", "verify", str(bundle), "--config", str(demo_site)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"OK {bundle}: ") and f"{MONTH} (tenant {SCOPED_TENANT})" in verified.stdout
    con = store.connect(load_config(demo_site).store.database, read_only=True, wait_s=30)
    try:
        made = con.execute("SELECT tenant, made_by FROM audit_exports WHERE made_by LIKE 'dashboard:%'").fetchall()
    finally:
        con.close()
    assert made == [(SCOPED_TENANT, "dashboard:aud-laguna")]
    assert sorted(p.name for p in shots.iterdir()) == [
        "0-sign-in.png",
        "1-auditor-scoped.png",
        "2-finance.png",
        "3-utilisation.png",
        "4-compliance.png",
        "5-auditor.png",
        "6-access.png",
    ]
