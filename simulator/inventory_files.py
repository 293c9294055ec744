"""The simulated fleet's inventory as the files gpumeter reads (docs/formats.md, "Inputs").

:func:`write_inventory` writes ``nodes.csv``, ``storage.csv``, ``jobs.csv``,
``tenants.csv`` (UTF-8, header first, RFC 4180 quoting wherever a value needs it — job ids
with quotes, commas or semicolons), ``rates.toml`` and a ``gpumeter.toml`` whose paths
are relative to itself, so the folder can move. With ``contracts=True`` (the demo) it also
writes the contracts of :mod:`simulator.demo_contracts`: ``contracts.toml``, a ``class``
column in ``jobs.csv`` with the spot job, and the spot rates it needs.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from simulator._catalog import PEPPOL_TENANTS, SUPPLIER
from simulator.demo_contracts import demo_contracts
from simulator.fleet import Fleet


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(header)
        w.writerows(rows)


def _toml_str(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML escapes)."""
    return json.dumps(value, ensure_ascii=False)


def _toml_inline(table: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{k} = {_toml_str(v)}" for k, v in table.items()) + " }"


def write_inventory(
    fleet: Fleet, directory: str | Path, *, prometheus_url: str = "http://127.0.0.1:9090", contracts: bool = False
) -> Path:
    """Write the inventory and configuration for ``fleet`` into ``directory``; returns gpumeter.toml."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    deals = demo_contracts(fleet) if contracts else None
    _write_csv(
        out / "nodes.csv",
        ("hostname", "site", "country", "provider"),
        ((n.hostname, n.site, n.country, n.provider) for n in fleet.nodes),
    )
    _write_csv(out / "storage.csv", ("location", "country"), ((s.location, s.country) for s in fleet.storage))
    if deals is None:
        _write_csv(
            out / "jobs.csv",
            ("job_id", "tenant", "project", "data_locations"),
            ((j.job_id, j.tenant, j.project, ";".join(j.data_locations)) for j in fleet.jobs),
        )
    else:
        _write_csv(
            out / "jobs.csv",
            ("job_id", "tenant", "project", "data_locations", "class"),
            (
                (
                    j.job_id,
                    j.tenant,
                    j.project,
                    ";".join(j.data_locations),
                    "spot" if j.job_id in deals.spot_jobs else "",
                )
                for j in fleet.jobs
            ),
        )
        (out / "contracts.toml").write_text(deals.text, encoding="utf-8")
    _write_csv(
        out / "tenants.csv",
        ("tenant", "legal_name", "country", "vat_id", "email", "address", "einvoice", "peppol_id"),
        (
            (
                t.tenant,
                t.legal_name,
                t.country,
                t.vat_id,
                t.email or "",
                t.address or "",
                "peppol" if t.tenant in PEPPOL_TENANTS else "",
                PEPPOL_TENANTS.get(t.tenant, ""),
            )
            for t in fleet.tenants
        ),
    )
    rates: list[str] = ["# EUR per GPU-hour, decimal strings; MIG profile Ng.* is priced N/mig_slices of it."]
    for r in fleet.rates:
        rates += [
            "",
            "[[rate]]",
            f"model = {_toml_str(r.model)}",
            f"eur_per_gpu_hour = {_toml_str(r.eur_per_gpu_hour)}",
        ]
        if r.mig_slices is not None:
            rates.append(f"mig_slices = {r.mig_slices}")
    for model, price in sorted((deals.spot_rates if deals else {}).items()):
        rates += [
            "",
            "[[rate]]",
            f"model = {_toml_str(model)}",
            'class = "spot"',
            f"eur_per_gpu_hour = {_toml_str(price)}",
        ]
    (out / "rates.toml").write_text("\n".join(rates) + "\n", encoding="utf-8")
    spec = fleet.spec
    config = f"""# gpumeter configuration for the simulated fleet (seed {spec.seed}); paths are relative to this file.

[store]
database = "var/gpumeter.duckdb"

[telemetry]
prometheus_url = {_toml_str(prometheus_url)}
scrape_interval = "{spec.scrape_interval_s}s"
job_label = {_toml_str(spec.job_label)}
idle_job_ids = ["", "0"]

[inventory]
nodes = "nodes.csv"
storage = "storage.csv"
jobs = "jobs.csv"
tenants = "tenants.csv"

[billing]
rates = "rates.toml"
supplier = {_toml_inline(SUPPLIER)}
output = "var/invoices"
{'contracts = "contracts.toml"' if deals else ""}

[audit]
origin = "gpumeter.example.eu/audit"
signing_key = "keys/audit.key"
allowed_countries = ["EU"]
"""
    path = out / "gpumeter.toml"
    path.write_text(config, encoding="utf-8")
    return path
