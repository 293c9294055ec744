"""Audit log benchmark: append 1,000,000 entries, verify a 100,000-entry bundle, side by side.

Run: ``.venv/bin/python -m bench.audit`` (``--entries``/``--bundle`` to scale down).

* append: entries go into a DuckDB file in batches of 10,000 (``append_encoded``: entry rows
  and the grown tiles, one insert per table per batch), with a signed checkpoint after
  every batch, and DuckDB's closing checkpoint at the end. RFC 8785 encoding of the entry
  dicts is timed apart. Then an inclusion proof read from the store, the first
  ``audit publish`` of the whole log, and an inclusion proof read from the published tiles.
* verify: a whole-log bundle of one month with 100,000 job attestations is exported, then
  ``verify_bundle`` checks it (zip reading, canonical JSON, every proof, the report); the
  real ``gpumeter audit verify`` runs on it in its own process for its peak memory.
* floor: hashlib SHA-256 over the same leaf bytes (``0x00 ‖ entry``) plus the n − 1
  interior node hashes (65-byte inputs): the least any RFC 6962 implementation must hash.
* diagnostics, in the same run, each the floor of one part: DuckDB alone storing the same
  rows in the same number of transactions; the tiles computed in memory with no store;
  reading every member of the bundle with the verifier's reader and nothing else, and with
  the standard library's ``zipfile``; parsing every entry once with orjson; the least work
  of each other kind a verifier of the bundle format must do (:mod:`bench.verify_parts`)
  and their sum; and a cProfile of one more verify (the functions with the most own time).

Writes the ``## audit`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import platform
import pstats
import random
import resource
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import entries as kinds
from audit import tiles
from audit.archive import BundleReader
from audit.attest import policy_digest
from audit.bundle import export_bundle
from audit.gcpause import gc_paused
from audit.log import AuditLog, encode_many
from audit.note import Signer
from audit.policy import policy
from audit.publish import publish, published_proof
from audit.verify import verify_bundle
from audit.verify_entries import BATCH, BATCH_BYTES
from bench.results import write_section
from bench.verify_parts import least_work
from gpumeter import store
from testing.peak import run_measured
from testing.stores import new_store

ORIGIN = "bench.gpumeter.example.eu/audit"
T0 = datetime(2026, 7, 1, tzinfo=UTC)
GPUMETER = str(Path(sys.executable).with_name("gpumeter"))
REPO = Path(__file__).resolve().parents[1]


def floor_seconds(leaves: Sequence[bytes]) -> float:
    """SHA-256 of every leaf (0x00 ‖ bytes) and of the n − 1 interior nodes, nothing else."""
    sha = hashlib.sha256
    start = time.perf_counter()
    level = [sha(b"\x00" + data).digest() for data in leaves]
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return time.perf_counter() - start


def usage_entry(k: int) -> dict[str, object]:
    start = T0 + timedelta(hours=k)
    return kinds.usage_window(
        at=start + timedelta(hours=1),
        window_start=start,
        digest=hashlib.sha256(k.to_bytes(8, "big")).hexdigest(),
        rows=k % 977,
        interval_ms=15000,
        backend="prometheus-open",
        nodes_version=1,
    )


def attestation(k: int, digest: str) -> dict[str, object]:
    return kinds.job_attestation(
        at=T0 + timedelta(days=31),
        job_id=f"job-{k:07d}",
        tenant=f"tenant-{k % 1000:04d}",
        month="2026-07",
        gpu_seconds=f"{3600 + k % 7200}.25",
        hosts=[f"gpu-{k % 512:03d}.par1", f"gpu-{(k + 7) % 512:03d}.fra2"],
        countries=["DE", "FR"],
        data_locations=[f"s3://eu-data/tenant-{k % 1000:04d}"],
        data_countries=["DE"],
        policy="EU/v1",
        policy_sha256=digest,
        in_eu=k % 50 != 0,
        findings=[] if k % 50 else [f"host gpu-{k % 512:03d}.zrh1 is in CH, outside the boundary"],
    )


def _mean_ms(fn: Any, args: Sequence[Any]) -> float:
    start = time.perf_counter()
    for a in args:
        fn(a)
    return (time.perf_counter() - start) / len(args) * 1000


def bench_append(workdir: Path, n: int, batch: int, signer: Signer) -> dict[str, Any]:
    dicts = [usage_entry(k) for k in range(n)]
    t = time.perf_counter()
    encoded = encode_many(dicts)
    t_encode = time.perf_counter() - t
    del dicts
    db = workdir / "append.duckdb"
    con = new_store(db)
    log = AuditLog(con)
    log.record_keys([signer], at=T0)
    checkpoints = 0
    datas = [e.data for e in encoded]
    floor_before = min(floor_seconds(datas) for _ in range(2))
    t = time.perf_counter()
    for lo in range(0, n, batch):
        log.append_encoded(encoded[lo : lo + batch], at=T0)
        log.sign_checkpoint([signer], ORIGIN, at=T0)
        checkpoints += 1
    con.execute("CHECKPOINT")  # what DuckDB would still owe at close: part of storing the rows
    t_append = time.perf_counter() - t
    del encoded
    t_floor = (floor_before + min(floor_seconds(datas) for _ in range(2))) / 2  # load drifts: both sides
    t_tiles = tiles_alone(datas, batch)
    size = log.size()
    rng = random.Random(1)
    picks = [rng.randrange(size) for _ in range(50)]
    t_proof = _mean_ms(lambda i: log.inclusion_proof(i, size), picks)
    out = workdir / "tlog"
    t = time.perf_counter()
    published = publish(con, out, ORIGIN)
    t_publish = time.perf_counter() - t
    t_file_proof = _mean_ms(lambda i: published_proof(out, i, size), picks)
    assert all(published_proof(out, i, size) == log.inclusion_proof(i, size) for i in picks[:5])
    entries = con.sql("SELECT * FROM audit_entries ORDER BY idx").to_arrow_table()
    tile_rows = con.sql("SELECT * FROM audit_tiles ORDER BY level, idx").to_arrow_table()
    con.close()
    return {
        "n": n,
        "size": size,
        "checkpoints": checkpoints,
        "encode": t_encode,
        "append": t_append,
        "floor": t_floor,
        "tiles": t_tiles,
        "proof_ms": t_proof,
        "file_proof_ms": t_file_proof,
        "publish": t_publish,
        "published_files": published.written,
        "published_mb": published.bytes_written / 1e6,
        "duckdb": duckdb_alone(workdir, entries, tile_rows, checkpoints),
        "db_mb": db.stat().st_size / 1e6,
        "profile_n": min(n, 20 * batch),
        "profile": profile_append(workdir, min(n, 20 * batch), batch, signer),
    }


def tiles_alone(datas: Sequence[bytes], batch: int) -> float:
    """Seconds to hash the leaves and build the tiles batch by batch, in memory, no store."""
    sha = hashlib.sha256
    stored: dict[tuple[int, int], bytes] = {}
    t = time.perf_counter()
    size = 0
    for lo in range(0, len(datas), batch):
        edge = {tile.level: stored[(tile.level, tile.index)] for tile in tiles.edge(size)}
        leaves = [sha(b"\x00" + d).digest() for d in datas[lo : lo + batch]]
        for g in tiles.grow(size, edge, leaves):
            stored[(g.level, g.index)] = g.hashes
        size += len(leaves)
    return time.perf_counter() - t


def duckdb_alone(workdir: Path, entries: Any, tile_rows: Any, batches: int) -> float:
    """Seconds DuckDB takes to insert and commit the log's rows (entries, tiles) in as many
    transactions, and checkpoint at the end."""
    con = new_store(workdir / "duckdb-alone.duckdb")
    e_step, t_step = -(-entries.num_rows // batches), -(-tile_rows.num_rows // batches)
    t = time.perf_counter()
    for k in range(batches):
        staged_entries = entries.slice(k * e_step, e_step)  # noqa: F841 - read by the SQL below
        staged_tiles = tile_rows.slice(k * t_step, t_step)  # noqa: F841
        with store.transaction(con):
            con.execute("INSERT INTO audit_entries SELECT * FROM staged_entries")
            con.execute("INSERT INTO audit_tiles SELECT * FROM staged_tiles")
    con.execute("CHECKPOINT")
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed


def peak_rss_mb(workdir: Path, *args: str) -> tuple[int, float]:
    """(exit status, peak resident MB) of one command in its own process."""
    measured = run_measured(args, workdir)
    return measured.result.returncode, measured.peak_mb


Profiled = list[tuple[str, float, float, float]]  # (function, own s, cumulative s, share of the total)


def profiled(run: Any, packages: Sequence[str], skip: str, top: int = 8) -> tuple[Profiled, Profiled]:
    """``run()`` under cProfile: the ``top`` functions by own time, and the ``top`` functions
    of gpumeter's ``packages`` (other than ``skip``, the entry point) by time with callees.
    cProfile slows every call down: read the shares, not the times. DuckDB's methods are
    not seen by cProfile: their time is the own time of the function calling them."""
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    profile = pstats.Stats(profiler).get_stats_profile()
    total = profile.total_tt or 1.0
    items = list(profile.func_profiles.items())

    def rows(ranked: list[tuple[str, Any]], share: str) -> Profiled:
        return [
            (
                f"{Path(fp.file_name).name}:{fp.line_number} {name}" if fp.line_number else name,
                fp.tottime,
                fp.cumtime,
                getattr(fp, share) / total,
            )
            for name, fp in ranked
        ]

    by_own = sorted(items, key=lambda kv: kv[1].tottime, reverse=True)[:top]
    folders = tuple(str(REPO / package) + os.sep for package in packages)
    ours = [kv for kv in items if kv[1].file_name.startswith(folders) and kv[0] != skip]
    by_cumulative = sorted(ours, key=lambda kv: kv[1].cumtime, reverse=True)[:top]
    return rows(by_own, "tottime"), rows(by_cumulative, "cumtime")


def profile_append(workdir: Path, n: int, batch: int, signer: Signer) -> tuple[Profiled, Profiled]:
    """The append loop of :func:`bench_append` under cProfile, ``n`` entries into a new store."""
    encoded = encode_many(usage_entry(k) for k in range(n))
    con = new_store(workdir / "profiled.duckdb")
    log = AuditLog(con)
    log.record_keys([signer], at=T0)

    def append_loop() -> None:  # its own time: DuckDB's closing CHECKPOINT
        for lo in range(0, n, batch):
            log.append_encoded(encoded[lo : lo + batch], at=T0)
            log.sign_checkpoint([signer], ORIGIN, at=T0)
        con.execute("CHECKPOINT")

    try:
        return profiled(append_loop, ("audit", "gpumeter"), "")
    finally:
        con.close()


def bench_verify(workdir: Path, n: int, signer: Signer) -> dict[str, Any]:
    boundary = policy(["EU"])
    digest = policy_digest(boundary)
    con = new_store(workdir / "bundle.duckdb")
    log = AuditLog(con)
    encoded = encode_many(attestation(k, digest) for k in range(n))
    for lo in range(0, n, 10_000):
        log.append_encoded(encoded[lo : lo + 10_000], at=T0)
    out = workdir / "bundle.zip"
    t = time.perf_counter()
    result = export_bundle(
        con, "2026-07", None, out, [signer], ORIGIN, boundary, by="bench", at=T0 + timedelta(days=32)
    )
    t_export = time.perf_counter() - t
    con.close()
    datas = [e.data for e in encoded]
    del encoded
    rounds = []  # (verify, floor) measured back to back, so that a load change hits both
    for _ in range(3):
        t = time.perf_counter()
        verified = verify_bundle(out, [signer.vkey])
        rounds.append((time.perf_counter() - t, floor_seconds(datas)))
    assert verified.entries == result.entries and verified.pinned
    t_verify, t_floor = sorted(rounds, key=lambda r: r[0] / r[1])[1]  # the median round
    with gc_paused():  # as the verifier does
        t = time.perf_counter()
        parsed = [orjson.loads(d) for d in datas]
        t_parse = time.perf_counter() - t
        del parsed
    t_reader = min(_read_all(out) for _ in range(2))
    t_zipfile = _read_all_zipfile(out)
    least = least_work(out)
    code, rss = peak_rss_mb(workdir, GPUMETER, "audit", "verify", str(out), "--key", signer.vkey)
    assert code == 0
    _, rss_idle = peak_rss_mb(workdir, GPUMETER, "audit", "verify", str(workdir / "absent.zip"), "--key", signer.vkey)
    profile = profiled(lambda: verify_bundle(out, [signer.vkey]), ("audit", "gpumeter"), "verify_bundle")
    return {
        "profile": profile,
        "n": result.entries,
        "export": t_export,
        "verify": t_verify,
        "parse": t_parse,
        "reader": t_reader,
        "zipfile": t_zipfile,
        "least": least,
        "floor": t_floor,
        "zip_mb": out.stat().st_size / 1e6,
        "rss_mb": rss,
        "rss_idle_mb": rss_idle,
    }


def _read_all(path: Path) -> float:
    """Seconds for the verifier's reader to open the bundle and read every member, nothing else."""
    t = time.perf_counter()
    with gc_paused(), BundleReader(path) as bundle:
        for chunk in bundle.chunks(bundle.entry_indices, BATCH, BATCH_BYTES):
            bundle.entries(chunk)
            bundle.proofs(chunk)
        for name in list(bundle.names()):
            bundle.read(name)
    return time.perf_counter() - t


def _read_all_zipfile(path: Path) -> float:
    """The same with the standard library's zipfile."""
    t = time.perf_counter()
    with gc_paused(), zipfile.ZipFile(path) as z:
        for info in z.infolist():
            z.read(info)
    return time.perf_counter() - t


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--bundle", type=int, default=100_000)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)
    signer = Signer(ORIGIN, Ed25519PrivateKey.generate())
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        a = bench_append(Path(tmp), args.entries, args.batch, signer)
        print(f"append: {a}", file=sys.stderr)
        v = bench_verify(Path(tmp), args.bundle, signer)
        print(f"verify: {v}", file=sys.stderr)
    load_end = os.getloadavg()[0]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    given = list(argv if argv is not None else sys.argv[1:])
    command = " ".join([".venv/bin/python -m bench.audit", *given])
    body = report(a, v, args.batch, command, load, load_end, rss_mb)
    print(body)
    if not args.no_write:
        write_section("audit", body)


def _profile_tables(title: str, profile: tuple[Profiled, Profiled]) -> list[str]:
    own, ours = profile
    return [
        f"{title} (profiling slows every call: read the shares; cProfile does not see DuckDB's methods, whose "
        "time is the own time of the function calling them). The functions with the most own time, and "
        "gpumeter's own functions with the most time including what they call:",
        "",
        "| function | own time | share of the total |",
        "|---|---:|---:|",
        *(f"| `{name}` | {t:.2f} s | {share:.0%} |" for name, t, _, share in own),
        "",
        "| gpumeter function | time with callees | share of the total |",
        "|---|---:|---:|",
        *(f"| `{name}` | {cum:.2f} s | {share:.0%} |" for name, _, cum, share in ours),
    ]


LEAST_WORK = (
    ("members", "every entry and proof member sliced out of the file in memory at known offsets, CRC-32 checked"),
    ("canonical", "the RFC 8785 check: orjson's sorted-keys output of the parsed entries against their bytes"),
    ("report", "each attestation's row of report/sovereignty.csv written (the one rule, audit.report)"),
    ("proofs", "each entry's proof file written from the hashed tree and compared with its member"),
)


def _verdict(ratio: float, target: float) -> str:
    return (
        f"met, {ratio:.1f}× (target ≤ {target:g}×)"
        if ratio <= target
        else (f"**missed**, {ratio:.1f}× against a target of ≤ {target:g}×")
    )


def report(
    a: dict[str, Any], v: dict[str, Any], batch: int, command: str, load: float, load_end: float, rss_mb: float
) -> str:
    af, vf = a["floor"], v["floor"]
    least = v["least"]
    unavoidable = vf + v["parse"] + sum(least.values())
    append_ratio = a["append"] / af
    verify_ratio = v["verify"] / vf
    rows = [
        "| step | entries | time | floor | ratio | target |",
        "|---|---:|---:|---:|---:|---:|",
        f"| append (canonical bytes → leaf hashes and tiles → DuckDB), a checkpoint every {batch:,} "
        f"({a['checkpoints']:,.0f} signed), DuckDB's closing checkpoint included | {a['n']:,.0f} "
        f"| {a['append']:.2f} s | {af:.2f} s | **{append_ratio:.1f}×** | ≤ 3× |",
        f"| *diagnostic:* DuckDB alone inserting and committing the same entry and tile rows in "
        f"{a['checkpoints']:,.0f} transactions | {a['n']:,.0f} | {a['duckdb']:.2f} s | {af:.2f} s "
        f"| {a['duckdb'] / af:.1f}× | — |",
        f"| *diagnostic:* leaf hashes and tiles computed batch by batch in memory, no store | {a['n']:,.0f} "
        f"| {a['tiles']:.2f} s | {af:.2f} s | {a['tiles'] / af:.1f}× | — |",
        f"| the same plus RFC 8785 encoding of the entry dicts ({a['encode']:.2f} s) | {a['n']:,.0f} "
        f"| {a['append'] + a['encode']:.2f} s | {af:.2f} s | {(a['append'] + a['encode']) / af:.1f}× | — |",
        f"| verify a whole-log bundle of job attestations ({v['zip_mb']:.0f} MB zip: every signature, proof, "
        f"canonical entry and the report) | {v['n']:,.0f} | {v['verify']:.2f} s | {vf:.3f} s "
        f"| **{verify_ratio:.1f}×** | ≤ 2× |",
        f"| *diagnostic:* the verifier's zip reader alone: directory, then every member read and "
        f"CRC-checked | {v['n']:,.0f} | {v['reader']:.2f} s | {vf:.3f} s | {v['reader'] / vf:.1f}× | — |",
        f"| *diagnostic:* the standard library's zipfile reading every member, nothing else | {v['n']:,.0f} "
        f"| {v['zipfile']:.2f} s | {vf:.3f} s | {v['zipfile'] / vf:.1f}× | — |",
        f"| *diagnostic:* parsing each entry's JSON once with orjson, nothing else | {v['n']:,.0f} "
        f"| {v['parse']:.3f} s | {vf:.3f} s | {v['parse'] / vf:.1f}× | — |",
        *(
            f"| *least work:* {what} | {v['n']:,.0f} | {least[key]:.3f} s | {vf:.3f} s | {least[key] / vf:.1f}× | — |"
            for key, what in LEAST_WORK
        ),
        f"| *least work, together:* the floor, parsing once and the four parts above: what a verifier of "
        f"this format does at the least | {v['n']:,.0f} | {unavoidable:.2f} s | {vf:.3f} s "
        f"| {unavoidable / vf:.1f}× | ≤ 2× |",
    ]
    rest = v["verify"] - v["reader"] - v["parse"] - vf
    return "\n".join(
        [
            f"Command: `{command}`",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"DuckDB {duckdb.__version__}; run {datetime.now(UTC):%Y-%m-%d}; load average {load:.1f} at the start "
            f"and {load_end:.1f} at the end (a shared machine: compare ratios, not times); peak RSS of the "
            f"benchmark {rss_mb:,.0f} MB.",
            "",
            "Floor: hashlib SHA-256 over the same leaf bytes (`0x00 ‖ entry`) plus the n − 1 interior node "
            "hashes, in list comprehensions — the least any RFC 6962 implementation hashes; for append the "
            "mean of the floor measured right before and right after the appending, for verify the median of "
            "three rounds of verify and floor back to back. Diagnostic rows ran in the same process; each is "
            "the floor of one part of the work.",
            "",
            *rows,
            "",
            f"The store then holds {a['size']:,.0f} entries in {a['db_mb']:,.0f} MB, the tree as "
            f"{len(list(tiles.layout(int(a['size'])))):,} tile rows. An inclusion proof read from the store takes "
            f"{a['proof_ms']:.2f} ms, from the published tiles {a['file_proof_ms']:.2f} ms (mean of 50 random "
            f"indices). Publishing the whole log the first time wrote {a['published_files']:,.0f} files "
            f"({a['published_mb']:,.0f} MB, each flushed to disk) in {a['publish']:.1f} s. Exporting the "
            f"{v['n']:,.0f}-entry bundle took {v['export']:.1f} s. `gpumeter audit verify` on it peaks at "
            f"{v['rss_mb']:,.0f} MB resident, of which {v['rss_idle_mb']:,.0f} MB is the command starting up "
            "(every package imported) — the verification itself streams, holding the leaf hashes and a report "
            "row per job.",
            "",
            f"**Targets.** Append: {_verdict(append_ratio, 3)}. DuckDB storing the same entry and tile rows, "
            f"and nothing else, takes {a['duckdb']:.2f} s ({a['duckdb'] / af:.1f}× the floor on its own) of the "
            f"append's {a['append']:.2f} s, and hashing and tiling in memory {a['tiles']:.2f} s "
            f"({a['tiles'] / af:.1f}×): the two parts no append that commits each entry as a DuckDB row can "
            f"skip add up to {(a['duckdb'] + a['tiles']) / af:.1f}× the floor"
            + (" — above the target on their own" if (a["duckdb"] + a["tiles"]) / af > 3 else "")
            + f"; the other {a['append'] - a['duckdb'] - a['tiles']:.2f} s are per batch: the signed checkpoints, "
            "about ten small queries and the commits (the profile below; docs/adr/0011-append-cost.md). "
            f"Verify: {_verdict(verify_ratio, 2)}. The *least work* rows (bench/verify_parts.py) are each the "
            "cheapest form of one thing the bundle format asks of every verifier, timed alone with everything it "
            f"does not need prepared beforehand; with the floor and parsing each entry once they add up to "
            f"{unavoidable:.2f} s, {unavoidable / vf:.1f}× the floor: a verifier in Python (one object per member, "
            "one parse and one report row per entry) cannot reach ≤ 2×, and the verifier spends "
            f"{v['verify'] - unavoidable:.2f} s beyond that sum on the checks the parts leave out (the zip's "
            "directory and local headers, the floats test, each entry's type, time and scope, the report's "
            "latest rows, the export entry's digests), the profile below.",
            "",
            f"Where verify's time goes: the zip reader {v['reader']:.2f} s, parsing the entries "
            f"{v['parse']:.2f} s, hashing (the floor) {vf:.2f} s, and {rest:.2f} s for everything else (the "
            "canonical-form check, each entry's type, time, scope and report row, the tree and one comparison "
            "per proof file). See docs/adr/0008-tiles.md.",
            "",
            *_profile_tables(
                f"cProfile of the append loop on {a['profile_n']:,.0f} entries in a new store", a["profile"]
            ),
            "",
            *_profile_tables("cProfile of one more verify of the bundle", v["profile"]),
        ]
    )


if __name__ == "__main__":
    main()
