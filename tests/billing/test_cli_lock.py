"""The billing writers wait for the store like ``collect`` does (hardening row 9).

``invoice`` and ``stripe sync`` used to fail at once ("Could not set lock") while another
process held the store. Through the installed CLI, with a real second process holding the
DuckDB file: they wait (up to ``[store] write_wait_s``) and succeed once it lets go, or give
up after that bounded wait naming the holder's PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.billing.conftest import H100, Site
from tests.stripe_double import StripeDouble
from tests.stripe_double.documents import API_KEY

pytest_plugins = ["tests.stripe_double.fixtures"]

GPUMETER = str(Path(sys.executable).parent / "gpumeter")
INVOICE = ("invoice", "--month", "2026-10", "--finalize")
SYNC = ("stripe", "sync", "--month", "2026-10")

HOLD = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
sys.stdin.readline()  # until the test says so
con.close()
"""


@contextmanager
def held(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process with the store open read-write until the block ends (or it is released)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()


def start(site: Site, double: StripeDouble, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [GPUMETER, "--config", str(site.root / "gpumeter.toml"), *args],
        env={**os.environ, "STRIPE_API_KEY": API_KEY, "GPUMETER_STRIPE_API_BASE": double.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(site: Site, double: StripeDouble, *args: str) -> str:
    proc = start(site, double, *args)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return err


def set_write_wait(site: Site, seconds: int) -> None:
    cfg = site.root / "gpumeter.toml"
    cfg.write_text(cfg.read_text().replace("[store]\n", f"[store]\nwrite_wait_s = {seconds}\n", 1))


@pytest.fixture
def billed(site: Site) -> Site:
    site.add_job("j1", "acme")
    site.add_usage("j1", H100, 36000)
    site.con.close()
    return site


@pytest.mark.parametrize("command", [INVOICE, SYNC], ids=["invoice", "stripe-sync"])
def test_a_writer_waits_for_the_holder_then_succeeds(
    billed: Site, stripe_double: StripeDouble, command: tuple[str, ...]
) -> None:
    if command == SYNC:
        run(billed, stripe_double, *INVOICE)  # something to push
    with held(billed.config.store.database) as holder:
        proc = start(billed, stripe_double, *command)
        time.sleep(3)
        assert proc.poll() is None, f"gave up instead of waiting:\n{proc.communicate()[1]}"
        release(holder)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "held by" not in err
    assert (billed.out / "2026-10" / "GM-2026-000001.pdf").exists()
    if command == SYNC:
        assert "1 created" in err and len(stripe_double.objects("invoices")) == 1


@pytest.mark.parametrize("command", [INVOICE, SYNC], ids=["invoice", "stripe-sync"])
def test_a_writer_gives_up_after_the_bounded_wait_naming_the_holder(
    billed: Site, stripe_double: StripeDouble, command: tuple[str, ...]
) -> None:
    if command == SYNC:
        run(billed, stripe_double, *INVOICE)
    issued = sorted(p.name for p in (billed.out / "2026-10").glob("*")) if command == SYNC else []
    set_write_wait(billed, 2)
    with held(billed.config.store.database) as holder:
        began = time.monotonic()
        proc = start(billed, stripe_double, *command)
        _, err = proc.communicate(timeout=60)
        waited = time.monotonic() - began
    assert proc.returncode == 1 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert f"is held by another process (PID {holder.pid}, " in lines[0] and "waited 2 s" in lines[0]
    assert 2 <= waited < 30
    # nothing was issued or pushed
    assert sorted(p.name for p in (billed.out / "2026-10").glob("*")) == issued
    assert stripe_double.requests() == []
