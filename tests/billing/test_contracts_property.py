"""Property: re-running a month never changes an issued document, whatever the contracts and
however usage moves between runs; and credits are never overdrawn nor lost."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.run import invoice_month
from gpumeter.months import Month
from tests.billing.conftest import H100, make_site

HOUR_NS = 3_600 * 10**9

# One step: (month, day of the month, hour, tenths of a GPU-hour; 0 removes that hour's usage).
steps = st.lists(
    st.tuples(
        st.sampled_from(["2026-10", "2026-11"]),
        st.integers(1, 28),
        st.integers(0, 23),
        st.integers(0, 40),
    ),
    min_size=1,
    max_size=6,
)
contracts = st.fixed_dictionaries(
    {
        "gpus": st.integers(1, 2),
        "start_day": st.integers(1, 28),
        "promo": st.integers(1, 400),
        "promo_expires_day": st.integers(1, 28),
        "prepaid": st.integers(1, 400),
        "minimum": st.integers(0, 300),
    }
)


def contracts_toml(c: dict[str, int]) -> str:
    minimum = (
        f'[[minimum_spend]]\ntenant = "acme"\neur_per_month = "{c["minimum"]}.00"\nstart = "2026-10"\n\n'
        if c["minimum"]
        else ""
    )
    return (
        f'[[reservation]]\nid = "R"\ntenant = "acme"\nmodel = "{H100}"\ngpus = {c["gpus"]}\n'
        f'start = "2026-10-{c["start_day"]:02d}"\nend = "2027-01-01"\neur_per_gpu_hour = "0.05"\n\n'
        f'[[credit]]\nid = "P"\ntenant = "acme"\nkind = "promotional"\neur = "{c["promo"]}.00"\n'
        f'start = "2026-10-01"\nexpires = "2026-11-{c["promo_expires_day"]:02d}"\n\n'
        f'[[credit]]\nid = "Q"\ntenant = "acme"\nkind = "prepaid"\neur = "{c["prepaid"]}.00"\nstart = "2026-10-01"\n\n'
        + minimum
    )


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=contracts, moves=steps)
def test_rerunning_a_month_never_changes_an_issued_document(
    c: dict[str, int], moves: list[tuple[str, int, int, int]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        site = make_site(Path(tmp) / "site")
        try:
            site.write_contracts(contracts_toml(c))
            site.add_job("a1", "acme")
            site.add_usage("a1", H100, 7200, window="2026-10-20T10:00:00")
            site.meter_month(Month.parse("2026-11"))  # both months collected: they may be finalized
            when = datetime(2026, 12, 1, 9, tzinfo=UTC)
            frozen: dict[str, tuple[bytes, bytes]] = {}
            for month, day, hour, tenths in moves:
                window = datetime(int(month[:4]), int(month[5:]), day, hour, tzinfo=UTC)
                site.con.execute("DELETE FROM usage WHERE window_start = ?", [window])
                if tenths:
                    site.add_usage("a1", H100, Decimal(tenths * 360), window=window.strftime("%Y-%m-%dT%H:%M:%S"))
                for m in ("2026-10", "2026-11"):
                    when += timedelta(hours=1)
                    invoice_month(site.con, site.config, m, True, now=when)
                    # At once again: nothing new, nothing changed.
                    assert [r for r in invoice_month(site.con, site.config, m, True, now=when) if r.created] == []
                rows = site.con.execute("SELECT number, json_bytes, pdf_bytes FROM billing_documents").fetchall()
                for number, jbytes, pdf in rows:
                    assert frozen.setdefault(number, (bytes(jbytes), bytes(pdf))) == (bytes(jbytes), bytes(pdf))
                for net, total, due in site.con.execute(
                    "SELECT d.net, d.total, d.total - coalesce(sum(c.amount) FILTER (WHERE c.role = 'paid'), 0) "
                    "FROM billing_documents AS d LEFT JOIN billing_document_credits AS c USING (number) "
                    "GROUP BY d.number, d.net, d.total"
                ).fetchall():
                    assert net >= 0 and total >= 0 and due >= 0
                taken = site.con.execute(
                    "SELECT c.credit, sum(CASE WHEN c.role = 'expired' OR d.kind = 'invoice' "
                    "THEN c.amount ELSE -c.amount END) "
                    "FROM billing_document_credits AS c JOIN billing_documents AS d USING (number) GROUP BY c.credit"
                ).fetchall()
                for credit, amount in taken:  # drawn, less given back, plus written off
                    assert 0 <= amount <= Decimal(c["promo"] if credit == "P" else c["prepaid"])
        finally:
            site.con.close()
