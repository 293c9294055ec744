"""CSV/formula injection: every CSV export people open in a spreadsheet writes a text cell
that starts with ``= + - @`` TAB or CR with a leading ``'`` (gpumeter.csvcells), and
leaves numbers numbers. The usage exports are driven through the installed CLI."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpumeter.csvcells import TRIGGERS, text_cell, text_columns
from tests.billing.conftest import H100, Site, make_site

GPUMETER = str(Path(sys.executable).with_name("gpumeter"))
HOSTILE_JOB = "=cmd|'/C calc'!A0"
HOSTILE_TENANT = "@evil"
HOSTILE_PROJECT = "+proj"


def test_text_cells_starting_with_a_trigger_get_an_apostrophe() -> None:
    assert [text_cell(t) for t in ("=1+1", "+33", "-x", "@SUM(A1)", "\tx", "\rx")] == [
        "'=1+1",
        "'+33",
        "'-x",
        "'@SUM(A1)",
        "'\tx",
        "'\rx",
    ]
    assert [text_cell(t) for t in ("job-1", "", "a=b", " =x", "'=x")] == ["job-1", "", "a=b", " =x", "'=x"]


@given(st.lists(st.one_of(st.none(), st.text(alphabet=st.sampled_from([*TRIGGERS, "a", "'", " ", "é"]))), max_size=20))
def test_the_frame_rule_is_the_cell_rule(texts: list[str | None]) -> None:
    numbers = [Decimal("-0.5") if i % 2 else Decimal("12.25") for i in range(len(texts))]
    frame = pl.DataFrame(
        {"text": texts, "eur": numbers, "n": [-1] * len(texts)},
        schema={"text": pl.String, "eur": pl.Decimal(10, 2), "n": pl.Int64},
    )
    out = text_columns(frame)
    assert out["text"].to_list() == [None if t is None else text_cell(t) for t in texts]
    assert out["eur"].to_list() == numbers and out["n"].to_list() == [-1] * len(texts)  # numbers stay numbers


@pytest.fixture
def hostile_site(tmp_path: Path) -> Path:
    """A billing site whose job id, tenant and project are formulas; returns gpumeter.toml."""
    site: Site = make_site(tmp_path / "site")
    try:
        site.add_tenant(HOSTILE_TENANT, "Evil SARL", "FR", "FR40303265045", "1 rue X, Paris")
        site.add_job(HOSTILE_JOB, HOSTILE_TENANT, project=HOSTILE_PROJECT)
        site.add_job("job-plain", "acme", project="train")
        site.add_usage(HOSTILE_JOB, H100, "3600")
        site.add_usage("job-plain", H100, "1800")
    finally:
        site.con.close()
    return site.root / "gpumeter.toml"


def usage(config: Path, fmt: str) -> list[dict[str, str]]:
    proc = subprocess.run(
        [GPUMETER, "usage", "--month", "2026-10", "--format", fmt, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    return list(csv.DictReader(io.StringIO(proc.stdout)))


def test_usage_csv_neutralises_job_tenant_and_project_but_not_numbers(hostile_site: Path) -> None:
    rows = {r["job_id"]: r for r in usage(hostile_site, "csv")}
    assert set(rows) == {"'" + HOSTILE_JOB, "job-plain"}
    hostile = rows["'" + HOSTILE_JOB]
    assert hostile["tenant"] == "'" + HOSTILE_TENANT
    assert Decimal(hostile["gpu_seconds"]) == 3600  # a number, no apostrophe
    assert rows["job-plain"]["tenant"] == "acme"


def test_usage_focus_neutralises_text_columns(hostile_site: Path) -> None:
    rows = usage(hostile_site, "focus")
    (hostile,) = [r for r in rows if r["x_JobId"].endswith(HOSTILE_JOB)]
    assert hostile["x_JobId"] == hostile["ResourceId"] == "'" + HOSTILE_JOB
    assert hostile["BillingAccountId"] == "'" + HOSTILE_TENANT
    assert hostile["SubAccountId"] == "'" + HOSTILE_PROJECT
    assert Decimal(hostile["ConsumedQuantity"]) == 3600
    for row in rows:  # no cell of any export starts a formula
        assert not any(v.startswith(TRIGGERS) for v in row.values() if v), row
