"""The pieces ``gpumeter check`` puts together, one by one (the CLI is in test_check.py).

The loaders keep every problem when asked and still raise the first by default; the store
check reads a real DuckDB file without changing it; the key check applies the rules the
signing code applies; the pure telemetry rules name what they see.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from audit.keys import check_key, ensure_key
from billing.errors import RatesError
from billing.rates import parse_rates
from billing.rates_check import check_rate_coverage
from gpumeter import store
from gpumeter.config import load_config
from gpumeter.errors import ConfigError, InputError, Problems
from gpumeter.findings import Status
from metering.inventory import load_inventory
from metering.telemetry_check import causes_by_host, duplicate_cause, suggested_interval_s
from tests import sites


def test_inventory_problems_are_all_kept_and_good_rows_loaded(tmp_path: Path) -> None:
    cfg = load_config(sites.make_site(tmp_path, "http://127.0.0.1:9"))
    cfg.inventory.nodes.write_text(
        "hostname,site,country,provider\nh1,par,XX,p\nh2,par,FR,p\nh2,par,FR,p\nh3,,DE,p\nshort\n"
    )
    cfg.inventory.storage.unlink()
    problems = Problems(keep=True)
    inv = load_inventory(cfg.inventory, problems)
    assert [(e.line, e.value) for e in problems.found] == [(None, None), (2, "XX"), (4, "h2"), (5, ""), (6, "short")]
    assert "cannot read storage file" in problems.found[0].message
    assert set(inv.nodes) == {"h2"} and inv.storage == () and len(inv.jobs) == 16
    with pytest.raises(InputError) as first:  # the default is unchanged: the first problem stops the load
        load_inventory(cfg.inventory)
    assert "cannot read storage file" in first.value.message


def test_config_problems_are_all_kept_with_defaults_in_their_place(tmp_path: Path) -> None:
    path = sites.make_site(tmp_path, "http://127.0.0.1:9")
    text = path.read_text().replace('scrape_interval = "15s"', 'scrape_interval = "15x"')
    path.write_text(
        text.replace('job_label = "hpc_job"', 'job_label = "hpc-job"').replace("retries = 2", "retries = -1")
    )
    problems = Problems(keep=True)
    cfg = load_config(path, problems)
    assert sorted(e.message.split(" ", 2)[1] for e in problems.found) == ["job_label", "retries", "scrape_interval"]
    assert (cfg.telemetry.scrape_interval_ms, cfg.telemetry.job_label, cfg.telemetry.retries) == (15_000, "hpc_job", 4)
    assert cfg.telemetry.prometheus_url == "http://127.0.0.1:9"  # the good values are kept
    with pytest.raises(ConfigError):
        load_config(path)


def test_supplier_witness_and_tsa_problems_are_kept_too(tmp_path: Path) -> None:
    path = sites.make_site(tmp_path, "http://127.0.0.1:9")
    text = path.read_text().replace('siren = "303265045" }', 'siren = "303 265 045", fax = "1" }')
    text = text.replace(
        'allowed_countries = ["EU"]\n',
        'allowed_countries = ["EU"]\nwitnesses = [{ name = "w1", url = "ftp://w1", vkey = "w1+00000000+AA" }]\n'
        'tsa_url = "not a url"\ntsa_cert = 3\n',
    )
    path.write_text(text)
    problems = Problems(keep=True)
    cfg = load_config(path, problems)
    lines = text.splitlines()
    found = [(e.message.split(" (known keys")[0], e.value, lines[(e.line or 0) - 1]) for e in problems.found]
    assert found == [  # the keys and types first (the schema of gpumeter.toml), then what values mean
        ("[billing.supplier] unknown key 'fax' = '1'", None, next(ln for ln in lines if "fax" in ln)),
        ("[audit] tsa_cert must be a string, not an integer", 3, "tsa_cert = 3"),
        (
            "[audit.witnesses[1]] url must be an http:// or https:// URL",
            "ftp://w1",
            next(ln for ln in lines if "ftp" in ln),
        ),
        ("[audit] tsa_url must be an http:// or https:// URL", "not a url", 'tsa_url = "not a url"'),
    ]
    assert cfg.billing.supplier.legal_name == "" and cfg.billing.payment_terms_days == 30  # the defaults
    assert (cfg.audit.witnesses, cfg.audit.quorum, cfg.audit.tsa_url, cfg.audit.tsa_cert) == ((), 0, None, None)
    assert cfg.audit.origin == "gpumeter.test/audit"
    with pytest.raises(ConfigError, match="unknown key 'fax'"):
        load_config(path)
    path.write_text(text.replace(', fax = "1"', "").replace("ftp://", "https://").replace("tsa_", "# tsa_"))
    good = load_config(path, Problems(keep=True))
    assert good.billing.supplier.siren == "303265045"  # compacted, as invoicing reads it
    assert [w.name for w in good.audit.witnesses] == ["w1"] and good.audit.quorum == 1


def test_mig_slices_problems_are_kept_with_the_card_s(tmp_path: Path) -> None:
    text = '[[rate]]\nmodel = "A"\neur_per_gpu_hour = "2.00"\nmig_slices = 0\n\n'
    text += '[[rate]]\nmodel = "B"\neur_per_gpu_hour = "1.00"\nmig_slices = 4\n\n'
    text += '[[rate]]\nmodel = "B"\nsite = "par"\neur_per_gpu_hour = "1.10"\nmig_slices = 8\n\n'
    text += '[[rate]]\nmodel = "C"\neur_per_gpu_hour = 3\n'
    problems = Problems(keep=True)
    card = parse_rates(text, problems=problems)
    assert [e.line for e in problems.found] == [4, 15, 19]
    assert "between 1 and 64" in problems.found[0].message and "sets 4 for the same model" in problems.found[1].message
    assert {r.model: r.mig_slices for r in card.rates} == {"A": 7, "B": 4}  # a bad value leaves the default
    with pytest.raises(RatesError) as first:
        parse_rates(text)
    assert first.value.line == 4 and "between 1 and 64" in first.value.message


def test_rates_problems_are_all_kept(tmp_path: Path) -> None:
    text = '[[rate]]\nmodel = "A"\neur_per_gpu_hour = 2.5\n\n[[rate]]\nmodel = "B"\neur_per_gpu_hour = "1.00"\n\n'
    text += '[[rate]]\nmodel = "B"\neur_per_gpu_hour = "1.10"\n\n[[discount]]\ntenant = "t"\npercent = "101"\n'
    problems = Problems(keep=True)
    card = parse_rates(text, problems=problems)
    assert [e.line for e in problems.found] == [3, 9, 15]
    assert [r.model for r in card.rates] == ["B"] and not card.discounts
    with pytest.raises(RatesError) as first:
        parse_rates(text)
    assert first.value.line == 3


def test_rate_coverage_uses_the_invoicing_rule() -> None:
    card = parse_rates('[[rate]]\nmodel = "H100"\neur_per_gpu_hour = "2.80"\nmig_slices = 7\n')
    ok = check_rate_coverage(card, [("H100", None, "par1"), ("H100", "3g.40gb", None)])
    assert ok.status is Status.PASS
    bad = check_rate_coverage(card, [("H100", None, None), ("L40S", None, "par1"), ("H100", "8g.80gb", None)])
    assert bad.status is Status.FAIL
    assert bad.details["unpriced"] == ["H100 (MIG profile 8g.80gb)", "L40S at site par1"]


def _apply(con: duckdb.DuckDBPyConnection, upto: int) -> None:
    for version, name, sql in store.migrations():
        if version <= upto:
            con.execute(sql)
            con.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($v, $n, now())",
                {"v": version, "n": name},
            )


def test_store_check_reads_without_creating_or_migrating(tmp_path: Path) -> None:
    db = tmp_path / "var" / "gpumeter.duckdb"
    missing = store.check_schema(db)
    assert missing.status is Status.FAIL and "gpumeter init" in missing.fix
    assert not db.parent.exists()

    db.parent.mkdir()
    con = duckdb.connect(str(db))
    _apply(con, 2)
    con.close()
    before = db.read_bytes()
    older = store.check_schema(db)
    assert older.status is Status.WARN and "migratable" in older.message
    assert older.details["pending"] == [f"{v:04d}_{n}" for v, n, _ in store.migrations() if v > 2]
    assert db.read_bytes() == before

    con = duckdb.connect(str(db))
    con.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($v, 'future', now())",
        {"v": store.code_version() + 1},
    )
    con.close()
    newer = store.check_schema(db)
    assert newer.status is Status.FAIL and "upgrade gpumeter" in newer.fix


def test_key_check_applies_the_signing_rules(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "audit.key"
    assert check_key(key, None).status is Status.FAIL
    ensure_key(key, "right", "example.eu/audit")
    assert check_key(key, None).status is Status.PASS
    assert check_key(key, "right").status is Status.PASS
    wrong = check_key(key, "wrong")
    assert wrong.status is Status.FAIL and "wrong passphrase" in wrong.message
    os.chmod(key, 0o644)
    loose = check_key(key, None)
    assert loose.status is Status.FAIL and "chmod 600" in loose.message
    os.chmod(key, 0o600)
    link = tmp_path / "link.key"
    link.symlink_to(key)
    assert check_key(link, None).status is Status.FAIL


def test_duplicate_causes_are_named() -> None:
    base = {"__name__": "DCGM_FI_DEV_GPU_UTIL", "UUID": "GPU-1", "job": "dcgm", "instance": "h:9400"}
    renamed = [{**base, "Hostname": "h"}, {**base, "hostname": "h"}]
    ha = [{**base, "Hostname": "h", "replica": "a"}, {**base, "Hostname": "h", "replica": "b"}]
    jobs = [{**base, "Hostname": "h"}, {**base, "Hostname": "h", "job": "dcgm-2"}]
    assert "Hostname -> hostname" in duplicate_cause(renamed)
    assert "HA Prometheus pair (label 'replica')" in duplicate_cause(ha)
    assert duplicate_cause(jobs) == "two scrape jobs ('dcgm', 'dcgm-2')"


def test_duplicate_causes_are_told_per_host() -> None:
    """The scrape targets behind duplicated GPUs: every cause of a host, each host under its causes."""
    targets = [
        {"Hostname": "a", "job": "dcgm", "replica": "prom-a"},
        {"hostname": "a", "job": "dcgm", "replica": "prom-a"},  # exporter 4.6 on host a
        {"Hostname": "a", "job": "dcgm", "replica": "prom-b"},  # and an HA pair
        {"Hostname": "b", "job": "dcgm", "instance": "b:9400"},
        {"Hostname": "b", "job": "dcgm", "instance": "10.0.0.2:9400"},  # one job reaching it twice
        {"Hostname": "c", "job": "dcgm"},  # another host's GPU named c, or other labels
    ]
    assert causes_by_host(targets) == {
        "an HA Prometheus pair (label 'replica')": ("a",),
        "several instances of scrape job 'dcgm'": ("b",),
        "series that name another host or differ in other labels": ("c",),
        "the host label renamed Hostname -> hostname (a dcgm-exporter upgrade)": ("a",),
    }


@pytest.mark.parametrize(("measured", "suggested"), [(14.94, 15), (29.7, 30), (61.0, 60), (7.9, 8), (4.0, 4)])
def test_suggested_interval_divides_an_hour(measured: float, suggested: int) -> None:
    assert suggested_interval_s(measured) == suggested
