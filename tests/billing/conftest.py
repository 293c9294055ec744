"""A billing site on disk: gpumeter.toml, rates.toml, and a real DuckDB store.

Usage is inserted into the real ``usage``, ``jobs``, ``tenants``, ``nodes`` and
``collected_windows`` tables, and priced through ``metering.report.billable_usage`` like in
production. The first usage of a month marks every hour of that month collected, as a
``collect`` over the whole month would: only a fully metered month can be issued.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from gpumeter.config import Config, load_config
from gpumeter.months import Month
from metering.einvoice import FACTURX
from metering.inventory import Tenant
from testing.stores import RATES, SITE_CONFIG, add_tenants, add_usage, mark_collected, new_store, write_site

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
A30 = "NVIDIA A30"

# tenant, legal_name, country, vat_id, address
TENANTS = [
    ("acme", "Acme Robotique SA", "FR", "FR44732829320", "5 avenue de la Gare, 69002 Lyon"),
    ("berlin", "Berlin Vision GmbH", "DE", "DE136695976", "Torstrasse 1, 10119 Berlin"),
    ("nyc", "Hudson Models Inc.", "US", "", "1 Broadway, New York NY 10004"),
]


@dataclass
class Site:
    root: Path
    config: Config
    con: duckdb.DuckDBPyConnection
    _uuid: Iterator[int] = field(default_factory=itertools.count)
    _metered: set[Month] = field(default_factory=set)

    @property
    def out(self) -> Path:
        return self.config.billing.output

    def write_rates(self, text: str) -> None:
        (self.root / "rates.toml").write_text(text, encoding="utf-8")

    def add_tenant(
        self,
        tenant: str,
        legal_name: str,
        country: str,
        vat_id: str,
        address: str | None,
        *,
        einvoice: str = FACTURX,
        peppol_id: str | None = None,
    ) -> None:
        add_tenants(self.con, [Tenant(tenant, legal_name, country, vat_id, None, address, None, einvoice, peppol_id)])

    def add_job(self, job: str, tenant: str, project: str = "proj", job_class: str = "on_demand") -> None:
        self.con.execute(
            "INSERT INTO jobs (job_id, tenant, project, data_locations, job_class) VALUES (?, ?, ?, [], ?)",
            [job, tenant, project, job_class],
        )

    def write_contracts(self, text: str) -> None:
        """contracts.toml beside rates.toml, named by ``[billing] contracts``."""
        (self.root / "contracts.toml").write_text(text, encoding="utf-8")
        if self.config.billing.contracts is None:
            config = (self.root / "gpumeter.toml").read_text(encoding="utf-8")
            config = config.replace('rates = "rates.toml"', 'rates = "rates.toml"\ncontracts = "contracts.toml"', 1)
            (self.root / "gpumeter.toml").write_text(config, encoding="utf-8")
            self.config = load_config(self.root / "gpumeter.toml")

    def add_usage(
        self,
        job: str,
        model: str,
        seconds: Decimal | int | str,  # never a float: test quantities are exact
        *,
        profile: str | None = None,
        host: str = "par1-gpu01",
        window: str = "2026-10-05T10:00:00",
        energy_uj: int = 0,
    ) -> None:
        """One usage row (its own GPU UUID) of ``seconds`` held GPU time, exact to the ns."""
        ns = int(Decimal(seconds) * 1_000_000_000)
        ws = datetime.fromisoformat(window).replace(tzinfo=UTC)
        self.meter_month(Month.of(ws))
        mark_collected(self.con, [(ws, 1, "test")])
        n = next(self._uuid)
        add_usage(
            self.con,
            [(ws, job, f"GPU-{n:08d}", "1" if profile else "", profile, model, [host], ns, ns // 2, energy_uj)],
        )

    def add_example_month(self) -> None:
        """October 2026's usual usage: acme (FR) 10 h of an H100 and 2 h of a 3g.40gb slice,
        berlin (DE) 1447.2 s of an A100, nyc (US) 2 h of an A30 1g.6gb slice."""
        for job, tenant in (("j1", "acme"), ("j2", "berlin"), ("j3", "nyc")):
            self.add_job(job, tenant)
        self.add_usage("j1", H100, 36000)
        self.add_usage("j1", H100, 7200, profile="3g.40gb")
        self.add_usage("j2", A100, "1447.2")
        self.add_usage("j3", A30, 7200, profile="1g.6gb")

    def meter_month(self, month: Month) -> None:
        """Every hour of ``month`` collected (with no usage), once."""
        if month not in self._metered:
            self._metered.add(month)
            hours = (month.end - month.start) // timedelta(hours=1)
            mark_collected(self.con, [(month.start + timedelta(hours=h), 0, "test") for h in range(hours)])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = make_site(tmp_path / "site")
    try:
        yield s
    finally:
        s.con.close()


def make_site(root: Path) -> Site:
    """gpumeter.toml, rates.toml, a migrated store with nodes and the three tenants."""
    root.mkdir()
    config = write_site(root, SITE_CONFIG, RATES)
    con = new_store(config.store.database)
    con.execute(
        "INSERT INTO nodes VALUES (1, 'par1-gpu01', 'par1', 'FR', 'nuage'), (1, 'ams1-gpu01', 'ams1', 'NL', 'nuage')"
    )
    s = Site(root, config, con)
    for t in TENANTS:
        s.add_tenant(*t)
    return s


def at(day: int, hour: int = 9) -> datetime:
    """A UTC instant in November 2026 (the month after the usage month)."""
    return datetime(2026, 11, day, hour, tzinfo=UTC)
