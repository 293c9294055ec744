"""Pytest fixtures for the Stripe tests; load with ``pytest_plugins = ["tests.stripe_double.fixtures"]``.

- ``stripe_double``: a fresh Stripe test double per test, on a free 127.0.0.1 port;
- ``stripe_client``: the real ``stripe`` SDK pointed at it over HTTP;
- ``stripe_store``: an in-memory store, every migration applied, with the test tenants.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest
import stripe

from gpumeter import store

from .documents import add_tenants, make_client
from .server import StripeDouble


@pytest.fixture
def stripe_double() -> Iterator[StripeDouble]:
    with StripeDouble() as double:
        yield double


@pytest.fixture
def stripe_client(stripe_double: StripeDouble) -> stripe.StripeClient:
    return make_client(stripe_double)


@pytest.fixture
def stripe_store() -> Iterator[duckdb.DuckDBPyConnection]:
    con = store.memory()
    add_tenants(con)
    yield con
    con.close()
