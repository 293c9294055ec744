"""Reading a bundle zip as hostile input: one reader, the standard library and numpy.

:class:`BundleReader` reads the zip's end records, then its central directory — the
record every zip tool extracts by — judging each member before any content is read:

* the end records must agree with each other and point inside the file; more members
  or a larger directory than :class:`Limits` allows is refused before the directory is
  read;
* each name must belong to the bundle layout (:func:`check_name`: so no ``..``,
  absolute paths, backslashes or strays), appear once, and not be a symbolic link;
  encrypted members, data descriptors (a streamed zip) and compressions other than
  stored and deflate are refused;
* each member kind has a size cap, the whole bundle a total, and a deflated member may
  expand at most :attr:`Limits.ratio` times (a zip bomb is refused from its directory
  record, before a byte is inflated).

The directory is walked once in Python (each record's start and name), its fixed fields
are then read for all records at once as numpy columns, and the names sorted into
entries (index and kind, by one regular expression over all of them) and the rest; the
first record in directory order that breaks a rule is named, as a reader going record by
record would. Members are read a batch at a time from the file mapped read-only: every
local header must repeat the directory's method and name, a deflated member is inflated
with :mod:`zlib` to exactly its declared size and no further, and each CRC-32 must match.
Only the directory's records stay in memory (about 100 bytes a member), and the mapped
pages are let go before each batch, so memory does not grow with what the bundle claims
to hold. Every refusal names the member.
"""

from __future__ import annotations

import contextlib
import mmap
import re
import stat
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from audit.entries import DOCUMENT_NAME
from audit.errors import BundleError
from audit.zipformat import (
    DEFLATED,
    DIRECTORY,
    FLAG_DESCRIPTOR,
    FLAG_ENCRYPTED,
    FLAG_STRONG,
    FLAG_UNUSUAL,
    FLAG_UTF8,
    GATHER,
    LOCAL_HEADER,
    LOCAL_SIG_U32,
    LOCAL_SIZE,
    RECORD_SIG_U32,
    RECORD_SIZE,
    S_IFLNK_HIGH,
    STORED,
    ZIP64_MARK,
    end_records,
    first_true,
    gather,
    walk,
    zip64_values,
)

ENTRY = re.compile(r"^entries/(0|[1-9][0-9]{0,18})\.(json|tlog-proof)$")
KEY = re.compile(r"^keys/[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.vkey$")
FIXED = frozenset(
    {
        "checkpoint",
        "checkpoint.tsr",
        "consistency.json",
        "policy.json",
        "policy.txt",
        "VERIFY.md",
        "report/sovereignty.csv",
        "report/summary.md",
    }
)
FOLDERS = frozenset({"keys/", "entries/", "documents/", "report/"})
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Caps on what a bundle may hold (members, central directory, per-kind member sizes)."""

    members: int = 1_000_000
    central_directory: int = 256 * MiB
    total: int = 16 * 1024 * MiB
    entry: int = 1 * MiB
    proof: int = 64 * 1024
    note: int = 64 * 1024
    key: int = 4096
    small: int = 1 * MiB  # policy.json, policy.txt, consistency.json, VERIFY.md
    report: int = 256 * MiB  # report/*
    document: int = 256 * MiB
    ratio: int = 100  # a deflated member may expand at most this many times ...
    ratio_exempt: int = 64 * 1024  # ... unless it is this small (small files compress unevenly)

    def cap(self, name: str) -> int:
        if name.startswith("entries/"):
            return self.entry if name.endswith(".json") else self.proof
        if name.startswith("documents/"):
            return self.document
        if name.startswith("keys/"):
            return self.key
        if name.startswith("report/"):
            return self.report
        if name in ("checkpoint", "checkpoint.tsr"):
            return self.note
        return self.small


def check_name(name: str) -> None:
    """Refuse any member name outside the bundle layout (zip slip and strays)."""
    if ENTRY.fullmatch(name):  # most members: digits and a fixed suffix, nothing to escape with
        return
    if "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleError("path escapes the archive (absolute or with backslashes)", member=name)
    if any(part in ("..", ".") for part in name.split("/")):
        raise BundleError("path escapes the archive ('..' or '.')", member=name)
    if name in FIXED or name in FOLDERS or any(p.fullmatch(name) for p in (ENTRY, KEY, DOCUMENT_NAME)):
        return
    raise BundleError("unexpected member: not part of the bundle layout", member=name)


# Every directory name, one per line: an entry's name gives its index and kind, any other name
# neither (its line is the second alternative). ENTRY, as bytes.
_NAME_LINES = re.compile(rb"^(?:entries/(0|[1-9][0-9]{0,18})\.(json|tlog-proof)|.*)$", re.MULTILINE)
_OTHER, _JSON, _PROOF = 0, ord("j"), ord("t")  # a record's kind: the first letter of its suffix


class BundleReader:
    """A bundle opened for bounded, checked reading (see the module doc).

    Every member's directory record is kept in compact columns (``_cols``, by row);
    ``members`` maps the names of members other than entries to their rows; ``_index`` holds
    the indices of ``entries/<i>.json`` and ``entries/<i>.tlog-proof`` in ascending order and
    ``_row`` their rows. Members are read a batch at a time (:meth:`entries`, :meth:`proofs`),
    or one by name (:meth:`read`).
    """

    def __init__(self, path: Path, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.path = Path(path)
        try:
            self._fp: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise BundleError(f"cannot read the bundle: {exc.strerror}", member=str(path)) from exc
        self.members: dict[str, int] = {}
        # the indices of entries/<i>.json and entries/<i>.tlog-proof, ascending, and their rows
        self._index = [np.zeros(0, np.uint64), np.zeros(0, np.uint64)]
        self._row = [np.zeros(0, np.intp), np.zeros(0, np.intp)]
        self._flags: npt.NDArray[np.uint16] = np.zeros(0, np.uint16)
        try:
            end = end_records(self._fp)
            self._map = mmap.mmap(self._fp.fileno(), 0, access=mmap.ACCESS_READ)
            self._file: npt.NDArray[np.uint8] = np.frombuffer(self._map, np.uint8)
            self._read_directory(*end)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------------- directory

    def _read_directory(self, count: int, cd_size: int, cd_offset: int) -> None:
        limits = self.limits
        if count > limits.members:
            raise BundleError(f"bundle has {count} members; at most {limits.members} are accepted")
        if cd_size > limits.central_directory:
            raise BundleError(f"bundle's central directory is {cd_size} bytes; too large")
        self._fp.seek(cd_offset)
        directory = self._fp.read(cd_size)
        starts = walk(directory, count)
        rec = gather(np.frombuffer(directory, np.uint8), starts, DIRECTORY)
        self._flags = rec["flags"]
        self._name_at = starts + (cd_offset + RECORD_SIZE)
        self._cols = (rec["method"], rec["crc"], rec["csize"], rec["size"], rec["offset"], rec["nlen"])
        if (rec["sig"] != RECORD_SIG_U32).any():
            raise BundleError("the zip's central directory is damaged")
        size, csize, offset = (rec[f].astype(np.uint64) for f in ("size", "csize", "offset"))
        for r in np.flatnonzero((size == ZIP64_MARK) | (csize == ZIP64_MARK) | (offset == ZIP64_MARK)).tolist():
            at = int(starts[r]) + RECORD_SIZE + int(rec["nlen"][r])
            extra = directory[at : at + int(rec["elen"][r])]
            size[r], csize[r], offset[r] = zip64_values(
                extra, self._name(r), int(size[r]), int(csize[r]), int(offset[r])
            )
        self._cols = (rec["method"], rec["crc"], csize, size, offset, rec["nlen"])
        kind, idx = self._kinds(directory, starts, rec["nlen"])
        del directory
        entry, proof = kind != _OTHER, kind == _PROOF

        # the first record that breaks a rule, in directory order (as a reader reading them in turn)
        total = np.cumsum(np.minimum(size, limits.total + 1))
        caps = np.where(proof, limits.proof, limits.entry).astype(np.uint64)
        flags, method, attr, disk = rec["flags"], rec["method"], rec["attr"], rec["disk"]
        unsafe = entry & (
            (flags & FLAG_UNUSUAL != 0)
            | ((method != STORED) & (method != DEFLATED))
            | (disk != 0)
            | (attr >> 28 == S_IFLNK_HIGH)
            | (size > caps)
            | ((method == STORED) & (csize != size))
            | ((method == DEFLATED) & (size > limits.ratio_exempt) & ((size - 1) // limits.ratio >= csize))
        )
        failures = [(first_true(total > limits.total), 0), (first_true(unsafe), 1)]
        for k, code in enumerate((_JSON, _PROOF)):
            rows = np.flatnonzero(kind == code)
            numbers = idx[rows]
            order = np.lexsort((rows, numbers))  # by index, then directory order
            self._index[k], self._row[k] = numbers[order], rows[order]
            again = self._index[k][1:] == self._index[k][:-1]
            if again.any():  # the first repeat in directory order
                failures.append((int(self._row[k][1:][again].min()), 1))
        stop, rule = min(failures)

        def judge(r: int) -> str:
            name = self._name(r)
            self._judge(name, int(flags[r]), int(method[r]), int(size[r]), int(csize[r]), int(attr[r]), int(disk[r]))
            return name

        for r in np.flatnonzero(~entry[:stop]).tolist():
            name = judge(r)
            if not name.endswith("/") and self.members.setdefault(name, r) != r:
                raise BundleError("member appears twice", member=name)
        if stop < count:
            if rule == 0:
                raise BundleError("bundle expands to more than the size limit", member=self._name(stop))
            if unsafe[stop]:
                judge(stop)
            raise BundleError("member appears twice", member=self._name(stop))

    def _kinds(
        self, directory: bytes, starts: npt.NDArray[np.int64], nlen: npt.NDArray[np.uint16]
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.uint64]]:
        """Each record's kind (:data:`_JSON`, :data:`_PROOF` or :data:`_OTHER`) and, for an
        entry, its index: the names read a slice of the directory at a time."""
        count = len(starts)
        kind = np.zeros(count, np.int8)
        idx = np.zeros(count, np.uint64)
        fixed = RECORD_SIZE
        for lo in range(0, count, GATHER):
            hi = min(count, lo + GATHER)
            names = [
                directory[a + fixed : a + fixed + n]
                for a, n in zip(starts[lo:hi].tolist(), nlen[lo:hi].tolist(), strict=True)
            ]
            lines = _NAME_LINES.findall(b"\n".join(names))
            if len(lines) != len(names):  # a name holding a line break: outside the layout
                check_name(self._name(lo + next(k for k, n in enumerate(names) if b"\n" in n)))
            digits, kinds = zip(*lines, strict=True)
            first_bytes = np.array(kinds, dtype="S10").view(np.uint8)[::10]  # of b"", b"json", b"tlog-proof"
            kind[lo:hi] = first_bytes
            entries = np.flatnonzero(kind[lo:hi])
            idx[lo + entries] = np.array([int(d) for d in digits if d], np.uint64)
        return kind, idx

    def _name(self, row: int) -> str:
        """Record ``row``'s name, as its directory record spells it."""
        at, n = int(self._name_at[row]), int(self._cols[5][row])
        raw = self._map[at : at + n]
        if raw.isascii():
            return raw.decode("ascii")
        return raw.decode("utf-8" if int(self._flags[row]) & FLAG_UTF8 else "cp437", errors="replace")

    def _judge(self, name: str, flags: int, method: int, size: int, csize: int, attr: int, disk: int) -> None:
        """Refuse a member its directory record shows to be unsafe (named)."""
        check_name(name)
        if stat.S_ISLNK(attr >> 16):
            raise BundleError("member is a symbolic link", member=name)
        if flags & (FLAG_ENCRYPTED | FLAG_STRONG):
            raise BundleError("member is encrypted", member=name)
        if flags & FLAG_DESCRIPTOR:
            raise BundleError("member uses a data descriptor (a streamed zip); re-create the zip", member=name)
        if method not in (STORED, DEFLATED):
            raise BundleError("member uses an unsupported compression method", member=name)
        if disk:
            raise BundleError("member is on another disk", member=name)
        if name.endswith("/"):
            if size:
                raise BundleError("directory entry with content", member=name)
            return
        cap = self.limits.cap(name)
        if size > cap:
            raise BundleError(f"member is {size} bytes; at most {cap} are accepted here", member=name)
        if method == STORED and csize != size:
            raise BundleError("stored member whose sizes differ", member=name)
        ratio = self.limits.ratio
        if method == DEFLATED and size > self.limits.ratio_exempt and size > ratio * csize:
            raise BundleError(
                f"member would expand {size // max(csize, 1)} times its compressed size; at most {ratio} are accepted",
                member=name,
            )

    # ------------------------------------------------------------------------ reading

    def names(self, prefix: str = "") -> Iterator[str]:
        """Names of the members other than entries and their proofs."""
        return (n for n in self.members if n.startswith(prefix))

    def has(self, name: str) -> bool:
        return name in self.members

    @property
    def entry_indices(self) -> list[int]:
        """Every index with an ``entries/<i>.json`` or ``.tlog-proof``, ascending."""
        indices: list[int] = np.union1d(*self._index).tolist()
        return indices

    def unpaired(self) -> tuple[int, bool] | None:
        """The lowest index with an entry but no proof or a proof but no entry, and whether it
        is the entry that is missing; None when every entry has its proof."""
        json, proof = self._index
        if np.array_equal(json, proof):
            return None
        first = int(np.setxor1d(json, proof)[0])
        return first, not self.has_entry(first)

    def has_entry(self, index: int) -> bool:
        return self._at([index], proof=False)[1] == 0

    def has_proof(self, index: int) -> bool:
        return self._at([index], proof=True)[1] == 0

    def entries(self, indices: Sequence[int]) -> list[bytes]:
        """``entries/<i>.json`` of each index, read at once."""
        return self._read(self._find(indices, proof=False))

    def proofs(self, indices: Sequence[int]) -> list[bytes]:
        """``entries/<i>.tlog-proof`` of each index, read at once."""
        return self._read(self._find(indices, proof=True))

    def entry(self, index: int) -> bytes:
        return self.entries([index])[0]

    def proof(self, index: int) -> bytes:
        return self.proofs([index])[0]

    def chunks(self, indices: Sequence[int], count: int, budget: int) -> Iterator[Sequence[int]]:
        """``indices`` in runs of ``count``, or fewer when their entries and proofs together
        would exceed ``budget`` bytes (never fewer than one)."""
        for lo in range(0, len(indices), count):
            run = indices[lo : lo + count]
            sizes = self._cols[3]
            held = np.cumsum(sizes[self._find(run, proof=False)] + sizes[self._find(run, proof=True)])
            while len(run):
                take = max(1, int(np.searchsorted(held, budget, side="right")))
                yield run[:take]
                run, held = run[take:], held[take:] - held[take - 1]

    def _at(self, indices: Sequence[int], *, proof: bool) -> tuple[npt.NDArray[np.intp], int]:
        """The rows of ``indices``' entries (or proofs), and how many of them are missing."""
        held, rows = self._index[proof], self._row[proof]
        wanted = np.fromiter(indices, np.uint64, len(indices))
        if not len(held):
            return np.zeros(len(wanted), np.intp), len(wanted)
        pos = np.minimum(np.searchsorted(held, wanted), len(held) - 1)
        return rows[pos], int(len(wanted) - np.count_nonzero(held[pos] == wanted))

    def _find(self, indices: Sequence[int], *, proof: bool) -> npt.NDArray[np.intp]:
        rows, missing = self._at(indices, proof=proof)
        if missing:
            absent = next(i for i in indices if not (self.has_proof(i) if proof else self.has_entry(i)))
            raise BundleError("missing member", member=f"entries/{absent}.{_KINDS[proof]}")
        return rows

    def read(self, name: str) -> bytes:
        """The member's bytes; raises naming the member."""
        m = ENTRY.fullmatch(name)
        if m is not None:
            return self.entry(int(m[1])) if m[2] == "json" else self.proof(int(m[1]))
        row = self.members.get(name)
        if row is None:
            raise BundleError("missing member", member=name)
        return self._read(np.array([row], np.intp))[0]

    def _read(self, rows: npt.NDArray[np.intp]) -> list[bytes]:
        """The members at ``rows``, each checked as a zip reader must: its local header repeats the
        directory's method and name, it is not encrypted, it is inflated to exactly its size and
        its CRC-32 matches. The first member (in ``rows``' order) that breaks a rule is named."""
        if hasattr(self._map, "madvise"):  # what earlier reads mapped is not held on to
            self._map.madvise(mmap.MADV_DONTNEED)
        methods, crcs, csizes, sizes, offsets, nlens = self._cols
        end_of_file = len(self._file)
        past = offsets[rows] > max(end_of_file - LOCAL_SIZE, 0)  # compared unsigned: no offset wraps
        if end_of_file < LOCAL_SIZE:
            past[:] = True
        at = np.where(past, 0, offsets[rows]).astype(np.int64)
        head = gather(self._file, at, LOCAL_HEADER)
        nlen = nlens[rows].astype(np.int64)
        width = int(nlen.max(initial=0))
        span = np.arange(width, dtype=np.int64)
        last = end_of_file - 1
        here = self._file[np.minimum(at[:, None] + LOCAL_SIZE + span, last)]
        there = self._file[np.minimum(self._name_at[rows][:, None] + span, last)]
        same_name = ((here == there) | (span >= nlen[:, None])).all(axis=1)
        differs = (
            (head["sig"] != LOCAL_SIG_U32) | (head["method"] != methods[rows]) | (head["nlen"] != nlen) | ~same_name
        )
        start = at + LOCAL_SIZE + head["nlen"] + head["elen"]
        csize = csizes[rows]
        stop = start + np.minimum(csize, end_of_file + 1).astype(np.int64)  # past the end either way
        problems = (
            (past, "member's local header is past the end of the file"),
            (differs, "member's local header differs from its directory record"),
            (head["flags"] & FLAG_ENCRYPTED != 0, "member is encrypted"),
            (stop > end_of_file, "member is truncated"),
        )
        firsts = [(first_true(mask), k) for k, (mask, _) in enumerate(problems)]
        first, k = min(firsts)
        if first < len(rows):
            raise BundleError(problems[k][1], member=self._name(int(rows[first])))
        view = self._map
        datas = [view[a:b] for a, b in zip(start.tolist(), stop.tolist(), strict=True)]
        for k in np.flatnonzero(methods[rows] == DEFLATED).tolist():
            datas[k] = self._inflate(datas[k], int(sizes[rows[k]]), int(rows[k]))
        crc = np.fromiter(map(zlib.crc32, datas), np.uint32, len(datas))
        if (bad := first_true(crc != crcs[rows])) < len(rows):
            raise BundleError("member's CRC-32 does not match its content", member=self._name(int(rows[bad])))
        return datas

    def _inflate(self, raw: bytes, size: int, row: int) -> bytes:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = inflater.decompress(raw, size + 1)
        except zlib.error as exc:
            raise BundleError(f"member cannot be inflated: {exc}", member=self._name(row)) from exc
        if len(data) != size or not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
            raise BundleError("member does not inflate to its declared size", member=self._name(row))
        return data

    def close(self) -> None:
        if hasattr(self, "_file"):
            del self._file  # the map cannot close while an array views it
        if hasattr(self, "_map"):
            with contextlib.suppress(BufferError):  # an array still views it (a traceback's frame): unmapped when freed
                self._map.close()
        self._fp.close()

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_KINDS = ("json", "tlog-proof")
