"""Billing benchmark: ``.venv/bin/python -m bench.billing``.

A store with 1,000 tenants and 200,000 jobs' usage in one month (October 2026), then:

(a) gpumeter's invoice computation from the store: billable usage (metering's query),
    exact aggregation, pricing (MIG shares, tiers, discounts), VAT decisions — everything
    ``gpumeter invoice`` does before it writes a document;
(b) a plain-Python baseline: fetch the usage rows joined to their tenants and loop over them
    with ``Decimal``, accumulating price x hours per tenant;
(c) the floor: one DuckDB scan-and-group of the usage table per tenant x model x profile;
(d) the same computation with contracts (a copy of the store, in the same process): every
    tenant with a promotional credit, every 2nd with a prepaid one, every 3rd with a minimum
    spend, every 4th with a reservation starting mid-month (every 20th with a second one on
    a site), and every 11th job a spot job — the hourly drawdown included;
(e) the worst case of (d): every tenant with a reservation;

and, separately, the per-invoice cost of documents: PDF rendering, Factur-X XML + embedding,
and offline schematron validation. Results go to the ``## billing`` section of
bench/RESULTS.md through :func:`bench.results.write_section` (other sections are left alone).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
from stdnum import luhn
from stdnum.iso7064 import mod_11_10

from bench.results import write_section
from billing.facturx_xml import build_xml
from billing.invoice import Period, aggregate_usage
from billing.pdf import facturx_pdf, render_pdf
from billing.plan import plan_month
from billing.run import default_usage, month_plan, read_rates, read_tenants
from billing.validate import check_facturx, saxon_available
from gpumeter import store
from gpumeter.config import Config
from metering.inventory import Tenant
from metering.mig import profile_slices
from testing.stores import SITE_CONFIG, add_tenants, mark_collected, new_store, write_site

SPOT_RATES = "".join(
    f'\n[[rate]]\nmodel = "{m}"\nclass = "spot"\neur_per_gpu_hour = "{p}"\n'
    for m, p in (("NVIDIA H100 80GB HBM3", "1.40"), ("NVIDIA A100-SXM4-80GB", "0.95"), ("NVIDIA A30", "0.60"))
)

TENANTS = 1_000
JOBS = 200_000
MONTH = "2026-10"
REPEAT = 7
PDF_SAMPLE = 40

RATES = """
[[rate]]
model = "NVIDIA H100 80GB HBM3"
eur_per_gpu_hour = "2.80"
  [[rate.tier]]
  from_gpu_hours = "40"
  eur_per_gpu_hour = "2.50"

[[rate]]
model = "NVIDIA H100 80GB HBM3"
site = "ams1"
eur_per_gpu_hour = "2.95"

[[rate]]
model = "NVIDIA A100-SXM4-80GB"
eur_per_gpu_hour = "1.90"

[[rate]]
model = "NVIDIA A30"
eur_per_gpu_hour = "1.20"
"""


def tenant_rows() -> list[Tenant]:
    rows = []
    for i in range(TENANTS):
        if i % 3 == 0:
            siren = str(100_000_000 + i * 7)[:8]
            siren += luhn.calc_check_digit(siren)
            key = (12 + 3 * (int(siren) % 97)) % 97
            country, vat = "FR", f"FR{key:02d}{siren}"
        elif i % 3 == 1:
            digits = f"{10_000_000 + i:08d}"
            country, vat = "DE", "DE" + digits + mod_11_10.calc_check_digit(digits)
        else:
            country, vat = "US", ""
        rows.append(Tenant(f"t{i:04d}", f"Tenant {i} Ltd", country, vat, None, f"{i} Compute Street"))
    return rows


def build_store(root: Path) -> tuple[Config, duckdb.DuckDBPyConnection]:
    discounts = "".join(f'\n[[discount]]\ntenant = "t{i:04d}"\npercent = "10"\n' for i in range(0, TENANTS, 10))
    config = write_site(root, SITE_CONFIG, RATES + discounts)
    con = new_store(config.store.database)
    add_tenants(con, tenant_rows())
    con.execute(
        """
        INSERT INTO nodes
        SELECT 1, 'host-' || h, CASE WHEN h % 2 = 0 THEN 'par1' ELSE 'ams1' END,
               CASE WHEN h % 2 = 0 THEN 'FR' ELSE 'NL' END, 'nuage'
        FROM range(64) AS t(h)
        """
    )
    con.execute(
        """
        INSERT INTO jobs (job_id, tenant, project, data_locations)
        SELECT 'job-' || i, 't' || lpad((i % $tenants)::VARCHAR, 4, '0'), 'p' || (i % 3), []
        FROM range($jobs) AS t(i)
        """,
        {"tenants": TENANTS, "jobs": JOBS},
    )
    start = datetime(2026, 10, 1, tzinfo=UTC)
    mark_collected(con, [(start + timedelta(hours=h), 0, "bench") for h in range(744)])
    # each job: 1-4 hourly windows on one GPU; every 7th job on a MIG instance
    con.execute(
        """
        INSERT INTO usage
        WITH j AS (
            SELECT i, 1 + (hash(i) % 4)::INTEGER AS n, (hash(i * 31) % 740)::INTEGER AS h0,
                   (hash(i * 13) % 64)::INTEGER AS host,
                   CASE WHEN hash(i * 7) % 10 < 5 THEN 'NVIDIA H100 80GB HBM3'
                        WHEN hash(i * 7) % 10 < 8 THEN 'NVIDIA A100-SXM4-80GB' ELSE 'NVIDIA A30' END AS model
            FROM range($jobs) AS t(i)
        )
        SELECT $start + INTERVAL (j.h0 + k) HOUR,
               'job-' || j.i,
               'GPU-' || j.i,
               CASE WHEN j.i % 7 = 0 THEN '1' ELSE '' END,
               CASE WHEN j.i % 7 <> 0 THEN NULL
                    WHEN j.model LIKE '%H100%' THEN '3g.40gb'
                    WHEN j.model LIKE '%A100%' THEN '2g.20gb' ELSE '1g.6gb' END,
               j.model,
               ['host-' || j.host],
               (15000000000 * (1 + hash(j.i, k) % 240))::BIGINT,
               (7500000000 * (1 + hash(j.i, k) % 240))::BIGINT,
               (1000000 * (hash(j.i, k) % 100000))::BIGINT
        FROM j, range(4) AS r(k)
        WHERE k < j.n
        """,
        {"jobs": JOBS, "start": start},
    )
    return config, con


def best(*fns: Callable[[], Any]) -> list[tuple[float, Any]]:
    """Best time of each function over REPEAT rounds, interleaved so all see the same load."""
    times: list[list[float]] = [[] for _ in fns]
    outs: list[Any] = [None] * len(fns)
    for _ in range(REPEAT):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            outs[i] = fn()
            times[i].append(time.perf_counter() - t)
    return [(min(ts), out) for ts, out in zip(times, outs, strict=True)]


def compute(con: duckdb.DuckDBPyConnection, config: Config) -> dict[str, Decimal]:
    """(a) and (d): what ``gpumeter invoice`` computes before writing anything."""
    plan, _ = month_plan(con, config, Period.parse(MONTH))
    return {inv.tenant: inv.net for inv in plan.pending}


def contracts_toml(reserve_every: int) -> str:
    """(d)'s and (e)'s contracts.toml: every kind of contract; a reservation for every n-th tenant."""
    h100 = "NVIDIA H100 80GB HBM3"
    out = []
    for i in range(TENANTS):
        t = f"t{i:04d}"
        if i % reserve_every == 0:
            out.append(
                f'[[reservation]]\nid = "R-{t}"\ntenant = "{t}"\nmodel = "{h100}"\ngpus = 1\n'
                'start = "2026-10-10"\nend = "2027-10-10"\neur_per_gpu_hour = "1.90"\n'
            )
        if i % (5 * reserve_every) == 0:
            out.append(
                f'[[reservation]]\nid = "S-{t}"\ntenant = "{t}"\nmodel = "{h100}"\nsite = "par1"\ngpus = 1\n'
                'start = "2026-10-01"\nend = "2027-01-01"\neur_per_gpu_hour = "2.10"\n'
            )
        if i % 3 == 0:
            out.append(f'[[minimum_spend]]\ntenant = "{t}"\neur_per_month = "2000.00"\nstart = "2026-01"\n')
        out.append(
            f'[[credit]]\nid = "P-{t}"\ntenant = "{t}"\nkind = "promotional"\neur = "50.00"\n'
            'start = "2026-10-01"\nexpires = "2026-10-20"\n'
        )
        if i % 2 == 0:
            out.append(
                f'[[credit]]\nid = "Q-{t}"\ntenant = "{t}"\nkind = "prepaid"\neur = "100.00"\nstart = "2026-09-01"\n'
            )
    return "\n".join(out)


def contracted_store(
    root: Path, con: duckdb.DuckDBPyConnection, reserve_every: int
) -> tuple[Config, duckdb.DuckDBPyConnection]:
    """(d)'s or (e)'s site: a copy of the store with every 11th job spot, the spot rates, contracts.toml."""
    config = write_site(
        root, SITE_CONFIG.replace('rates = "rates.toml"', 'rates = "rates.toml"\ncontracts = "contracts.toml"')
    )
    (root / "contracts.toml").write_text(contracts_toml(reserve_every), encoding="utf-8")
    discounts = "".join(f'\n[[discount]]\ntenant = "t{i:04d}"\npercent = "10"\n' for i in range(0, TENANTS, 10))
    (root / "rates.toml").write_text(RATES + SPOT_RATES + discounts, encoding="utf-8")
    config.store.database.parent.mkdir(parents=True, exist_ok=True)
    ((name,),) = con.execute("SELECT current_database()").fetchall()
    con.execute("ATTACH $path AS contracted", {"path": str(config.store.database)})
    con.execute(f'COPY FROM DATABASE "{name}" TO contracted')
    con.execute("DETACH contracted")
    copy = store.connect(config.store.database)
    copy.execute("UPDATE jobs SET job_class = 'spot' WHERE hash(job_id) % 11 = 0")
    return config, copy


def baseline(con: duckdb.DuckDBPyConnection) -> dict[str, Decimal]:
    """(b) plain Python: every usage row through a Decimal loop, same price rules.

    Reads the raw usage rows (with their tenant and site), then per row: pick the rate
    (site override), convert nanoseconds to hours with Decimal division (28 digits, so not
    exact for N/S or 1/3600), accumulate per tenant x line; then tiers, discount and one
    rounding per line — what a careful hand-written loop would do.
    """
    h100, a100, a30 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA A30"
    base = {h100: Decimal("2.80"), a100: Decimal("1.90"), a30: Decimal("1.20")}
    site_rate = {(h100, "ams1"): Decimal("2.95")}
    tier = {h100: (Decimal(40), Decimal("2.50"))}
    slices = {a30: 4}
    discounted = {f"t{i:04d}" for i in range(0, TENANTS, 10)}
    rows = con.execute(
        """
        SELECT j.tenant, u.gpu_model, u.mig_profile, coalesce(n.site, '') AS site, u.gpu_ns
        FROM usage AS u
        JOIN jobs AS j USING (job_id)
        JOIN collected_windows AS cw USING (window_start)
        LEFT JOIN nodes AS n ON n.hostname = u.hosts[1] AND n.version = cw.nodes_version
        WHERE u.window_start >= $s AND u.window_start < $e
        """,
        {"s": datetime(2026, 10, 1, tzinfo=UTC), "e": datetime(2026, 11, 1, tzinfo=UTC)},
    ).fetchall()
    per_hour_ns = Decimal(3_600_000_000_000)
    acc: dict[tuple[str, str, str], Decimal] = {}
    for tenant, model, profile, site, ns in rows:
        at_site = site if (model, site) in site_rate else ""
        hours = Decimal(ns) / per_hour_ns
        if profile is not None:
            hours = hours * (profile_slices(profile) or 1) / slices.get(model, 7)
        key = (tenant, model, at_site)
        acc[key] = acc.get(key, Decimal(0)) + hours
    cent = Decimal("0.01")
    nets: dict[str, Decimal] = {}
    for (tenant, model, at_site), hours in acc.items():
        price = site_rate[(model, at_site)] if at_site else base[model]
        bands = [(hours, price)]
        if not at_site and model in tier and hours > tier[model][0]:
            bands = [(tier[model][0], price), (hours - tier[model][0], tier[model][1])]
        for q, p in bands:
            unit = p * Decimal("0.9") if tenant in discounted else p
            nets[tenant] = nets.get(tenant, Decimal(0)) + (q * unit).quantize(cent, rounding=ROUND_HALF_UP)
    return nets


def floor(con: duckdb.DuckDBPyConnection) -> int:
    """(c) one scan-and-group of the usage table."""
    rows = con.execute(
        """
        SELECT j.tenant, u.gpu_model, u.mig_profile, sum(u.gpu_ns) AS ns
        FROM usage AS u JOIN jobs AS j USING (job_id)
        WHERE u.window_start >= $s AND u.window_start < $e
        GROUP BY ALL
        """,
        {"s": datetime(2026, 10, 1, tzinfo=UTC), "e": datetime(2026, 11, 1, tzinfo=UTC)},
    ).fetchall()
    return len(rows)


def documents(con: duckdb.DuckDBPyConnection, config: Config) -> dict[str, float]:
    """Per-invoice document costs on a sample of the month's invoices."""
    period = Period.parse(MONTH)
    plan = plan_month(
        period=period,
        groups=aggregate_usage(default_usage(con, MONTH)),
        card=read_rates(config.billing.rates),
        tenants=read_tenants(con),
        supplier=config.billing.supplier,
        payment_terms_days=30,
        issued=[],
        positions={},
    )
    issue = date(2026, 11, 2)
    sample = [inv.finalize(f"GM-2026-{i + 1:06d}", issue) for i, inv in enumerate(plan.pending[:PDF_SAMPLE])]
    render_pdf(sample[0])  # font registration and caches
    out: dict[str, float] = {}
    t = time.perf_counter()
    pdfs = [render_pdf(inv) for inv in sample]
    out["pdf"] = (time.perf_counter() - t) / len(sample)
    t = time.perf_counter()
    xmls = [build_xml(inv) for inv in sample]
    fx = [facturx_pdf(p, x, inv) for p, x, inv in zip(pdfs, xmls, sample, strict=True)]
    out["facturx"] = (time.perf_counter() - t) / len(sample)
    out["pdf_kb"] = statistics.mean(len(b) for b in fx) / 1024
    if saxon_available():
        check_facturx(xmls[0], fr_ctc=True)  # compile the stylesheets once
        t = time.perf_counter()
        for x, inv in zip(xmls, sample, strict=True):
            report = check_facturx(x, fr_ctc=inv.customer.country == "FR")
            if not report.passed:
                raise SystemExit(f"bench invoice {inv.number} fails validation: {report.findings[0].line()}")
        out["validate"] = (time.perf_counter() - t) / len(sample)
    return out


def main() -> None:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gpumeter-bench-billing-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        config, con = build_store(root)
        ((usage_rows,),) = con.execute("SELECT count(*) FROM usage").fetchall()
        build_s = time.perf_counter() - t
        print(f"store: {TENANTS} tenants, {JOBS} jobs, {usage_rows} usage rows ({build_s:.1f} s)", file=sys.stderr)
        config_d, con_d = contracted_store(root / "contracted", con, 4)
        config_e, con_e = contracted_store(root / "all-reserved", con, 1)
        # (a), (d) and (e) side by side in each round, so that they see the same load.
        (a_s, nets), (d_s, nets_d), (e_s, _), (b_s, base), (c_s, groups) = best(
            lambda: compute(con, config),
            lambda: compute(con_d, config_d),
            lambda: compute(con_e, config_e),
            lambda: baseline(con),
            lambda: floor(con),
        )
        con_d.close()
        con_e.close()
        gaps = [v - base.get(t_, Decimal(0)) for t_, v in nets.items() if base.get(t_) != v]
        differ, widest = len(gaps), max((abs(g) for g in gaps), default=Decimal(0))
        higher = sum(1 for g in gaps if g > 0)
        docs = documents(con, config)
        con.close()
    invoices = len(nets)
    lines = [
        "Command: `.venv/bin/python -m bench.billing`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}; run {datetime.now(UTC).strftime('%Y-%m-%d')}; "
        f"best of {REPEAT} interleaved rounds; "
        f"load average {load:.1f} at the start (a shared machine: compare ratios, not times).",
        "",
        f"Store: {TENANTS:,} tenants (FR domestic, DE reverse charge, US outside scope), {JOBS:,} jobs, "
        f"{usage_rows:,} hourly usage rows in {MONTH}; rates with a volume tier, a site priced apart, "
        f"MIG on every 7th job, 10 % discounts for 100 tenants.",
        "",
        "| step | time | vs (a) |",
        "|---|---:|---:|",
        f"| (a) invoice computation from the store ({invoices:,} invoices, exact) | {a_s * 1000:,.0f} ms | 1.00 |",
        f"| (b) plain-Python Decimal loop over the usage rows (baseline) | {b_s * 1000:,.0f} ms | {b_s / a_s:.2f} |",
        f"| (c) one DuckDB scan-and-group of usage ({groups:,} groups; the floor) | {c_s * 1000:,.0f} ms "
        f"| {c_s / a_s:.2f} |",
        f"| (d) the same with contracts ({len(nets_d):,} invoices; credits for every tenant, minimum spend for "
        f"a third, reservations drawn hour by hour for a quarter, spot jobs) | {d_s * 1000:,.0f} ms "
        f"| {d_s / a_s:.2f} |",
        f"| (e) as (d), every tenant with a reservation (the worst case) | {e_s * 1000:,.0f} ms | {e_s / a_s:.2f} |",
        "",
        f"Ratios: (a) / (b) = {a_s / b_s:.2f} (gpumeter vs the Python loop); "
        f"(a) / (c) = {a_s / c_s:.1f} (gpumeter vs the floor); "
        f"(d) / (a) = {d_s / a_s:.2f} (contracts vs on-demand only; the budget is 2); "
        f"(e) / (a) = {e_s / a_s:.2f} (every tenant reserving). What contracts add: reading "
        "contracts.toml, one DuckDB query over the reserved models' hourly usage (the drawdown), "
        "more lines (spot, reservations, true-ups) and the credits of every document.",
        f"The baseline (b) applies the same rules (site rate, tier, discount, one rounding per line) but "
        f"divides with 28-digit Decimals; its net differs from the exact (a) for {differ:,} of "
        f"{invoices:,} tenants (by at most EUR {widest}; the exact net is the higher one in {higher} of them): "
        f"15-second slots and N/7 MIG shares make exact half-cent ties common, and a 28-digit quotient "
        f"lands just below the tie and rounds down. The count moves between runs (63-69 seen): rounded "
        f"28-digit sums depend on the order rows arrive in, exact ones do not.",
        "",
        f"Documents, per invoice (sample of {PDF_SAMPLE}): PDF rendering {docs['pdf'] * 1000:.1f} ms; "
        f"Factur-X XML + embedding {docs['facturx'] * 1000:.1f} ms (file {docs['pdf_kb']:.0f} KiB)"
        + (
            f"; XSD + EN 16931 (+ French CTC) validation {docs['validate'] * 1000:.1f} ms."
            if "validate" in docs
            else "; schematron validation skipped (saxonche not installed)."
        ),
        "",
    ]
    body = "\n".join(lines)
    print(body)
    write_section("billing", body)


if __name__ == "__main__":
    main()
