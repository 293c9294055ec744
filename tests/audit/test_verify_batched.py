"""The batched bundle verifier: it agrees with the reference and never accepts more.

``verify_bundle`` tries :func:`audit.verify._verify_batched` first and falls back to the
reference (member by member, entry by entry) whenever the batched one cannot vouch for a
bundle, so the user-visible refusals are the reference's (tests/audit/test_bundle.py).
Here the batched path is checked on its own: on good bundles it must accept with the
reference's result; on anything the reference refuses it must give up (return None).
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
from audit.archive import SafeZip, Unsupported, ZipIndex
from audit.attest import policy_digest
from audit.bundle import export_bundle
from audit.entries import job_attestation
from audit.errors import VerificationError
from audit.log import AuditLog
from audit.note import parse_vkey
from audit.verify import VerifyResult, _verify_batched, _verify_reference, verify_bundle
from testing.stores import new_store
from tests.audit import fleet

EU = policy.policy(["EU"])
SIGNER = fleet.signer()
PINNED = [parse_vkey(SIGNER.vkey)]
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


def _agrees(path: Path) -> VerifyResult:
    batched = _verify_batched(path, PINNED, None, None)
    assert batched is not None, "the batched verifier gave up on a good bundle"
    assert batched == _verify_reference(path, PINNED, None, None)
    return batched


def _sound(path: Path) -> None:
    """The batched verifier accepts only what the reference accepts, with the same result."""
    batched = _verify_batched(path, PINNED, None, None)
    if batched is not None:
        assert batched == _verify_reference(path, PINNED, None, None)


# ------------------------------------------------------------------------------ agreement


def test_batched_agrees_with_the_reference(bundles: Bundles) -> None:
    r = _agrees(bundles.big)
    assert r.entries == 252 and r.attestations == 250  # 250 attestations, the key event, the export
    odd = _agrees(bundles.odd)
    assert odd.attestations == 6 and verify_bundle(bundles.odd, [SIGNER.vkey]) == odd


def test_batched_reads_deflated_and_reordered_bundles(bundles: Bundles) -> None:
    def deflate(members: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
        for info, _ in members:
            info.compress_type = zipfile.ZIP_DEFLATED

    _agrees(_rewrite(bundles.big, bundles.dir / "deflated.zip", deflate))
    _agrees(_rewrite(bundles.big, bundles.dir / "reversed.zip", lambda m: m.reverse()))
    _agrees(_rewrite(bundles.big, bundles.dir / "shuffled.zip", lambda m: random.Random(5).shuffle(m)))

    def by_name(members: list[tuple[zipfile.ZipInfo, bytes]]) -> None:  # as `zip -r` would order them
        members.sort(key=lambda m: m[0].filename)

    _agrees(_rewrite(bundles.big, bundles.dir / "sorted.zip", by_name))


def test_zip_index_reads_what_zipfile_reads(bundles: Bundles) -> None:
    with ZipIndex(bundles.big) as fast, SafeZip(bundles.big) as ref:
        assert set(fast.members) | {f"entries/{i}.json" for i in fast.entry_json} | {
            f"entries/{i}.tlog-proof" for i in fast.entry_proof
        } == set(ref.members)
        for name in fast.members:
            assert fast.read(name) == ref.read(name)
        order = sorted(fast.entry_json)
        assert fast.contents([fast.entry_json[i] for i in order]) == [ref.read(f"entries/{i}.json") for i in order]
        proofs = [ref.read(f"entries/{i}.tlog-proof") for i in order]
        assert fast.all_equal([fast.entry_proof[i] for i in order], proofs)
        assert not fast.all_equal([fast.entry_proof[i] for i in order], [*proofs[:-1], proofs[-1] + b" "])


def test_batched_leaves_unusual_but_valid_bundles_to_the_reference(bundles: Bundles) -> None:
    # an entry with a float (RFC 8785 number form) and one with non-ASCII text: valid, not batched
    for name, extra in (
        ("float", {"type": "note", "month": "2026-07", "x": 1.5}),
        ("utf8", {"type": "note", "month": "2026-07", "who": "Zürich"}),
    ):
        entry = {"time": "2026-07-02T00:00:00Z", **extra}
        path = _bundle(bundles.dir, name, [_attestation(0), entry])
        assert _verify_batched(path, PINNED, None, None) is None
        assert verify_bundle(path, [SIGNER.vkey]) == _verify_reference(path, PINNED, None, None)

    # a tlog-proof may carry an unauthenticated extra line
    def extra_line(members: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
        k = next(k for k, (info, _) in enumerate(members) if info.filename.endswith(".tlog-proof"))
        info, data = members[k]
        members[k] = (info, data.replace(b"\nindex ", b"\nextra AAAA\nindex ", 1))

    path = _rewrite(bundles.big, bundles.dir / "extra.zip", extra_line)
    assert _verify_batched(path, PINNED, None, None) is None
    verify_bundle(path, [SIGNER.vkey])


# ------------------------------------------------------------------------------ soundness


def _edited(src: Path, out: Path, name: str, pos: int) -> Path:
    def edit(members: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
        k = next(k for k, (info, _) in enumerate(members) if info.filename == name)
        info, data = members[k]
        changed = bytearray(data)
        changed[pos] ^= 0x01
        members[k] = (info, bytes(changed))

    return _rewrite(src, out, edit)


@pytest.mark.parametrize("which", ["big", "odd"])
def test_batched_refuses_every_one_byte_edit(bundles: Bundles, which: str) -> None:
    src: Path = getattr(bundles, which)
    rng = random.Random(which)
    members = _members(src)
    if which == "big":  # every member but the entries, and a sample of those
        entries = [m for m in members if m[0].filename.startswith("entries/")]
        members = [m for m in members if not m[0].filename.startswith("entries/")] + rng.sample(entries, 12)
    for info, data in members:
        positions = {0, len(data) // 2, len(data) - 2, rng.randrange(len(data))} if data else set()
        if which == "odd" and info.filename in ("entries/1.json", "entries/5.tlog-proof"):
            positions = set(range(len(data)))  # every byte: each JSON token; header, index, path lines, note
        for pos in positions:
            bad = _edited(src, bundles.dir / "edit.zip", info.filename, pos)
            assert _verify_batched(bad, PINNED, None, None) is None, (info.filename, pos)
            with pytest.raises(VerificationError):
                _verify_reference(bad, PINNED, None, None)


def test_batched_never_accepts_a_damaged_archive(bundles: Bundles) -> None:
    raw = bundles.big.read_bytes()
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
            _sound(bad)


def test_batched_refuses_hostile_members(bundles: Bundles) -> None:
    cases: list[Callable[[list[tuple[zipfile.ZipInfo, bytes]]], object]] = []
    for name, mode in (("../evil.txt", 0o100644), ("documents/link", 0o120777), ("notes.txt", 0o100644)):
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        cases.append(lambda m, i=info: m.append((i, b"x")))  # type: ignore[misc]
    cases.append(lambda m: m.append(m[0]))  # a member twice
    cases.append(lambda m: m.pop(next(k for k, (i, _) in enumerate(m) if i.filename.endswith(".tlog-proof"))))
    cases.append(lambda m: m.pop(next(k for k, (i, _) in enumerate(m) if i.filename == "entries/7.json")))

    def swap(m: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
        a = next(k for k, (i, _) in enumerate(m) if i.filename == "entries/3.tlog-proof")
        b = next(k for k, (i, _) in enumerate(m) if i.filename == "entries/4.tlog-proof")
        (ia, da), (ib, db) = m[a], m[b]
        m[a], m[b] = (ia, db), (ib, da)

    cases.append(swap)
    cases.append(lambda m: m.append((zipfile.ZipInfo("entries/9999.json"), json.dumps({"x": 1}).encode())))
    for k, edit in enumerate(cases):
        bad = _rewrite(bundles.big, bundles.dir / f"hostile-{k}.zip", edit)
        assert _verify_batched(bad, PINNED, None, None) is None, k
        with pytest.raises(VerificationError):
            _verify_reference(bad, PINNED, None, None)


def test_batched_keeps_the_limits(bundles: Bundles) -> None:
    from audit.archive import Limits

    for limits in (Limits(members=100), Limits(entry=100), Limits(proof=100), Limits(total=1000)):
        assert _verify_batched(bundles.big, PINNED, None, limits) is None
        with pytest.raises(VerificationError):
            _verify_reference(bundles.big, PINNED, None, limits)
    with pytest.raises(Unsupported):
        ZipIndex(bundles.big, Limits(central_directory=1000))
