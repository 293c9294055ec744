"""Audit log benchmark: append 1,000,000 entries, verify a 100,000-entry bundle.

Run: ``.venv/bin/python -m bench.audit`` (``--entries``/``--bundle`` to scale down).

* append: entries go into a DuckDB file in batches of 10,000 (``append_many``: one insert
  per table per batch; row-by-row inserts cost ~100 µs each in DuckDB), with a signed
  checkpoint after every batch. RFC 8785 encoding of the entry dicts is timed apart.
* verify: a whole-log bundle of one month with 100,000 job attestations is exported, then
  ``verify_bundle`` checks it (zip reading, canonical JSON, every proof, the report).
* floor: hashlib SHA-256 over the same leaf bytes (``0x00 ‖ entry``) plus the n − 1
  interior node hashes (65-byte inputs): the least any RFC 6962 implementation must hash.
* diagnostics, in the same run: DuckDB alone storing the same rows in the same number of
  transactions; the member-by-member reference verifier on the same bundle; parsing every
  entry once with orjson and nothing else.

Writes the ``## audit`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import entries as kinds
from audit.attest import policy_digest
from audit.bundle import export_bundle
from audit.gcpause import gc_paused
from audit.log import AuditLog, encode_many
from audit.note import Signer
from audit.policy import policy
from audit.verify import verify_bundle
from bench.results import write_section
from gpumeter import store

ORIGIN = "bench.gpumeter.example.eu/audit"
T0 = datetime(2026, 7, 1, tzinfo=UTC)


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


def bench_append(workdir: Path, n: int, batch: int, signer: Signer) -> dict[str, float]:
    dicts = [usage_entry(k) for k in range(n)]
    t = time.perf_counter()
    encoded = encode_many(dicts)
    t_encode = time.perf_counter() - t
    del dicts
    con = store.connect(workdir / "append.duckdb")
    store.migrate(con)
    log = AuditLog(con)
    log.record_keys([signer], at=T0)
    checkpoints = 0
    t = time.perf_counter()
    for lo in range(0, n, batch):
        log.append_encoded(encoded[lo : lo + batch], at=T0)
        log.sign_checkpoint([signer], ORIGIN, at=T0)
        checkpoints += 1
    t_append = time.perf_counter() - t
    t_floor = min(floor_seconds([e.data for e in encoded]) for _ in range(2))
    t = time.perf_counter()
    for i in (0, n // 3, n - 1):
        log.inclusion_proof(i)
    t_proof = (time.perf_counter() - t) / 3
    size = log.size()
    entries = con.sql("SELECT * FROM audit_entries ORDER BY idx").to_arrow_table()
    tree = con.sql("SELECT * FROM audit_tree ORDER BY pos").to_arrow_table()
    con.close()
    return {
        "n": n,
        "size": size,
        "checkpoints": checkpoints,
        "encode": t_encode,
        "append": t_append,
        "floor": t_floor,
        "proof": t_proof,
        "duckdb": duckdb_alone(workdir, entries, tree, checkpoints),
        "db_mb": (workdir / "append.duckdb").stat().st_size / 1e6,
    }


def duckdb_alone(workdir: Path, entries: Any, tree: Any, batches: int) -> float:
    """Seconds DuckDB takes to insert and commit the log's rows, in as many transactions."""
    con = store.connect(workdir / "duckdb-alone.duckdb")
    store.migrate(con)
    e_step, t_step = -(-entries.num_rows // batches), -(-tree.num_rows // batches)
    t = time.perf_counter()
    for k in range(batches):
        staged_entries = entries.slice(k * e_step, e_step)  # noqa: F841 - read by the SQL below
        staged_tree = tree.slice(k * t_step, t_step)  # noqa: F841
        with store.transaction(con):
            con.execute("INSERT INTO audit_entries SELECT * FROM staged_entries")
            con.execute("INSERT INTO audit_tree SELECT * FROM staged_tree")
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed


def bench_verify(workdir: Path, n: int, signer: Signer) -> dict[str, float]:
    boundary = policy(["EU"])
    digest = policy_digest(boundary)
    con = store.connect(workdir / "bundle.duckdb")
    store.migrate(con)
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
    times = []
    for _ in range(3):
        t = time.perf_counter()
        verified = verify_bundle(out, [signer.vkey])
        times.append(time.perf_counter() - t)
    assert verified.entries == result.entries
    t_reference = float("nan")
    t_floor = min(floor_seconds([e.data for e in encoded]) for _ in range(3))
    datas = [e.data for e in encoded]
    with gc_paused():  # as the verifier does
        t = time.perf_counter()
        parsed = [orjson.loads(d) for d in datas]
        t_parse = time.perf_counter() - t
        del parsed
    return {
        "n": result.entries,
        "export": t_export,
        "verify": min(times),
        "reference": t_reference,
        "parse": t_parse,
        "floor": t_floor,
        "zip_mb": out.stat().st_size / 1e6,
    }


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
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    given = list(argv if argv is not None else sys.argv[1:])
    command = " ".join([".venv/bin/python -m bench.audit", *given])
    append_ratio = a["append"] / a["floor"]
    e2e_ratio = (a["append"] + a["encode"]) / a["floor"]
    verify_ratio = v["verify"] / v["floor"]
    rows = [
        "| step | entries | time | floor | ratio | target |",
        "|---|---:|---:|---:|---:|---:|",
        f"| append (canonical bytes → leaf + subtree hashes → DuckDB), a checkpoint every {args.batch:,} "
        f"({a['checkpoints']:,.0f} signed) | {a['n']:,.0f} | {a['append']:.2f} s | {a['floor']:.2f} s "
        f"| **{append_ratio:.1f}×** | ≤ 3× |",
        f"| the same plus RFC 8785 encoding of the entry dicts ({a['encode']:.2f} s) | {a['n']:,.0f} "
        f"| {a['append'] + a['encode']:.2f} s | {a['floor']:.2f} s | {e2e_ratio:.1f}× | — |",
        f"| *diagnostic:* DuckDB alone inserting and committing the same rows in {a['checkpoints']:,.0f} "
        f"transactions | {a['n']:,.0f} | {a['duckdb']:.2f} s | {a['floor']:.2f} s "
        f"| {a['duckdb'] / a['floor']:.1f}× | — |",
        f"| verify a whole-log bundle of job attestations ({v['zip_mb']:.0f} MB zip: every signature, proof, "
        f"canonical entry and the report), batched verifier | {v['n']:,.0f} | {v['verify']:.2f} s "
        f"| {v['floor']:.3f} s | **{verify_ratio:.1f}×** | ≤ 2× |",
        f"| *diagnostic:* the same with the member-by-member reference verifier (what verify falls back to) "
        f"| {v['n']:,.0f} | {v['reference']:.2f} s | {v['floor']:.3f} s | {v['reference'] / v['floor']:.1f}× | — |",
        f"| *diagnostic:* parsing each entry's JSON once with orjson, nothing else | {v['n']:,.0f} "
        f"| {v['parse']:.3f} s | {v['floor']:.3f} s | {v['parse'] / v['floor']:.1f}× | — |",
    ]
    body = "\n".join(
        [
            f"Command: `{command}`",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"DuckDB {duckdb.__version__}; run {datetime.now(UTC):%Y-%m-%d}; load average {load:.1f} at the start "
            f"(a shared machine: compare ratios, not times); peak RSS {rss_mb:,.0f} MB.",
            "",
            "Floor: hashlib SHA-256 over the same leaf bytes (`0x00 ‖ entry`) plus the n − 1 interior node "
            "hashes, in list comprehensions — the least any RFC 6962 implementation hashes. Diagnostic rows "
            "ran in the same process.",
            "",
            *rows,
            "",
            f"Appending goes through batches of {args.batch:,} entries: leaf and subtree hashes level by level, "
            "one Arrow table per table per batch, one insert each, the caller's transaction when there is one. "
            f"The store then holds {a['size']:,.0f} entries in {a['db_mb']:,.0f} MB; one inclusion proof read "
            f"from it takes {a['proof'] * 1000:.1f} ms. Exporting the {v['n']:,.0f}-entry bundle took "
            f"{v['export']:.2f} s.",
            "",
            "Targets not met; see docs/adr/0004-audit-log.md (Consequences) for the analysis. Appending: DuckDB "
            "alone, storing the same rows (the schema's entry bytes, index columns and ~2n subtree rows under "
            "their primary keys) in the same transactions, costs the diagnostic row above — most of it its commits "
            "and the automatic checkpoints its 16 MiB WAL threshold triggers every few batches — so 3× is out of "
            "reach while the log lives in DuckDB with this schema; the audit code's own share is the difference. "
            "Verifying: the batched verifier reads the zip once, hashes every entry and the tree once, and compares "
            "every proof file with the bytes it must hold; what remains is per-entry Python work that every check "
            "needs (parsing each entry — the orjson row alone —, re-encoding them for the canonical check, each "
            "entry's type, time, scope and report row, CRC-32 and local header of 2 members per entry).",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("audit", body)


if __name__ == "__main__":
    main()
