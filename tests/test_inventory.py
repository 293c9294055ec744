"""Inventory loaders: each bad input stops with file, line and value, and stores nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpumeter.config import load_config
from gpumeter.errors import InputError
from metering.inventory import load_inventory, match_location, parse_storage, read_source
from metering.usage_store import store_inventory
from testing.stores import new_store
from tests import sites


def site(tmp_path: Path, **files: str) -> Path:
    cfg = sites.make_site(tmp_path, "http://127.0.0.1:9")
    for name, text in files.items():
        (tmp_path / name.replace("_", ".")).write_text(text)
    return cfg


def load(cfg: Path):  # type: ignore[no-untyped-def]
    return load_inventory(load_config(cfg).inventory)


def test_good_site_loads(tmp_path: Path) -> None:
    inv = load(site(tmp_path))
    assert inv.nodes["fr-par-gpu01"].country == "FR"
    assert inv.jobs['we"ird\\job name/é'].tenant == "gamma"
    assert inv.location_country("s3://eu-data/archive/2026/x") == "DE"  # longest prefix
    assert inv.location_country("s3://eu-data/sets") == "FR"
    assert inv.location_country("s3://eu-database/x") is None  # prefix ends at a segment
    assert inv.location_country("s3://nowhere/x") is None


@pytest.mark.parametrize(
    ("file", "text", "line", "value", "words"),
    [
        ("nodes_csv", "hostname,site,country,provider,rack\n", 1, "rack", "unknown column"),
        ("nodes_csv", "hostname,site,country\n", 1, "provider", "missing column"),
        ("nodes_csv", "hostname,site,country,provider\nh1,par,FR,x\nh2,par,XX,x\n", 3, "XX", "country"),
        ("nodes_csv", "hostname,site,country,provider\nh1,par,FR,x\nh1,par,FR,x\n", 3, "h1", "duplicate"),
        ("nodes_csv", "hostname,site,country,provider\nh1,par,fr,x\n", 2, "fr", "country"),
        ("storage_csv", "location,country\nbucket-without-scheme,FR\n", 2, "bucket-without-scheme", "URI"),
        ("tenants_csv", "tenant,legal_name,country,vat_id\nt1,T One,FR,FR40303265046\n", 2, "FR40303265046", "VAT"),
        ("tenants_csv", "tenant,legal_name,country,vat_id\nt1,T One,DE,FR40303265045\n", 2, "FR40303265045", "VAT"),
        ("jobs_csv", "job_id,tenant,project,data_locations\nj1,,p,\n", 2, "", "no tenant"),
        ("jobs_csv", "job_id,tenant,project,data_locations\nj1,acme,p,\nj1,acme,p,\n", 3, "j1", "duplicate job id"),
        ("jobs_csv", "job_id,tenant,project,data_locations\nj1,nobody,p,\n", 2, "nobody", "tenant"),
        ("jobs_csv", "job_id,tenant,project,data_locations\nj1,acme,p\n", 2, "j1,acme,p", "fields"),
        ("jobs_csv", "job_id,tenant,project,data_locations,class\nj1,acme,p,,preemptible\n", 2, "preemptible", "class"),
        # e-invoice format and Peppol electronic address (metering.einvoice)
        (
            "tenants_csv",
            "tenant,legal_name,country,vat_id,einvoice\nt1,T One,FR,FR40303265045,facturx\nt2,T Two,FR,,ubl\n",
            3,
            "ubl",
            "unknown einvoice format",
        ),
        (
            "tenants_csv",
            "tenant,legal_name,country,vat_id,einvoice,peppol_id\nt1,T One,FR,FR40303265045,peppol,9956:123\n",
            2,
            "9956:123",
            "unknown Peppol electronic address scheme",
        ),
        (
            "tenants_csv",
            "tenant,legal_name,country,vat_id,peppol_id\nt1,T One,BE,BE0403170701,0208:0403170702\n",
            2,
            "0208:0403170702",
            "mod 97",
        ),
        (
            "tenants_csv",
            "tenant,legal_name,country,vat_id,einvoice\nt1,T One,FR,FR40303265045,peppol\n",
            2,
            "peppol",
            "needs a peppol_id",
        ),
        (  # a Belgian tenant is peppol by default; without VAT id there is no enterprise number to use
            "tenants_csv",
            "tenant,legal_name,country,vat_id\nt1,T One,FR,FR40303265045\nt2,T Two,BE,\n",
            3,
            "peppol",
            "needs a peppol_id",
        ),
    ],
)
def test_bad_input_names_file_line_value(
    tmp_path: Path, file: str, text: str, line: int, value: str, words: str
) -> None:
    cfg = site(tmp_path, **{file: text})
    with pytest.raises(InputError) as info:
        load(cfg)
    e = info.value
    assert e.file is not None and e.file.endswith(file.replace("_", "."))
    assert e.line == line
    assert e.value == value
    assert words.lower() in e.message.lower()
    assert f":{line}:" in e.explain() and file.replace("_", ".") in e.explain()


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    cfg = site(tmp_path)
    (tmp_path / "tenants.csv").unlink()
    with pytest.raises(InputError, match="cannot read tenants file"):
        load(cfg)
    cfg = site(tmp_path / "b")
    (tmp_path / "b" / "nodes.csv").write_bytes(b"hostname,site,country,provider\nh\xff,p,FR,x\n")
    with pytest.raises(InputError, match="UTF-8"):
        load(cfg)


def test_failed_load_leaves_store_as_it_was(tmp_path: Path) -> None:
    cfg_path = site(tmp_path)
    cfg = load_config(cfg_path)
    con = new_store(cfg.store.database)
    v1 = store_inventory(con, load_inventory(cfg.inventory))
    before = con.execute("SELECT * FROM inventory_versions ORDER BY ALL").fetchall()
    jobs_before = con.execute("SELECT * FROM jobs ORDER BY ALL").fetchall()
    (tmp_path / "jobs.csv").write_text("job_id,tenant,project,data_locations\nj1,acme,p,\nj1,acme,p,\n")
    with pytest.raises(InputError):
        store_inventory(con, load_inventory(cfg.inventory))
    assert con.execute("SELECT * FROM inventory_versions ORDER BY ALL").fetchall() == before
    assert con.execute("SELECT * FROM jobs ORDER BY ALL").fetchall() == jobs_before
    # an unchanged file keeps its version; a changed one gets the next
    (tmp_path / "jobs.csv").write_text(sites.JOBS)
    (tmp_path / "nodes.csv").write_text(sites.NODES + "se-sto-gpu01,sto1,SE,x\n")
    v2 = store_inventory(con, load_inventory(cfg.inventory))
    assert v2["nodes"] == v1["nodes"] + 1 and v2["jobs"] == v1["jobs"] and v2["storage"] == v1["storage"]
    con.close()


def test_the_optional_class_column_is_stored_with_on_demand_as_default(tmp_path: Path) -> None:
    cfg_path = site(
        tmp_path,
        jobs_csv="job_id,tenant,project,data_locations,class\nj1,acme,p,,spot\nj2,acme,p,,\nj3,acme,p,,reserved\n",
    )
    cfg = load_config(cfg_path)
    inv = load_inventory(cfg.inventory)
    assert [inv.jobs[j].job_class for j in ("j1", "j2", "j3")] == ["spot", "on_demand", "reserved"]
    con = new_store(cfg.store.database)
    store_inventory(con, inv)
    assert con.execute("SELECT job_id, job_class FROM jobs ORDER BY job_id").fetchall() == [
        ("j1", "spot"),
        ("j2", "on_demand"),
        ("j3", "reserved"),
    ]
    (tmp_path / "jobs.csv").write_text(sites.JOBS)  # no class column: every job on demand
    store_inventory(con, load_inventory(cfg.inventory))
    assert {c for (c,) in con.execute("SELECT DISTINCT job_class FROM jobs").fetchall()} == {"on_demand"}
    con.close()


def test_storage_prefix_matching_is_by_segment(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("location,country\ns3://a,FR\ns3://a/b,DE\nnfs://filer/vol/,NL\n")
    locs = parse_storage(read_source("storage", p))
    assert match_location("s3://a/b/c", locs).country == "DE"  # type: ignore[union-attr]
    assert match_location("s3://a/bc", locs).country == "FR"  # type: ignore[union-attr]
    assert match_location("s3://ab", locs) is None
    assert match_location("nfs://filer/vol/x", locs).country == "NL"  # type: ignore[union-attr]


def test_einvoice_defaults_and_peppol_ids_are_stored(tmp_path: Path) -> None:
    """``einvoice`` is optional: peppol for a Belgian tenant (its 0208 address from its VAT
    id), facturx otherwise; both columns reach the store's tenants table."""
    cfg_path = site(
        tmp_path,
        tenants_csv="tenant,legal_name,country,vat_id,einvoice,peppol_id\n"
        "acme,Acme SA,FR,FR40303265045,,\n"
        "gamma,Gamma SRL,BE,BE 0403.170.701,,\n"
        "delta,Delta SRL,BE,BE0403170701,facturx,\n"
        "zeta,Zeta AG,CH,,peppol,0183:CHE113690319\n",
        jobs_csv="job_id,tenant,project,data_locations\nj1,acme,p,\n",
    )
    cfg = load_config(cfg_path)
    inv = load_inventory(cfg.inventory)
    got = {t: (x.einvoice, x.peppol_id) for t, x in inv.tenants.items()}
    assert got == {
        "acme": ("facturx", None),
        "gamma": ("peppol", "0208:0403170701"),
        "delta": ("facturx", None),
        "zeta": ("peppol", "0183:CHE113690319"),
    }
    con = new_store(cfg.store.database)
    store_inventory(con, inv)
    rows = con.execute("SELECT tenant, einvoice, peppol_id FROM tenants ORDER BY tenant").fetchall()
    assert rows == [
        ("acme", "facturx", None),
        ("delta", "facturx", None),
        ("gamma", "peppol", "0208:0403170701"),
        ("zeta", "peppol", "0183:CHE113690319"),
    ]
    con.close()
