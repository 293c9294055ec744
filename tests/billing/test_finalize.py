"""Drafts, gapless numbering, frozen documents and corrections, on a real DuckDB store."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import billing.run
from billing.errors import DocumentError, PricingError, RatesError, SupplierError, VatError
from billing.invoice import Invoice
from billing.numbering import check_gapless, parse_number
from billing.run import invoice_month
from tests.billing.conftest import A30, H100, Site, at

M = "2026-10"


def usage(site: Site) -> None:
    site.add_example_month()


def stored(site: Site) -> list[tuple[str, str, str, str | None, Decimal]]:
    return site.con.execute(
        "SELECT number, kind, tenant, references_number, total FROM billing_documents ORDER BY number"
    ).fetchall()


def files(site: Site) -> list[str]:
    d = site.out / M
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def doc(site: Site, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((site.out / M / name).read_text(encoding="utf-8"))
    return out


def test_drafts_are_regenerated_and_store_nothing(site: Site) -> None:
    usage(site)
    results = invoice_month(site.con, site.config, M, False)
    assert [r.tenant for r in results] == ["acme", "berlin", "nyc"]
    assert files(site) == [f"draft-{t}.{e}" for t in ("acme", "berlin", "nyc") for e in ("json", "pdf")]
    first = doc(site, "draft-acme.json")
    assert first["number"] is None and first["status"] == "draft"
    site.add_usage("j1", H100, 3600)
    site.con.execute("DELETE FROM usage WHERE job_id = 'j3'")
    invoice_month(site.con, site.config, M, False)
    assert doc(site, "draft-acme.json")["net"] != first["net"]
    assert "draft-nyc.json" not in files(site)  # a stale draft goes away
    assert stored(site) == []
    assert site.con.execute("SELECT count(*) FROM billing_sequences").fetchall() == [(0,)]


def test_finalize_numbers_gaplessly_and_reruns_create_nothing(site: Site) -> None:
    usage(site)
    invoice_month(site.con, site.config, M, False)
    results = invoice_month(site.con, site.config, M, True, now=at(2))
    assert [(r.number, r.tenant, r.created) for r in results] == [
        ("GM-2026-000001", "acme", True),
        ("GM-2026-000002", "berlin", True),
        ("GM-2026-000003", "nyc", True),
    ]
    assert files(site) == [f"GM-2026-00000{i}.{e}" for i in (1, 2, 3) for e in ("json", "pdf")]  # drafts gone
    before = stored(site)
    again = invoice_month(site.con, site.config, M, True, now=at(3))
    assert [r.created for r in again] == [False, False, False]
    assert stored(site) == before
    # the frozen bytes and their digests are those of the files
    for number, jb, js, pb, ps in site.con.execute(
        "SELECT number, json_bytes, json_sha256, pdf_bytes, pdf_sha256 FROM billing_documents"
    ).fetchall():
        assert (site.out / M / f"{number}.json").read_bytes() == bytes(jb)
        assert hashlib.sha256(bytes(jb)).hexdigest() == js
        assert (
            hashlib.sha256((site.out / M / f"{number}.pdf").read_bytes()).hexdigest()
            == ps
            == hashlib.sha256(bytes(pb)).hexdigest()
        )
    lines = site.con.execute(
        "SELECT typeof(amount), typeof(gpu_hours), typeof(unit_price) FROM billing_document_lines LIMIT 1"
    ).fetchall()
    assert lines == [("DECIMAL(18,2)", "DECIMAL(38,6)", "DECIMAL(38,12)")]
    acme = doc(site, "GM-2026-000001.json")
    assert acme["status"] == "finalized" and acme["issue_date"] == "2026-11-02" and acme["net"] == "30.40"
    # each finalization is in the audit log, vouching for the SHA-256 of both files
    logged = site.con.execute(
        "SELECT subject, tenant, month, entry FROM audit_entries WHERE entry_type = 'invoice_finalized' ORDER BY idx"
    ).fetchall()
    assert [(s, t, m) for s, t, m, _ in logged] == [
        ("GM-2026-000001", "acme", M),
        ("GM-2026-000002", "berlin", M),
        ("GM-2026-000003", "nyc", M),
    ]
    entry = json.loads(bytes(logged[0][3]))
    totals = {k: Decimal(v) for k, v in entry["totals"].items()}  # the log writes plain decimals
    assert totals == {"net": Decimal("30.40"), "vat": Decimal("6.08"), "total": Decimal("36.48")}
    assert entry["pdf"]["sha256"] == hashlib.sha256((site.out / M / "GM-2026-000001.pdf").read_bytes()).hexdigest()
    assert entry["json"]["sha256"] == hashlib.sha256((site.out / M / "GM-2026-000001.json").read_bytes()).hexdigest()


def test_deleted_files_are_restored_byte_for_byte(site: Site) -> None:
    usage(site)
    invoice_month(site.con, site.config, M, True, now=at(2))
    pdf = site.out / M / "GM-2026-000002.pdf"
    original = pdf.read_bytes()
    pdf.unlink()
    (site.out / M / "GM-2026-000003.json").write_text("tampered", encoding="utf-8")
    invoice_month(site.con, site.config, M, True, now=at(9))
    assert pdf.read_bytes() == original
    assert doc(site, "GM-2026-000003.json")["number"] == "GM-2026-000003"


def test_late_usage_gives_a_supplementary_invoice_and_a_decrease_a_credit_note(site: Site) -> None:
    usage(site)
    invoice_month(site.con, site.config, M, True, now=at(2))
    # late usage for acme (+1 h H100), berlin's usage corrected down to zero, nyc unchanged
    site.add_usage("j1", H100, 3600, window="2026-10-30T23:00:00")
    site.con.execute("DELETE FROM usage WHERE job_id = 'j2'")
    listed = invoice_month(site.con, site.config, M, False)
    assert [(r.tenant, r.kind, r.references) for r in listed if r.status == "draft"] == [
        ("acme", "invoice", "GM-2026-000001"),
        ("berlin", "credit_note", "GM-2026-000002"),
    ]
    assert [r.number for r in listed if r.status == "finalized"] == [
        "GM-2026-000001",
        "GM-2026-000002",
        "GM-2026-000003",
    ]
    assert files(site).count("draft-acme.json") == 1 and "draft-berlin.json" in files(site)
    results = invoice_month(site.con, site.config, M, True, now=at(20))
    new = [(r.number, r.kind, r.tenant, r.references, r.total) for r in results if r.created]
    assert new == [
        ("GM-2026-000004", "invoice", "acme", "GM-2026-000001", Decimal("3.36")),
        ("GMC-2026-000001", "credit_note", "berlin", "GM-2026-000002", Decimal("0.76")),
    ]
    sup = doc(site, "GM-2026-000004.json")
    assert sup["kind"] == "invoice" and sup["references"] == "GM-2026-000001"
    assert sup["lines"][0]["gpu_hours"] == "1.000000" and sup["lines"][0]["amount"] == "2.80"
    cn = doc(site, "GMC-2026-000001.json")
    assert cn["kind"] == "credit_note" and cn["type_code"] == "381"
    assert cn["references"] == "GM-2026-000002" and cn["references_issue_date"] == "2026-11-02"
    assert cn["vat_treatment"] == "reverse_charge" and cn["net"] == "0.76" and cn["lines"][0]["amount"] == "0.76"
    # the originals are untouched
    assert doc(site, "GM-2026-000001.json")["net"] == "30.40"
    # and a further re-run issues nothing: the month nets out
    again = invoice_month(site.con, site.config, M, True, now=at(21))
    assert not [r for r in again if r.created]
    listed = invoice_month(site.con, site.config, M, False)
    assert [r.status for r in listed] == ["finalized"] * 5 and not [r for r in listed if r.created]
    numbers = [parse_number(n) for (n, *_) in stored(site)]
    assert check_gapless(numbers) == []
    assert check_gapless([*numbers, parse_number("GM-2026-000007")]) != []
    assert not [f for f in files(site) if f.startswith("draft-")]


def test_one_document_per_direction_when_lines_move_both_ways(site: Site) -> None:
    site.add_job("j1", "acme")
    site.add_usage("j1", H100, 3600)
    site.add_usage("j1", A30, 3600)
    invoice_month(site.con, site.config, M, True, now=at(2))
    site.con.execute("DELETE FROM usage WHERE gpu_model = ?", [A30])
    site.add_usage("j1", H100, 3600, window="2026-10-06T00:00:00")
    results = [r for r in invoice_month(site.con, site.config, M, True, now=at(5)) if r.created]
    assert [(r.number, r.kind, r.net) for r in results] == [
        ("GM-2026-000002", "invoice", Decimal("2.80")),
        ("GMC-2026-000001", "credit_note", Decimal("1.20")),
    ]


def test_numbers_restart_with_the_year_of_issue(site: Site) -> None:
    usage(site)
    invoice_month(site.con, site.config, M, True, now=at(2))
    site.add_job("j9", "acme")
    site.add_usage("j9", H100, 3600, window="2026-12-10T00:00:00")
    from datetime import UTC, datetime

    (dec,) = invoice_month(site.con, site.config, "2026-12", True, now=datetime(2027, 1, 3, tzinfo=UTC))
    assert dec.number == "GM-2027-000001"


def test_a_failure_while_issuing_rolls_back_and_leaves_no_gap(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    usage(site)
    real = billing.run.render_pdf
    calls = {"n": 0}

    def flaky(inv: Invoice) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            raise DocumentError("disk full while rendering")
        return real(inv)

    monkeypatch.setattr(billing.run, "render_pdf", flaky)
    with pytest.raises(DocumentError):
        invoice_month(site.con, site.config, M, True, now=at(2))
    assert stored(site) == [] and files(site) == []
    assert site.con.execute("SELECT count(*) FROM billing_sequences").fetchall() == [(0,)]
    assert site.con.execute("SELECT count(*) FROM audit_entries").fetchall() == [(0,)]
    monkeypatch.setattr(billing.run, "render_pdf", real)
    results = invoice_month(site.con, site.config, M, True, now=at(2))
    assert [r.number for r in results] == ["GM-2026-000001", "GM-2026-000002", "GM-2026-000003"]


def test_bad_input_stops_and_changes_nothing(site: Site) -> None:
    usage(site)
    invoice_month(site.con, site.config, M, True, now=at(2))
    before, before_files = stored(site), files(site)
    site.add_usage("j1", H100, 3600)  # would need a supplementary invoice
    site.write_rates('[[rate]]\nmodel = "NVIDIA H100 80GB HBM3"\neur_per_gpu_hour = 2.80\n')
    with pytest.raises(RatesError) as info:
        invoice_month(site.con, site.config, M, True, now=at(5))
    assert info.value.line == 3 and str(info.value.file).endswith("rates.toml")
    assert stored(site) == before and files(site) == before_files


def test_usage_of_a_model_without_rate_names_model_and_job(site: Site) -> None:
    usage(site)
    site.add_job("b200-run", "nyc")
    site.add_usage("b200-run", "NVIDIA B200", 60)
    with pytest.raises(PricingError) as info:
        invoice_month(site.con, site.config, M, True, now=at(2))
    assert info.value.model == "NVIDIA B200" and info.value.job == "b200-run"
    assert stored(site) == [] and files(site) == []


def test_eu_tenant_without_vat_id_stops_invoicing(site: Site) -> None:
    usage(site)
    site.add_tenant("madrid", "Madrid Lab SL", "ES", "", "Calle Mayor 1, Madrid")
    site.add_job("j5", "madrid")
    site.add_usage("j5", H100, 60)
    with pytest.raises(VatError) as info:
        invoice_month(site.con, site.config, M, False)
    assert info.value.tenant == "madrid" and "'madrid'" in info.value.explain()
    assert files(site) == []


def test_issuing_needs_the_supplier_mandatory_mentions(site: Site, tmp_path: Path) -> None:
    usage(site)
    cfg_path = site.root / "gpumeter.toml"
    cfg_path.write_text(cfg_path.read_text(encoding="utf-8").replace('siren = "303265045"\n', ""), encoding="utf-8")
    from gpumeter.config import load_config

    cfg = load_config(cfg_path)
    invoice_month(site.con, cfg, M, False)  # drafts are fine
    with pytest.raises(SupplierError) as info:
        invoice_month(site.con, cfg, M, True, now=at(2))
    assert "siren" in info.value.message
    assert stored(site) == []


def test_without_saxonche_finalization_says_schematron_validation_was_skipped(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    import billing.validate

    monkeypatch.setattr(billing.validate, "saxon_available", lambda: False)
    monkeypatch.setattr(billing.run, "saxon_available", lambda: False)
    usage(site)
    results = invoice_month(site.con, site.config, M, True, now=at(2))
    assert all(r.validation.startswith("xsd passed; en16931") and "skipped" in r.validation for r in results)
    assert "skipped (saxonche not installed)" in billing.run.validation_summary(results)
