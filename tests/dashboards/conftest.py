"""Fixtures of the dashboard tests: a demo site (built once, copied per test), an empty
site, and the Streamlit app under ``AppTest`` signed in as any user."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from dashboards.settings import CONFIG_ENV, PASSPHRASE_ENV
from tests.dashboards.fixtures import PASSPHRASE, PASSWORD, build_demo, build_empty, copy_site

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"

OpenApp = Callable[..., AppTest]


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo-template") / "site")


@pytest.fixture
def demo_site(demo_template: Path, tmp_path: Path) -> Path:
    """A private copy of the demo site: its gpumeter.toml."""
    return copy_site(demo_template, tmp_path / "demo")


@pytest.fixture(scope="session")
def empty_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_empty(tmp_path_factory.mktemp("empty-template") / "site")


@pytest.fixture
def empty_site(empty_template: Path, tmp_path: Path) -> Path:
    """A private copy of a migrated store with users and no data: its gpumeter.toml."""
    return copy_site(empty_template, tmp_path / "empty")


@pytest.fixture
def open_app(monkeypatch: pytest.MonkeyPatch) -> OpenApp:
    """``open_app(config, user=None)``: the entrypoint under AppTest, signed in when a user is named
    (with a password; or, with ``identity``, as the OIDC identity ``st.user`` then holds)."""

    def run(
        config: Path,
        user: str | None = None,
        *,
        password: str = PASSWORD,
        signing: bool = True,
        identity: dict[str, Any] | None = None,
    ) -> AppTest:
        monkeypatch.setenv(CONFIG_ENV, str(config))
        if signing:
            monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
        else:
            monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
        at = AppTest.from_file(str(APP), default_timeout=60)
        if identity is not None:
            at.user = identity
        at.run()
        if user is not None:
            sign_in(at, user, password)
        return at

    return run


@dataclass
class Downloads:
    """What pages handed ``st.download_button``, seen by spies on Streamlit's
    ``MediaFileManager`` (every call goes through to the real one unchanged)."""

    files: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes of a static button
    deferred: dict[str, Callable[[], str]] = field(default_factory=dict)  # file name -> a click

    def click(self, file_name: str) -> str:
        """Run a deferred button's function as Streamlit does on a click: in another thread,
        outside any script run, through ``MediaFileManager.execute_deferred``."""
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(self.deferred[file_name]).result()


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> Downloads:
    seen = Downloads()
    real_add, real_add_deferred = MediaFileManager.add, MediaFileManager.add_deferred

    def add(self: MediaFileManager, data: Any, mimetype: str, coordinates: str, *args: Any, **kwargs: Any) -> str:
        name = kwargs.get("file_name", args[0] if args else None)
        if isinstance(data, bytes) and isinstance(name, str):
            seen.files[name] = data
        return real_add(self, data, mimetype, coordinates, *args, **kwargs)

    def add_deferred(self: MediaFileManager, *args: Any, **kwargs: Any) -> str:
        file_id = real_add_deferred(self, *args, **kwargs)
        seen.deferred[str(kwargs["file_name"])] = partial(self.execute_deferred, file_id)
        return file_id

    monkeypatch.setattr(MediaFileManager, "add", add)
    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    return seen


def sign_in(at: AppTest, name: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="sign-in-name").input(name)
    at.text_input(key="sign-in-password").input(password)
    at.button[0].click().run()
    return at


def assert_clean(at: AppTest) -> None:
    """No Python exception and no error line on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
