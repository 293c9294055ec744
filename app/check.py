"""``gpumeter check``: a read-only preflight of a site before its first collect and invoice.

It spans every domain, so it lives in the app and only puts their checks together:

- the core: gpumeter.toml (:func:`gpumeter.config.load_config`) and the store's schema
  (:func:`gpumeter.store.check_schema`, read-only);
- metering: the inventory files (:func:`metering.inventory.load_inventory`) and the
  telemetry (:mod:`metering.telemetry_probe` asks, :mod:`metering.telemetry_check` judges);
- billing: rates.toml and whether it prices every GPU model telemetry shows
  (:mod:`billing.rates_check`);
- audit: the signing key (:func:`audit.keys.check_key`).

The loaders run with ``Problems(keep=True)``: the same rules ``collect`` and ``invoice``
apply, but every bad value is reported, not only the first. Nothing is written: the store
is opened read-only (or not at all when it is missing), no key is created.

Exit codes: 0 when no finding is FAIL (WARN allowed), 1 when one is (or when ``--start`` /
``--end`` are not whole UTC hours in order), 2 for a usage mistake.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from audit.keys import PASSPHRASE_ENV, check_key
from billing.rates_check import check_rate_coverage, check_rates_file
from gpumeter import store
from gpumeter.commandline import EXIT_ERROR, EXIT_OK, ConfigOpt, config_path, say
from gpumeter.config import DEFAULT_CONFIG, Config, load_config
from gpumeter.errors import ConfigError, Problems
from gpumeter.findings import Finding, Status, failed, from_problems, passed
from metering.inventory import Inventory, load_inventory
from metering.prom import client_for
from metering.telemetry_check import check_telemetry
from metering.telemetry_probe import TelemetryFacts, probe
from metering.windows import HOUR_MS, Span, parse_instant, to_ms


def check(
    start: Annotated[
        str | None, typer.Option("--start", help="ISO 8601 UTC start (inclusive), a whole hour; default: 24 h ago.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="ISO 8601 UTC end (exclusive), a whole hour; default: this hour.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as a JSON array.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Check configuration, inventory and telemetry before collecting (read-only)."""
    span = window(start, end, datetime.now(UTC))
    findings = run_checks(config_path(config) or DEFAULT_CONFIG, span, passphrase=os.environ.get(PASSPHRASE_ENV))
    if as_json:
        sys.stdout.write(json.dumps([f.as_json() for f in findings], indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write("".join(f.line() + "\n" for f in findings))
    tally = Counter(f.status for f in findings)
    say(", ".join(f"{tally[s]} {s}" for s in Status))
    raise typer.Exit(EXIT_ERROR if tally[Status.FAIL] else EXIT_OK)


def window(start: str | None, end: str | None, now: datetime) -> Span:
    """[start, end) as given, else the last 24 whole hours before ``now``."""
    if (start is None) != (end is None):
        raise typer.BadParameter("give both --start and --end, or neither (the last 24 h)")
    if start is not None and end is not None:
        return Span.of(parse_instant(start), parse_instant(end))
    last = to_ms(now) // HOUR_MS * HOUR_MS
    return Span(last - 24 * HOUR_MS, last)


def run_checks(path: Path, span: Span, *, passphrase: str | None) -> list[Finding]:
    """Every finding for the site configured at ``path``, over ``span``."""
    problems = Problems(keep=True)
    try:
        cfg = load_config(path, problems)
    except ConfigError as exc:
        return [failed("config", exc.explain(), "write a gpumeter.toml (see README) or pass --config PATH")]
    findings = _config(path, problems)
    inventory, more = _inventory(cfg)
    findings += more
    card, more = check_rates_file(cfg.billing.rates)
    findings += more
    findings.append(check_key(cfg.audit.signing_key, passphrase))
    findings.append(store.check_schema(cfg.store.database))
    if any(exc.message.startswith("[telemetry]") for exc in problems.found):
        findings.append(
            failed("telemetry", "not checked: [telemetry] holds bad values", "fix them first (see the lines above)")
        )
        return findings
    try:
        facts = _telemetry(cfg, span)
    except ConfigError as exc:  # the bearer token's variable is not set
        findings.append(failed("telemetry", f"not checked: {exc.message}", "export the variable, then check again"))
        return findings
    findings += check_telemetry(facts, cfg.telemetry, inventory)
    if card is not None and facts.placements:
        sites = {host: node.site for host, node in inventory.nodes.items()}
        seen = {(p.model, p.profile, sites.get(p.host)) for p in facts.placements}
        findings.append(check_rate_coverage(card, seen))
    return findings


def _config(path: Path, problems: Problems) -> list[Finding]:
    if problems.found:
        return from_problems("config", problems.found, "correct the value in gpumeter.toml")
    return [passed("config", f"{path} is valid", path=str(path))]


def _inventory(cfg: Config) -> tuple[Inventory, list[Finding]]:
    problems = Problems(keep=True)
    inv = load_inventory(cfg.inventory, problems)
    if problems.found:
        return inv, from_problems("inventory.files", problems.found, "correct the file at that line")
    counts = (
        f"{len(inv.nodes)} nodes, {len(inv.storage)} storage locations, {len(inv.tenants)} tenants, "
        f"{len(inv.jobs)} jobs"
    )
    return inv, [passed("inventory.files", f"nodes.csv, storage.csv, tenants.csv and jobs.csv are valid: {counts}")]


def _telemetry(cfg: Config, span: Span) -> TelemetryFacts:
    """What the backend says, asked exactly as collect asks it (query_url, headers, bearer token)."""
    tel = cfg.telemetry
    with client_for(tel) as client:
        return probe(client, span, job_label=tel.job_label, interval_ms=tel.scrape_interval_ms)
