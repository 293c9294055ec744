"""Auditor bundles (layout: docs/formats.md): offline verification, tenant isolation, hostile input."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import stat
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from audit import attest, keys, note, policy, proof
from audit.archive import Limits
from audit.bundle import export_bundle
from audit.entries import key_event
from audit.errors import BundleError, VerificationError
from audit.log import AuditLog
from audit.pinning import pinned_keys
from audit.verify import check_bundle, verify_bundle
from testing.stores import new_store
from tests.audit import fleet

EU = policy.policy(["EU"])
SIGNER = fleet.signer()
VKEY = SIGNER.vkey
AUG = fleet.T0.replace(month=8)


@dataclass
class Site:
    con: duckdb.DuckDBPyConnection
    dir: Path
    july: Path
    acme: Path
    august: Path


def _export(con: duckdb.DuckDBPyConnection, month: str, tenant: str | None, out: Path, when, signers=(SIGNER,)) -> Path:  # type: ignore[no-untyped-def]
    attest.sync_inventory(con, at=when)
    attest.sync_usage_windows(con, month, at=when)
    attest.attest_month(con, month, EU, at=when)
    export_bundle(con, month, tenant, out, list(signers), fleet.ORIGIN, EU, by="auditor-bot", at=when)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    d = tmp_path_factory.mktemp("bundles")
    con = new_store(d / "g.duckdb")
    fleet.july(con)
    invoice_at = fleet.T0 + timedelta(days=32)
    from audit.record import record_invoice_finalized

    for tenant, n in (("acme", 1), ("globex", 2)):
        record_invoice_finalized(
            con,
            number=f"F-2026-{n:04d}",
            tenant=tenant,
            period="2026-07",
            totals={"net": "10.00", "vat": "2.00", "total": "12.00"},
            currency="EUR",
            json_document=json.dumps({"tenant": tenant}).encode(),
            pdf_document=f"%PDF {tenant} {fleet.TENANTS[tenant][0]} {fleet.TENANTS[tenant][2]}".encode(),
            at=invoice_at,
        )
    july = _export(con, "2026-07", None, d / "july.zip", invoice_at)
    acme = _export(con, "2026-07", "acme", d / "acme.zip", invoice_at)
    fleet.meter(con, AUG, {"globex-run-1": ("gpu-de-1", 120)})
    august = _export(con, "2026-08", None, d / "august.zip", AUG + timedelta(days=32))
    return Site(con, d, july, acme, august)


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write(
    path: Path, members: dict[str, bytes], extra: Sequence[zipfile.ZipInfo | tuple[zipfile.ZipInfo, bytes]] = ()
) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests want
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members.items():
                z.writestr(name, data)
            for item in extra:
                info, data = item if isinstance(item, tuple) else (item, b"x")
                z.writestr(info, data)
    return path


def _tampered(site: Site, src: Path, edit: Callable[[dict[str, bytes]], object], name: str = "bad.zip") -> Path:
    members = _members(src)
    edit(members)
    return _write(site.dir / name, members)


# ---------------------------------------------------------------------------- happy paths


def test_layout_is_the_spec_layout(site: Site) -> None:
    m = _members(site.july)
    names = set(m)
    assert {"checkpoint", "policy.json", "VERIFY.md", "report/sovereignty.csv", "report/summary.md"} <= names
    assert "consistency.json" not in names  # the log's first month
    assert [n for n in names if n.startswith("keys/")] == [
        "keys/audit.test.example.eu_log+" + note.parse_vkey(VKEY).key_id.hex() + ".vkey"
    ]
    assert m[next(n for n in names if n.startswith("keys/"))].decode().strip() == VKEY
    entries = sorted(int(n[8:-5]) for n in names if n.startswith("entries/") and n.endswith(".json"))
    log = AuditLog(site.con)
    for i in entries:
        data = m[f"entries/{i}.json"]
        assert data == log.entry(i)  # the exact canonical bytes the tree hashes
        p = proof.verify_proof(m[f"entries/{i}.tlog-proof"], data, pinned_keys([VKEY], fleet.ORIGIN))
        assert p.checkpoint.note == m["checkpoint"].decode()
        entry = json.loads(data)
        assert set(entry) >= {"type", "time"}
    docs = [n for n in names if n.startswith("documents/")]
    assert {"documents/F-2026-0001.pdf", "documents/F-2026-0002.json", "documents/inventory-nodes-v1.csv"} <= set(docs)
    rows = list(csv.reader(io.StringIO(m["report/sovereignty.csv"].decode())))
    assert rows[0] == [
        "job_id",
        "tenant",
        "hosts",
        "countries",
        "data_locations",
        "data_countries",
        "in_eu",
        "findings",
    ]
    assert [r[0] for r in rows[1:]] == sorted(fleet.JOBS)
    assert json.loads(m["policy.json"])["countries"] == sorted(EU.countries)
    assert b"gpumeter audit verify" in m["VERIFY.md"] and b"VerifyInclusion" in m["VERIFY.md"]
    # it tells the auditor what to pin, each way of pinning, and what exit status 4 means
    for said in (b"--key", b"--policy FILE", b"--witness", b"--quorum K", b"--tsa-cert FILE", b"4 means", b"invoice"):
        assert said in m["VERIFY.md"], said


def test_round_trip_with_a_pinned_key(site: Site) -> None:
    r = verify_bundle(site.july, [VKEY])
    assert (r.month, r.tenant, r.key_source, r.notice) == ("2026-07", None, "pinned", None)
    assert r.attestations == 4 and r.outside == ("acme-train-2",) and r.policy == "EU/v1"
    assert r.consistency_from is None and r.documents >= 6
    a = verify_bundle(site.acme, [VKEY])
    assert a.tenant == "acme" and a.attestations == 2
    aug = verify_bundle(site.august, [VKEY])
    assert aug.consistency_from is not None and aug.consistency_from < aug.checkpoint_size


def test_bundle_keys_are_used_only_with_a_loud_notice(site: Site) -> None:
    r = verify_bundle(site.july)
    assert r.key_source == "bundle" and r.notice is not None
    assert r.notice.startswith("verified against the key in the bundle (fingerprint SHA256:")
    assert "pass --key to pin it" in r.notice


def test_a_different_pinned_key_fails(site: Site) -> None:
    with pytest.raises(VerificationError) as err:
        verify_bundle(site.july, [fleet.signer(seed=7).vkey])
    assert err.value.member == "checkpoint"
    with pytest.raises(VerificationError):  # a witness (cosignature) key cannot stand in for the log key
        witness = note.Signer(fleet.ORIGIN, keys.generate_key(), note.SIG_COSIGNATURE_V1)
        verify_bundle(site.july, [witness.vkey])


def test_tenant_bundle_holds_nothing_of_other_tenants(site: Site) -> None:
    raw = site.acme.read_bytes()
    members = _members(site.acme)
    secrets = [
        "globex",
        "Globex",
        "DE136695976",
        "F-2026-0002",
        *[j for j, (t, _) in fleet.JOBS.items() if t != "acme"],
    ]
    blobs = [raw, *members.values(), "\n".join(members).encode()]
    for secret in secrets:
        for blob in blobs:
            assert secret.encode() not in blob, secret
    assert b"acme-train-1" in members["report/sovereignty.csv"]
    assert "documents/F-2026-0001.pdf" in members and not any("inventory" in n for n in members)
    # the proofs are against the global root, which the whole-log bundle of the same log reaches too
    r = verify_bundle(site.acme, [VKEY])
    assert r.checkpoint_size > verify_bundle(site.july, [VKEY]).checkpoint_size


def test_rotation_keeps_consistency_verifiable_with_only_the_new_key(tmp_path: Path) -> None:
    con = new_store(tmp_path / "g.duckdb")
    fleet.july(con)
    _export(con, "2026-07", None, tmp_path / "july.zip", fleet.T0 + timedelta(days=31))
    new = fleet.signer(seed=2)
    log = AuditLog(con)
    at = fleet.T0 + timedelta(days=35)
    log.append(key_event(at=at, event="key_rotated", key=new.vkey, previous=VKEY), at=at)
    log.sign_checkpoint([SIGNER, new], fleet.ORIGIN, at=at)
    fleet.meter(con, AUG, {"acme-train-1": ("gpu-fr-1", 60)})
    aug = _export(con, "2026-08", None, tmp_path / "aug.zip", AUG + timedelta(days=31), signers=(new,))
    r = verify_bundle(aug, [new.vkey])  # the July checkpoint (old key only) is accepted via key_rotated
    assert r.consistency_from is not None and r.keys == (new.verifier.fingerprint,)
    with pytest.raises(VerificationError):
        verify_bundle(aug, [VKEY])  # the old key alone did not sign August's checkpoint
    con.close()


# ------------------------------------------------------------------------------- hostile


def _info(name: str, mode: int = 0o100644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


@pytest.mark.parametrize(
    ("extra", "member"),
    [
        (_info("../evil.txt"), "../evil.txt"),
        (_info("/etc/cron.d/evil"), "/etc/cron.d/evil"),
        (_info("entries/../../evil.json"), "entries/../../evil.json"),
        (_info("entries\\1.json"), "entries\\1.json"),
        (_info("documents/link", stat.S_IFLNK | 0o777), "documents/link"),
        (_info("notes.txt"), "notes.txt"),
        (_info("checkpoint"), "checkpoint"),  # a second member of the same name
    ],
)
def test_unsafe_members_are_refused(site: Site, extra: zipfile.ZipInfo, member: str) -> None:
    bad = _write(site.dir / "slip.zip", _members(site.july), [extra])
    with pytest.raises(BundleError) as err:
        verify_bundle(bad, [VKEY])
    assert err.value.member == member


def test_size_and_count_limits(site: Site) -> None:
    with pytest.raises(BundleError, match="members") as err:
        verify_bundle(site.july, [VKEY], limits=Limits(members=10))
    with pytest.raises(BundleError) as err:
        verify_bundle(site.july, [VKEY], limits=Limits(document=10))
    assert err.value.member is not None and err.value.member.startswith("documents/")
    big = _tampered(site, site.july, lambda m: m.__setitem__("entries/9999.json", b" " * (2 << 20)))
    with pytest.raises(BundleError) as err:
        verify_bundle(big, [VKEY])
    assert err.value.member == "entries/9999.json"


def _first_entry(m: dict[str, bytes]) -> int:
    return min(int(n[8:-5]) for n in m if n.startswith("entries/") and n.endswith(".json"))


def _proof_edit(site: Site, fn: Callable[[str], str]) -> tuple[Path, str]:
    m = _members(site.july)
    name = f"entries/{_first_entry(m)}.tlog-proof"
    m[name] = fn(m[name].decode()).encode()
    return _write(site.dir / "proof.zip", m), name


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (
            lambda t: t.replace("\nindex", "\nindex", 1).replace("\n\n", "\n" + ("A" * 43 + "=\n") * 65 + "\n", 1),
            "at most 64",
        ),
        (lambda t: t.replace("=\n", "!\n", 1), "base64"),
        (lambda t: t.replace("index ", "index 0", 1), "leading zeros"),
        (lambda t: t.replace("\n\n", "\n\x07\n", 1), "control character"),
    ],
)
def test_malformed_proofs_are_refused_by_name(site: Site, fn: Callable[[str], str], match: str) -> None:
    bad, name = _proof_edit(site, fn)
    with pytest.raises(VerificationError, match=match) as err:
        verify_bundle(bad, [VKEY])
    assert err.value.member == name


def _resign(site: Site, body: str, signer: note.Signer) -> Path:
    """A bundle whose checkpoint (everywhere) is replaced by ``body`` signed by ``signer``."""
    m = _members(site.july)
    old = m["checkpoint"].decode()
    new = note.sign_note(body, [signer])
    m["checkpoint"] = new.encode()
    for n in list(m):
        if n.endswith(".tlog-proof"):
            m[n] = m[n].decode().replace(old, new).encode()
    return _write(site.dir / "resigned.zip", m)


def test_checkpoint_root_must_be_32_bytes_even_when_signed(site: Site) -> None:
    attacker = fleet.signer(seed=66)
    short = base64.b64encode(b"\x01" * 31).decode()
    bad = _resign(site, f"{fleet.ORIGIN}\n20\n{short}\n", attacker)
    with pytest.raises(VerificationError, match="31 bytes") as err:
        verify_bundle(bad, [attacker.vkey])
    assert err.value.member == "checkpoint"


def test_checkpoint_text_must_be_clean_utf8(site: Site) -> None:
    for bad_bytes in (b"\xff\xfe", b"\x01"):
        bad = _tampered(site, site.july, lambda m, b=bad_bytes: m.__setitem__("checkpoint", b + m["checkpoint"]))  # type: ignore[misc]
        with pytest.raises(VerificationError) as err:
            verify_bundle(bad, [VKEY])
        assert err.value.member == "checkpoint"


def test_replayed_older_checkpoint_is_refused(site: Site) -> None:
    older = _members(site.july)["checkpoint"]
    bad = _tampered(site, site.august, lambda m: m.__setitem__("checkpoint", older))
    with pytest.raises(VerificationError, match="different checkpoint"):
        verify_bundle(bad, [VKEY])
    # and a bundle whose proofs all claim the older checkpoint cannot reach its root
    m = _members(site.august)
    newer = m["checkpoint"].decode()
    for n in list(m):
        if n.endswith(".tlog-proof") or n == "checkpoint":
            m[n] = m[n].decode().replace(newer, older.decode()).encode()
    with pytest.raises(VerificationError):
        verify_bundle(_write(site.dir / "replay.zip", m), [VKEY])


def _drop_an_attestation(m: dict[str, bytes]) -> None:
    """Remove one job attestation (entry and proof): an operator hiding a job."""
    name = next(n for n, d in sorted(m.items()) if n.startswith("entries/") and b'"job_attestation"' in d)
    del m[name]
    del m[name.replace(".json", ".tlog-proof")]


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda m: m.pop("consistency.json"), "consistency.json"),
        (lambda m: m.pop(next(n for n in m if n.startswith("documents/"))), "missing document"),
        (lambda m: m.__setitem__("documents/extra.pdf", b"%PDF"), "no entry names"),
        (lambda m: m.pop(next(n for n in m if n.endswith(".tlog-proof"))), "without its tlog-proof"),
        (lambda m: m.pop(next(n for n in m if n.endswith(".json") and n.startswith("entries/"))), "proof without"),
        (_drop_an_attestation, "differ from those the export entry lists"),
    ],
)
def test_missing_or_extra_members_are_refused(
    site: Site, edit: Callable[[dict[str, bytes]], object], needle: str
) -> None:
    bad = _tampered(site, site.august, lambda m: edit(m) and None)
    result = check_bundle(bad, [VKEY])
    assert not result.passed and result.failure is not None and needle in result.failure


def test_swapped_proofs_are_refused(site: Site) -> None:
    m = _members(site.july)
    idx = sorted(int(n[8:-5]) for n in m if n.startswith("entries/") and n.endswith(".json"))[:2]
    a, b = (f"entries/{i}.tlog-proof" for i in idx)
    m[a], m[b] = m[b], m[a]
    with pytest.raises(VerificationError, match="proof is for index") as err:
        verify_bundle(_write(site.dir / "swap.zip", m), [VKEY])
    assert err.value.member == a


@pytest.mark.parametrize("bundle", ["july", "acme", "august"])
def test_any_one_byte_edit_of_any_member_is_caught(site: Site, bundle: str) -> None:
    src = getattr(site, bundle)
    good = _members(src)
    for name, data in good.items():
        for pos in {0, len(data) // 2, len(data) - 2}:
            m = dict(good)
            changed = bytearray(data)
            changed[pos] ^= 0x01
            m[name] = bytes(changed)
            bad = _write(site.dir / "edit.zip", m)
            result = check_bundle(bad, [VKEY])
            assert not result.passed, (name, pos)


def test_flipping_bytes_of_the_zip_file_never_verifies_wrong_content(site: Site) -> None:
    raw = bytearray(site.july.read_bytes())
    with zipfile.ZipFile(site.july) as z:
        spans = [(i.header_offset + 30 + len(i.filename.encode()), i.compress_size) for i in z.infolist()]
    for start, size in spans:
        pos = start + size // 2
        bad = bytearray(raw)
        bad[pos] ^= 0x40
        path = site.dir / "flip.zip"
        path.write_bytes(bytes(bad))
        assert not check_bundle(path, [VKEY]).passed
    assert hashlib.sha256(bytes(raw)).digest() == hashlib.sha256(site.july.read_bytes()).digest()


@pytest.mark.parametrize("month", ["2026-13", "1999-12", "2026-7"])
def test_a_bad_month_is_refused_before_anything_is_logged(tmp_path: Path, month: str) -> None:
    """``audit export --month`` with a bad month: one MonthError, and the log stays empty."""
    from audit.bundle import attest_and_export
    from gpumeter.months import MonthError

    con = new_store(tmp_path / "g.duckdb")
    fleet.july(con)
    with pytest.raises(MonthError, match="YYYY-MM"):
        attest_and_export(con, month, None, tmp_path / "b.zip", [SIGNER], fleet.ORIGIN, EU, by="t", at=AUG)
    assert AuditLog(con).size() == 0 and not (tmp_path / "b.zip").exists()


def test_a_formula_job_id_is_neutralised_and_the_verifier_agrees(tmp_path: Path) -> None:
    """report/sovereignty.csv writes ``'=cmd…`` for a job id a spreadsheet would run, and the
    verifier re-derives the same cell through audit.report."""
    hostile = "=cmd|'/C calc'!A0"
    con = new_store(tmp_path / "g.duckdb")
    try:
        fleet.load_inventory(con)
        con.execute(
            "INSERT INTO jobs (job_id, tenant, project, data_locations) VALUES ($j, 'acme', '-p', [])", {"j": hostile}
        )
        fleet.meter(con, fleet.T0, {hostile: ("gpu-fr-1", 3600), "acme-train-1": ("gpu-ch-1", 60)})
        bundle = _export(con, "2026-07", None, tmp_path / "b.zip", fleet.T0 + timedelta(days=32))
    finally:
        con.close()
    rows = list(csv.reader(io.StringIO(_members(bundle)["report/sovereignty.csv"].decode())))
    assert [r[0] for r in rows[1:]] == ["'" + hostile, "acme-train-1"]
    result = verify_bundle(bundle, [VKEY])
    assert result.pinned and result.attestations == 2 and result.outside == ("acme-train-1",)
