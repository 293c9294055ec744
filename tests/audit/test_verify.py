"""The one bundle verifier on unusual, damaged and hostile bundles.

Bundles re-zipped in other orders and compressions verify; every one-byte edit of any
member, damaged directories, local headers and end records, hostile members and the
limits are refused with the member named; memory stays bounded on a zip bomb.
(tests/audit/test_bundle.py holds the layout, round trips and named refusals.)
"""

from __future__ import annotations

import json
import random
import struct
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from audit import policy
from audit.archive import BundleReader, Limits
from audit.attest import policy_digest
from audit.bundle import export_bundle
from audit.canonical import parse_entries
from audit.entries import job_attestation
from audit.errors import BundleError, EntryError, VerificationError
from audit.log import AuditLog
from audit.verify import VerifyResult, check_bundle, verify_bundle
from testing.stores import new_store
from tests.audit import fleet

EU = policy.policy(["EU"])
SIGNER = fleet.signer()
PINNED = [SIGNER.vkey]
EXPORTED_AT = fleet.T0 + timedelta(days=32)


def _attestation(k: int, **extra: Any) -> dict[str, Any]:
    entry = job_attestation(
        at=fleet.T0 + timedelta(days=31),
        job_id=f"job-{k:05d}",
        tenant=None if k % 17 == 0 else f"tenant-{k % 7}",
        month="2026-07",
        gpu_seconds=f"{3600 + k}.5",
        hosts=[f"gpu-{k % 5}.par1", f"gpu-{(k + 3) % 5}.fra2"],
        countries=["DE", "FR"],
        data_locations=[f"s3://eu/{k % 7}"] if k % 3 else [],
        data_countries=["DE"] if k % 3 else [],
        policy="EU/v1",
        policy_sha256=policy_digest(EU),
        in_eu=k % 11 != 0,
        findings=[] if k % 11 else [f"host gpu-{k % 5}.zrh1 is in CH, outside the boundary"],
    )
    entry.update(extra)
    return entry


def _bundle(tmp: Path, name: str, entries: Sequence[dict[str, Any]]) -> Path:
    con = new_store(tmp / f"{name}.duckdb")
    AuditLog(con).append_many(list(entries), at=fleet.T0)
    out = tmp / f"{name}.zip"
    export_bundle(con, "2026-07", None, out, [SIGNER], fleet.ORIGIN, EU, by="test", at=EXPORTED_AT)
    con.close()
    return out


@dataclass
class Bundles:
    dir: Path
    big: Path  # 250 attestations: many runs of same-shaped directory records, indices crossing 99 -> 100
    odd: Path  # CSV cells that need quoting, a superseded attestation, a small log


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    d = tmp_path_factory.mktemp("batched")
    big = _bundle(d, "big", [_attestation(k) for k in range(250)])
    odd_entries = [_attestation(k) for k in range(6)]
    odd_entries[1]["findings"] = ['said "no", twice', "line one\nline two"]
    odd_entries.append(_attestation(2, supersedes=2, gpu_seconds="1.5"))
    odd = _bundle(d, "odd", odd_entries)
    return Bundles(d, big, odd)


def _members(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as z:
        return [(info, z.read(info)) for info in z.infolist()]


def _rewrite(path: Path, out: Path, edit: Callable[[list[tuple[zipfile.ZipInfo, bytes]]], object]) -> Path:
    members = _members(path)
    edit(members)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests want
        with zipfile.ZipFile(out, "w") as z:
            for info, data in members:
                z.writestr(info, data)
    return out


def _good(path: Path) -> VerifyResult:
    return verify_bundle(path, PINNED)


def _refused(path: Path) -> VerificationError:
    with pytest.raises(VerificationError) as err:
        verify_bundle(path, PINNED)
    assert err.value.member or err.value.entry is not None, err.value  # every refusal names where
    return err.value


# ------------------------------------------------------------------------------- reading


def test_good_bundles_verify(bundles: Bundles) -> None:
    r = _good(bundles.big)
    assert r.entries == 252 and r.attestations == 250  # 250 attestations, the key event, the export
    assert len(r.outside) == 23 and r.key_source == "pinned"
    odd = _good(bundles.odd)
    assert odd.attestations == 6 and odd.outside == ("job-00000",)


def test_deflated_and_reordered_bundles_verify_alike(bundles: Bundles) -> None:
    want = _good(bundles.big)

    def deflate(members: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
        for info, _ in members:
            info.compress_type = zipfile.ZIP_DEFLATED

    def by_name(members: list[tuple[zipfile.ZipInfo, bytes]]) -> None:  # as `zip -r` would order them
        members.sort(key=lambda m: m[0].filename)

    def extra_fields(members: list[tuple[zipfile.ZipInfo, bytes]]) -> None:  # local and central extra fields
        for info, _ in members:
            info.extra = b"\xfe\xca\x04\x00gpum"

    for name, edit in (
        ("extra-fields", extra_fields),
        ("deflated", deflate),
        ("reversed", lambda m: m.reverse()),
        ("shuffled", lambda m: random.Random(5).shuffle(m)),
        ("sorted", by_name),
    ):
        assert _good(_rewrite(bundles.big, bundles.dir / f"{name}.zip", edit)) == want, name


def test_the_reader_reads_what_zipfile_reads(bundles: Bundles) -> None:
    deflated = _rewrite(bundles.big, bundles.dir / "deflated-all.zip", lambda m: [
        setattr(info, "compress_type", zipfile.ZIP_DEFLATED) for info, _ in m
    ])  # fmt: skip
    for path in (bundles.big, deflated):
        with BundleReader(path) as ours, zipfile.ZipFile(path) as ref:
            indices = ours.entry_indices
            names = [*ours.names(), *(f"entries/{i}.{kind}" for i in indices for kind in ("json", "tlog-proof"))]
            assert sorted(names) == sorted(n for n in ref.namelist() if not n.endswith("/"))
            for name in names:
                assert ours.read(name) == ref.read(name)


def test_unusual_but_valid_entries_and_proofs_verify(bundles: Bundles) -> None:
    # an entry with a float (RFC 8785 number form) and one with non-ASCII text
    for name, extra in (
        ("float", {"type": "note", "month": "2026-07", "x": 1.5, "big": 1e21, "small": -0.000001}),
        ("utf8", {"type": "note", "month": "2026-07", "who": "Zürich", "k\u00e9y": "🚀"}),
    ):
        entry = {"time": "2026-07-02T00:00:00Z", **extra}
        _good(_bundle(bundles.dir, name, [_attestation(0), entry]))

    # a tlog-proof may carry an unauthenticated extra line
    def extra_line(members: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
        k = next(k for k, (info, _) in enumerate(members) if info.filename.endswith(".tlog-proof"))
        info, data = members[k]
        members[k] = (info, data.replace(b"\nindex ", b"\nextra AAAA\nindex ", 1))

    _good(_rewrite(bundles.big, bundles.dir / "extra.zip", extra_line))


# ------------------------------------------------------------------------------ refusals


def _edited(src: Path, out: Path, name: str, pos: int) -> Path:
    def edit(members: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
        k = next(k for k, (info, _) in enumerate(members) if info.filename == name)
        info, data = members[k]
        changed = bytearray(data)
        changed[pos] ^= 0x01
        members[k] = (info, bytes(changed))

    return _rewrite(src, out, edit)


@pytest.mark.parametrize("which", ["big", "odd"])
def test_every_one_byte_edit_is_refused(bundles: Bundles, which: str) -> None:
    src: Path = getattr(bundles, which)
    rng = random.Random(which)
    members = _members(src)
    if which == "big":  # every member but the entries, and a sample of those
        entries = [m for m in members if m[0].filename.startswith("entries/")]
        members = [m for m in members if not m[0].filename.startswith("entries/")] + rng.sample(entries, 12)
    for info, data in members:
        positions = {0, len(data) // 2, len(data) - 2, rng.randrange(len(data))} if data else set()
        if which == "odd" and info.filename in ("entries/1.json", "entries/5.tlog-proof", "consistency.json"):
            positions = set(range(len(data)))  # every byte: each JSON token; header, index, path lines, note
        for pos in positions:
            err = _refused(_edited(src, bundles.dir / "edit.zip", info.filename, pos))
            assert err.member is not None, (info.filename, pos)


def test_a_damaged_archive_is_never_accepted(bundles: Bundles) -> None:
    raw = bundles.big.read_bytes()
    want = _good(bundles.big)
    with zipfile.ZipFile(bundles.big) as z:
        infos = z.infolist()
        (cd_size, cd_offset) = struct.unpack("<LL", raw[-10:-2]) if raw[-22:-18] == b"PK\x05\x06" else (0, 0)
    headers = [(i.header_offset, 30 + len(i.filename)) for i in infos]
    positions = list(range(len(raw) - 22, len(raw)))  # the end record
    positions += random.Random(1).sample(range(cd_offset, cd_offset + cd_size), 150)  # the directory
    for start, length in random.Random(2).sample(headers, 25):  # local headers
        positions.append(start + random.Random(start).randrange(length))
    bad = bundles.dir / "damaged.zip"
    for pos in positions:
        for flip in (0x01, 0x80):
            damaged = bytearray(raw)
            damaged[pos] ^= flip
            bad.write_bytes(bytes(damaged))
            result = check_bundle(bad, PINNED)
            # a flip in a field no zip reader uses (times, attributes) may leave it valid: then it says the same
            assert not result.passed or result.result == want, pos


def test_hostile_members_are_refused_by_name(bundles: Bundles) -> None:
    cases: list[tuple[Callable[[list[tuple[zipfile.ZipInfo, bytes]]], object], str]] = []
    for name, mode in (("../evil.txt", 0o100644), ("documents/link", 0o120777), ("notes.txt", 0o100644)):
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        cases.append((lambda m, i=info: m.append((i, b"x")), name))  # type: ignore[misc]
    cases.append((lambda m: m.append(m[0]), "checkpoint"))  # a member twice
    cases.append(
        (
            lambda m: m.pop(next(k for k, (i, _) in enumerate(m) if i.filename == "entries/3.tlog-proof")),
            "entries/3.json",
        )
    )
    cases.append(
        (
            lambda m: m.pop(next(k for k, (i, _) in enumerate(m) if i.filename == "entries/7.json")),
            "entries/7.tlog-proof",
        )
    )

    def swap(m: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
        a = next(k for k, (i, _) in enumerate(m) if i.filename == "entries/3.tlog-proof")
        b = next(k for k, (i, _) in enumerate(m) if i.filename == "entries/4.tlog-proof")
        (ia, da), (ib, db) = m[a], m[b]
        m[a], m[b] = (ia, db), (ib, da)

    cases.append((swap, "entries/3.tlog-proof"))
    cases.append((lambda m: m.append((zipfile.ZipInfo("entries/9999.json"), b'{"x":1}')), "entries/9999.json"))
    for k, (edit, member) in enumerate(cases):
        err = _refused(_rewrite(bundles.big, bundles.dir / f"hostile-{k}.zip", edit))
        assert err.member == member, (k, err)


def test_the_limits_are_kept(bundles: Bundles) -> None:
    for limits, message in (
        (Limits(members=100), "members"),
        (Limits(entry=100), "at most 100"),
        (Limits(proof=100), "at most 100"),
        (Limits(total=1000), "size limit"),
        (Limits(central_directory=1000), "central directory"),
    ):
        with pytest.raises(BundleError, match=message):
            verify_bundle(bundles.big, PINNED, limits=limits)


# ------------------------------------------------------------------------- hostile input


def _zip(path: Path, members: dict[str, bytes], stored: frozenset[str] = frozenset()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, data in members.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_STORED if name in stored else None)
    return path


def _zip64_directory(src: Path, out: Path, name: str, field: str, value: int) -> Path:
    """``src`` with the directory record of ``name`` giving ``field`` ("compressed" or "offset")
    as ``value`` through a zip64 extra field (its 32-bit field set to 0xFFFFFFFF)."""
    raw = src.read_bytes()
    count, _, cd_offset = struct.unpack_from("<HLL", raw, len(raw) - 12)
    records, pos = [], cd_offset
    for _ in range(count):
        nlen, elen, clen = struct.unpack_from("<3H", raw, pos + 28)
        record = bytearray(raw[pos : pos + 46 + nlen + elen + clen])
        if record[46 : 46 + nlen] == name.encode():
            at = {"compressed": 20, "offset": 42}[field]
            record[at : at + 4] = b"\xff\xff\xff\xff"
            extra = struct.pack("<HHQ", 1, 8, value)
            record[30:32] = struct.pack("<H", elen + len(extra))
            record[46 + nlen + elen : 46 + nlen + elen] = extra
        records.append(bytes(record))
        pos += 46 + nlen + elen + clen
    directory = b"".join(records)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), cd_offset, 0)
    out.write_bytes(raw[:cd_offset] + directory + end)
    return out


def test_sizes_and_offsets_beyond_any_file_are_refused_by_name(bundles: Bundles) -> None:
    """A zip64 offset or compressed size no file can have (up to 2**64 - 1) is a named
    refusal, not a traceback."""
    for k, (name, field, value) in enumerate(
        [
            ("policy.json", "offset", 2**64 - 1),
            ("policy.json", "offset", 2**63 + 5),
            ("policy.json", "compressed", 2**64 - 1),
            ("entries/5.tlog-proof", "offset", 2**63),
            ("entries/5.json", "offset", bundles.big.stat().st_size - 3),
        ]
    ):
        err = _refused(_zip64_directory(bundles.big, bundles.dir / f"zip64-{k}.zip", name, field, value))
        assert err.member == name, (name, field, value, err)


def test_a_zip_bomb_is_refused_from_its_directory(bundles: Bundles) -> None:
    members = {info.filename: data for info, data in _members(bundles.big)}
    for k in range(300):
        members[f"entries/{10_000 + k}.json"] = b"\x00" * (1 << 20)  # 1 MiB of zeros deflates to ~1 KiB
    path = _zip(bundles.dir / "bomb.zip", members)
    assert path.stat().st_size < 2 << 20
    with pytest.raises(BundleError, match=r"would expand 1\d\d\d times its compressed size; at most 100") as err:
        verify_bundle(path, PINNED)
    assert err.value.member is not None and err.value.member.startswith("entries/1")


@pytest.fixture(scope="module")
def august(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second month's bundle, with consistency.json."""
    d = tmp_path_factory.mktemp("august")
    con = new_store(d / "g.duckdb")
    AuditLog(con).append_many([_attestation(k) for k in range(5)], at=fleet.T0)
    export_bundle(con, "2026-07", None, d / "july.zip", [SIGNER], fleet.ORIGIN, EU, by="t", at=EXPORTED_AT)
    AuditLog(con).append_many([_attestation(k, month="2026-08") for k in range(5, 8)], at=EXPORTED_AT)
    aug = d / "aug.zip"
    export_bundle(con, "2026-08", None, aug, [SIGNER], fleet.ORIGIN, EU, by="t", at=EXPORTED_AT.replace(month=9))
    con.close()
    assert _good(aug).consistency_from is not None
    return aug


def test_deeply_nested_json_is_a_one_line_refusal(august: Path) -> None:
    members = {info.filename: data for info, data in _members(august)}
    deep = b"[" * 100_000 + b"]" * 100_000
    err = _refused(
        _zip(august.parent / "deep.zip", {**members, "consistency.json": deep}, frozenset({"consistency.json"}))
    )
    assert err.member == "consistency.json" and "not UTF-8 JSON" in err.message
    (parsed,) = parse_entries([deep])
    assert isinstance(parsed, EntryError) and "not UTF-8 JSON" in parsed.message


def test_a_reformatted_consistency_json_is_refused(august: Path) -> None:
    members = {info.filename: data for info, data in _members(august)}
    doc = json.loads(members["consistency.json"])
    long = json.dumps({**doc, "proof": doc["proof"] + ["A" * 43 + "="] * 64}, indent=2).encode() + b"\n"
    for variant, message in (
        (json.dumps(doc).encode(), "as gpumeter writes it"),  # the same content, spelled otherwise
        (members["consistency.json"].replace(b"\n", b"\r\n"), "as gpumeter writes it"),
        (long, "at most 63"),
    ):
        err = _refused(_zip(august.parent / "c.zip", {**members, "consistency.json": variant}))
        assert err.member == "consistency.json" and message in err.message, err


def test_an_attestation_with_fields_of_another_kind_is_reported_not_a_traceback(bundles: Bundles) -> None:
    odd = _attestation(1, hosts=5, countries="DE", findings=[1, None])  # validly logged, oddly shaped
    path = _bundle(bundles.dir, "odd-kind", [_attestation(0), odd])
    assert _good(path).attestations == 2
    with zipfile.ZipFile(path) as z:
        assert ",5,DE," in z.read("report/sovereignty.csv").decode()


def test_an_attestation_whose_policy_is_not_a_string_is_refused_by_name_not_a_traceback(bundles: Bundles) -> None:
    """An attestation logged with a list, an object or a number for its policy (a hostile or
    broken writer): exporting it and verifying it name the entry, with no traceback."""
    for n, odd_policy in enumerate((["EU/v1"], {"id": "EU/v1"}, 7)):
        path = _bundle(bundles.dir, f"odd-policy-{n}", [_attestation(0), _attestation(1, policy=odd_policy)])
        refused = _refused(path)
        assert refused.entry == 1 and "another policy than policy.json" in refused.message
