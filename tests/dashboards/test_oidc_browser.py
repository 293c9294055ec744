"""OIDC sign-in end to end: ``gpumeter dashboard`` with ``[dashboard] oidc = true`` behind a
local OpenID provider test double (tests/oidc_double.py), in Debian's headless Chromium.

Streamlit's ``st.login`` (Authlib) does the real authorization code flow with PKCE: the
browser goes to the provider's authorize endpoint and back with a code, the server fetches
the discovery document, exchanges the code, checks the RS256 ID token against the JWKS,
and the dashboards map the verified e-mail to a user. An identity whose e-mail is not
verified, or who is no dashboard user, is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from gpumeter import store
from gpumeter.config import load_config
from testing import servers
from tests.dashboards.fixtures import OIDC_USER, build_oidc
from tests.dashboards.test_browser import chromium, serving, settle
from tests.oidc_double import OidcDouble

pytestmark = pytest.mark.browser

CLIENT_ID = "gpumeter-dashboards"
CLIENT_SECRET = "a client secret only the test double and the dashboards know"


def secrets_toml(redirect_uri: str, metadata_url: str) -> str:
    return f"""[auth]
redirect_uri = "{redirect_uri}"
cookie_secret = "a cookie secret of the oidc browser test"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
server_metadata_url = "{metadata_url}"
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "chromium-profile", viewport={"width": 1280, "height": 1400}) as context:
        yield context


def sign_in_with_provider(page: Page) -> None:
    """From the sign-in page, through the provider's authorize endpoint and back."""
    button = page.get_by_role("button", name="Sign in with your identity provider")
    expect(button).to_be_visible(timeout=60_000)
    with page.expect_navigation(timeout=60_000):
        button.click()
    settle(page)


def sign_out(page: Page) -> None:
    """``st.logout``: Streamlit's /auth/logout clears the identity cookie and comes back."""
    with page.expect_navigation(timeout=60_000):
        page.get_by_role("button", name="Sign out").click()
    settle(page)


def test_oidc_sign_in_through_a_local_provider(tmp_path: Path, browser: BrowserContext) -> None:
    config = build_oidc(tmp_path / "site")
    workdir = tmp_path / "workdir"  # where `gpumeter dashboard` starts, and Streamlit finds its secrets
    (workdir / ".streamlit").mkdir(parents=True)
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    with OidcDouble(CLIENT_ID, CLIENT_SECRET, f"{url}/oauth2callback") as idp:
        (workdir / ".streamlit" / "secrets.toml").write_text(
            secrets_toml(f"{url}/oauth2callback", idp.metadata_url), encoding="utf-8"
        )
        with serving(config, tmp_path / "dashboard.log", cwd=workdir, port=port) as served:
            assert served == url
            page = browser.new_page()
            page.goto(url)

            # An identity whose e-mail the provider does not vouch for is refused.
            idp.sign_in_as("sub-mallory", email=OIDC_USER, email_verified=False, name="Not Ops")
            sign_in_with_provider(page)
            expect(page.get_by_text(f"{OIDC_USER} is not a verified e-mail address")).to_be_visible(timeout=60_000)
            expect(page.get_by_role("heading", name="Compliance")).to_have_count(0)
            sign_out(page)

            # A verified identity that is no dashboard user is refused too.
            idp.sign_in_as("sub-stranger", email="stranger@example.eu", email_verified=True)
            sign_in_with_provider(page)
            expect(page.get_by_text("stranger@example.eu is not a dashboard user")).to_be_visible(timeout=60_000)
            sign_out(page)

            # The verified user signs in and gets the role's pages.
            idp.sign_in_as("sub-ops", email=OIDC_USER, email_verified=True, name="Ops")
            sign_in_with_provider(page)
            expect(page.get_by_role("heading", name="Compliance")).to_be_visible(timeout=60_000)
            expect(page.get_by_text(f"Signed in as {OIDC_USER}")).to_be_visible()
            page.screenshot(path=str(tmp_path / "oidc-signed-in.png"), full_page=True)

        token_exchanges = [path for method, path in idp.log if (method, path) == ("POST", "/token")]
        assert len(token_exchanges) == 3  # one real code exchange per sign-in
        assert ("GET", "/jwks") in idp.log
    con = store.connect(load_config(config).store.database, read_only=True)
    try:
        refused = con.execute("SELECT name, reason FROM dashboard_login_failures ORDER BY id").fetchall()
        signed_in = con.execute("SELECT last_login_at IS NOT NULL FROM dashboard_users WHERE name = ?", [OIDC_USER])
        assert refused == [(OIDC_USER, "oidc_unverified"), ("stranger@example.eu", "oidc_unknown")]
        assert signed_in.fetchall() == [(True,)]
    finally:
        con.close()
