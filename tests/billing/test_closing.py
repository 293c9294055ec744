"""``invoice --finalize`` issues a month only once it is over and fully metered, and never
with an issue date earlier than the last issued document's (hardening row 9).

On a real DuckDB store through ``billing.run.invoice_month`` (its clock injected as ``now``),
and through the installed CLI with the real clock. Each refusal changes nothing stored.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from billing.errors import ClosingError
from billing.run import invoice_month
from gpumeter import store
from gpumeter.months import Month
from tests.billing.conftest import H100, Site, at

M = "2026-10"
GPUMETER = str(Path(sys.executable).parent / "gpumeter")


def usage(site: Site) -> None:
    site.add_job("j1", "acme")
    site.add_job("j2", "berlin")
    site.add_usage("j1", H100, 36000)
    site.add_usage("j2", H100, 7200)


def issued(site: Site) -> list[tuple[str, str]]:
    return site.con.execute("SELECT number, CAST(issue_date AS VARCHAR) FROM billing_documents ORDER BY 1").fetchall()


def unchanged(site: Site) -> tuple[object, ...]:
    """What a refused finalize must leave as it was: documents, sequences, audit log, files."""
    con = site.con
    out = site.out / M
    return (
        issued(site),
        con.execute("SELECT * FROM billing_sequences ORDER BY ALL").fetchall(),
        con.execute("SELECT count(*) FROM audit_entries").fetchall(),
        sorted(p.name for p in out.iterdir()) if out.exists() else [],
    )


@pytest.mark.parametrize(
    "now",
    [datetime(2026, 10, 20, 12, tzinfo=UTC), datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC)],
    ids=["mid-month", "last-second"],
)
def test_a_month_that_has_not_ended_is_refused(site: Site, now: datetime) -> None:
    usage(site)
    before = unchanged(site)
    with pytest.raises(ClosingError, match=r"2026-10 has not ended: it ends at 2026-11-01T00:00:00Z") as e:
        invoice_month(site.con, site.config, M, True, now=now)
    assert now.strftime("%Y-%m-%dT%H:%M:%SZ") in e.value.explain()
    assert unchanged(site) == before
    # drafts are always allowed: they are not legal documents
    assert [r.status for r in invoice_month(site.con, site.config, M, False, now=now)] == ["draft", "draft"]


def test_the_first_instant_after_the_month_is_enough(site: Site) -> None:
    usage(site)
    results = invoice_month(site.con, site.config, M, True, now=datetime(2026, 11, 1, tzinfo=UTC))
    assert [r.number for r in results] == ["GM-2026-000001", "GM-2026-000002"]


def test_a_month_with_hours_never_collected_is_refused_naming_the_first(site: Site) -> None:
    usage(site)
    site.con.execute(
        "DELETE FROM collected_windows WHERE window_start IN "
        "('2026-10-17T05:00:00Z'::TIMESTAMPTZ, '2026-10-17T06:00:00Z'::TIMESTAMPTZ, '2026-10-31T23:00:00Z')"
    )
    before = unchanged(site)
    with pytest.raises(ClosingError) as e:
        invoice_month(site.con, site.config, M, True, now=at(2))
    message = e.value.explain()
    assert "2026-10 is not fully metered: 3 hours never collected, the first 2026-10-17T05:00:00Z" in message
    assert "gpumeter collect --start 2026-10-01T00:00:00Z --end 2026-11-01T00:00:00Z" in message
    assert unchanged(site) == before


def test_a_month_nobody_collected_is_refused(site: Site) -> None:
    with pytest.raises(ClosingError, match=r"744 hours never collected, the first 2026-10-01T00:00:00Z"):
        invoice_month(site.con, site.config, M, True, now=at(2))


def test_coverage_gaps_inside_collected_hours_are_reported_not_refused(site: Site) -> None:
    usage(site)
    site.con.execute(
        "INSERT INTO gpu_coverage VALUES ('2026-10-05T10:00:00Z', 'GPU-gap', 'par1-gpu01', ?, "
        "'2026-10-05T10:00:00Z', '2026-10-05T10:59:45Z', 200)",
        [H100],
    )
    site.con.execute(
        "INSERT INTO coverage_gaps VALUES ('2026-10-05T10:00:00Z', 'GPU-gap', "
        "'2026-10-05T10:20:00Z', '2026-10-05T10:30:00Z')"
    )
    said: list[str] = []
    results = invoice_month(site.con, site.config, M, True, now=at(2), progress=said.append)
    assert [r.number for r in results] == ["GM-2026-000001", "GM-2026-000002"]
    assert "coverage: 1 gap in 2026-10 where a GPU sent no samples" in "\n".join(said)


def test_an_issue_date_earlier_than_the_last_issued_one_is_refused(site: Site) -> None:
    usage(site)
    invoice_month(site.con, site.config, M, True, now=at(9))
    site.add_usage("j1", H100, 3600, window="2026-10-30T23:00:00")  # late usage: a supplement is due
    before = unchanged(site)
    with pytest.raises(ClosingError) as e:
        invoice_month(site.con, site.config, M, True, now=at(8, 23))  # a clock set back
    assert "issue date 2026-11-08 is earlier than 2026-11-09, the issue date of GM-2026-000002" in e.value.explain()
    assert unchanged(site) == before
    # the same day is fine, and a later one
    results = invoice_month(site.con, site.config, M, True, now=at(9, 17))
    assert [(r.number, r.created) for r in results if r.created] == [("GM-2026-000003", True)]
    assert issued(site)[-1] == ("GM-2026-000003", "2026-11-09")


def test_the_last_issue_date_of_any_month_counts(site: Site) -> None:
    usage(site)
    site.add_job("j9", "acme")
    site.add_usage("j9", H100, 3600, window="2026-11-10T00:00:00")
    invoice_month(site.con, site.config, "2026-11", True, now=datetime(2026, 12, 5, tzinfo=UTC))
    with pytest.raises(ClosingError, match=r"2026-12-04 is earlier than 2026-12-05"):
        invoice_month(site.con, site.config, M, True, now=datetime(2026, 12, 4, tzinfo=UTC))


def test_nothing_pending_never_trips_the_date_check(site: Site) -> None:
    """A re-run that only restores files issues nothing, whatever the clock says."""
    usage(site)
    invoice_month(site.con, site.config, M, True, now=at(9))
    (site.out / M / "GM-2026-000001.pdf").unlink()
    results = invoice_month(site.con, site.config, M, True, now=at(3))
    assert not [r for r in results if r.created] and (site.out / M / "GM-2026-000001.pdf").exists()


def test_the_cli_refuses_the_current_month(site: Site) -> None:
    """Through the installed CLI and the real clock: this month has not ended yet."""
    current = Month.of(datetime.now(UTC))
    site.add_job("j1", "acme")
    site.add_usage("j1", H100, 3600, window=f"{current.start:%Y-%m-%dT%H:%M:%S}")
    site.con.close()
    p = subprocess.run(
        [GPUMETER, "--config", str(site.root / "gpumeter.toml"), "invoice", "--month", str(current), "--finalize"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"{current} has not ended: it ends at {current.end:%Y-%m-%dT%H:%M:%S}Z" in p.stderr
    con = store.connect(site.config.store.database, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM billing_documents").fetchall() == [(0,)]
    finally:
        con.close()
