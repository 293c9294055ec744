"""The least work of each kind any verifier of an auditor bundle must do, each timed alone.

Part of ``bench.audit`` (its verify diagnostics), apart to keep each module short. The
bundle format (docs/formats.md, "Auditor bundle") asks a verifier, for every entry, to
read the entry and its proof out of the zip, parse the entry, hash it as a leaf (the
floor), check that its bytes are RFC 8785 canonical, check the proof file, and re-derive
the attestation's row of ``report/sovereignty.csv``. Each part below is the cheapest
form of one of these written here, with everything it does not need prepared untimed:

* ``members``: every entry and proof member sliced out of the file already in memory, at
  offsets already known, and its CRC-32 compared — no directory, no header checks;
* ``canonical``: orjson's sorted-keys output of the parsed entries, compared with their
  bytes a batch at once (one call and one comparison per 4,096 entries);
* ``report``: the attestations' CSV lines (:func:`audit.report.csv_lines`, the one rule);
* ``proofs``: the proof file of every entry written from a tree already hashed
  (:meth:`audit.proof.ProofTree.texts`) and compared with the member's bytes.

Parsing each entry once is ``bench.audit``'s own row; hashing is the floor. Their sum is
what no verifier written in Python avoids: the target is measured against it.
"""

from __future__ import annotations

import hashlib
import operator
import struct
import time
import zipfile
import zlib
from pathlib import Path

import orjson

from audit import report
from audit.gcpause import gc_paused
from audit.proof import ProofTree

BATCH = 4096
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def least_work(path: Path) -> dict[str, float]:
    """Seconds of each part (see the module doc) for the bundle at ``path``, a whole-log bundle."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        infos = [i for i in z.infolist() if i.filename.startswith("entries/")]
        note = z.read("checkpoint").decode("utf-8")
    spans = []
    for info in infos:
        nlen, elen = struct.unpack_from("<HH", raw, info.header_offset + 26)
        start = info.header_offset + 30 + nlen + elen
        spans.append((start, start + info.compress_size))
    crcs = [info.CRC for info in infos]
    with gc_paused():
        t = time.perf_counter()
        members = [raw[a:b] for a, b in spans]
        assert list(map(zlib.crc32, members)) == crcs
        t_members = time.perf_counter() - t
        by_index: dict[str, list[tuple[int, bytes]]] = {"json": [], "tlog-proof": []}
        for info, member in zip(infos, members, strict=True):
            index, kind = info.filename[len("entries/") :].split(".")
            by_index[kind].append((int(index), member))
        del members, raw
        datas = [m for _, m in sorted(by_index["json"])]
        proofs = [m for _, m in sorted(by_index["tlog-proof"])]
        values = [orjson.loads(d) for d in datas]
        t = time.perf_counter()
        for lo in range(0, len(datas), BATCH):
            together = b"[" + b",".join(datas[lo : lo + BATCH]) + b"]"
            assert orjson.dumps(values[lo : lo + BATCH], option=_OPTIONS) == together
        t_canonical = time.perf_counter() - t
        attestations = [v for v in values if v.get("type") == "job_attestation"]
        del values
        t = time.perf_counter()
        for lo in range(0, len(attestations), BATCH):
            report.csv_lines(attestations[lo : lo + BATCH])
        t_report = time.perf_counter() - t
        del attestations
        leaves = [hashlib.sha256(b"\x00" + d).digest() for d in datas]
        tree = ProofTree(len(datas), note, range(len(datas)), leaves)
        t = time.perf_counter()
        for first, texts in tree.texts():
            assert not any(map(operator.ne, proofs[first : first + len(texts)], texts))
        t_proofs = time.perf_counter() - t
    return {"members": t_members, "canonical": t_canonical, "report": t_report, "proofs": t_proofs}
