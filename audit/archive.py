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
import io
import mmap
import re
import stat
import struct
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from audit.entries import DOCUMENT_NAME
from audit.errors import BundleError

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


_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIG = b"PK\x05\x06"
_LOCATOR = struct.Struct("<4sLQL")
_LOCATOR_SIG = b"PK\x06\x07"
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_EOCD64_SIG = b"PK\x06\x06"
_RECORD = struct.Struct("<4s4H4x3L5H2L")  # sig, made by, needed, flags, method, crc, sizes, lengths, ...
_RECORD_SIG = b"PK\x01\x02"
_LOCAL = struct.Struct("<4s2xHH16xHH")  # sig, flags, method, name length, extra length
_LOCAL_SIG = b"PK\x03\x04"
_FLAG_ENCRYPTED = 0x0001
_FLAG_DESCRIPTOR = 0x0008
_FLAG_STRONG = 0x0040
_FLAG_UTF8 = 0x0800
_FLAG_UNUSUAL = _FLAG_ENCRYPTED | _FLAG_DESCRIPTOR | _FLAG_STRONG
_S_IFLNK_HIGH = stat.S_IFLNK >> 12  # the file type in the top 4 bits of the external attributes
_ZIP64 = 0xFFFFFFFF
_STORED, _DEFLATED = 0, 8


def _end_records(fp: BinaryIO) -> tuple[int, int, int]:
    """(members, directory size, directory offset), read from the end records alone."""
    end = fp.seek(0, io.SEEK_END)
    tail_len = min(end, _EOCD.size + 0xFFFF)
    fp.seek(end - tail_len)
    tail = fp.read(tail_len)
    pos = tail.rfind(_EOCD_SIG)
    if pos < 0 or len(tail) - pos < _EOCD.size:
        raise BundleError("not a zip archive (no end-of-central-directory record)")
    _, disk, cd_disk, here, count, cd_size, cd_offset, comment = _EOCD.unpack_from(tail, pos)
    eocd_at = end - tail_len + pos
    if pos + _EOCD.size + comment != len(tail):
        raise BundleError("the zip's end record is damaged (its comment does not end the file)")
    directory_end = eocd_at
    if count == 0xFFFF or cd_size == _ZIP64 or cd_offset == _ZIP64:
        loc = pos - _LOCATOR.size
        if loc < 0 or tail[loc : loc + 4] != _LOCATOR_SIG:
            raise BundleError("zip64 archive without its locator")
        _, disk64, record_at, disks = _LOCATOR.unpack_from(tail, loc)
        fp.seek(record_at)
        record = fp.read(_EOCD64.size)
        if disk64 or disks > 1 or len(record) < _EOCD64.size or record[:4] != _EOCD64_SIG:
            raise BundleError("zip64 end record is damaged")
        _, _, _, _, disk, cd_disk, here, count, cd_size, cd_offset = _EOCD64.unpack(record)
        directory_end = record_at
    if disk or cd_disk or here != count:
        raise BundleError("multi-disk zip archives are not bundles")
    if cd_offset + cd_size > directory_end:
        raise BundleError("the zip's central directory runs past its end record")
    return count, cd_size, cd_offset


def _zip64(extra: bytes, member: str, *values: int) -> list[int]:
    """Resolve 0xFFFFFFFF fields from the zip64 extra field (in its order: size, compressed, offset)."""
    wanted = [v == _ZIP64 for v in values]
    out = list(values)
    if not any(wanted):
        return out
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            field = extra[pos + 4 : pos + 4 + length]
            k = 0
            for j, need in enumerate(wanted):
                if need:
                    if k + 8 > len(field):
                        break
                    (out[j],) = struct.unpack_from("<Q", field, k)
                    k += 8
            else:
                return out
            break
        pos += 4 + length
    raise BundleError("zip64 sizes are missing from the member's extra field", member=member)


_LENGTHS = struct.Struct("<3H")  # name, extra field and comment lengths, 28 bytes into a directory record
_DIRECTORY = np.dtype(
    [
        ("sig", "<u4"),
        ("made_by", "<u2"),
        ("needed", "<u2"),
        ("flags", "<u2"),
        ("method", "<u2"),
        ("when", "<u4"),
        ("crc", "<u4"),
        ("csize", "<u4"),
        ("size", "<u4"),
        ("nlen", "<u2"),
        ("elen", "<u2"),
        ("clen", "<u2"),
        ("disk", "<u2"),
        ("internal", "<u2"),
        ("attr", "<u4"),
        ("offset", "<u4"),
    ]
)
_LOCAL_HEADER = np.dtype(
    [
        ("sig", "<u4"),
        ("needed", "<u2"),
        ("flags", "<u2"),
        ("method", "<u2"),
        ("when", "<u4"),
        ("crc", "<u4"),
        ("csize", "<u4"),
        ("size", "<u4"),
        ("nlen", "<u2"),
        ("elen", "<u2"),
    ]
)
_RECORD_SIG_U32 = int.from_bytes(_RECORD_SIG, "little")
_LOCAL_SIG_U32 = int.from_bytes(_LOCAL_SIG, "little")
# Every directory name, one per line: an entry's name gives its index and kind, any other name
# neither (its line is the second alternative). ENTRY, as bytes.
_NAME_LINES = re.compile(rb"^(?:entries/(0|[1-9][0-9]{0,18})\.(json|tlog-proof)|.*)$", re.MULTILINE)
_OTHER, _JSON, _PROOF = 0, ord("j"), ord("t")  # a record's kind: the first letter of its suffix
_GATHER = 1 << 15  # directory records gathered at once (a bounded index array)


def _first(mask: npt.NDArray[np.bool_]) -> int:
    """Position of the first True in ``mask``, or its length when none is."""
    return int(mask.argmax()) if mask.any() else len(mask)


def _gather(data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """The fixed-size records of ``dtype`` at ``starts`` in ``data`` (every start checked in range)."""
    out = np.empty(len(starts), dtype)
    flat = out.view(np.uint8).reshape(len(starts), dtype.itemsize)
    width = np.arange(dtype.itemsize, dtype=np.int64)
    for lo in range(0, len(starts), _GATHER):
        flat[lo : lo + _GATHER] = data[starts[lo : lo + _GATHER, None] + width]
    return out


def _walk(directory: bytes, count: int) -> npt.NDArray[np.int64]:
    """Where each of the ``count`` records of the central directory starts."""
    lengths, fixed = _LENGTHS.unpack_from, _RECORD.size
    starts = array("q")
    append = starts.append
    pos = 0
    try:
        for _ in range(count):
            n, e, c = lengths(directory, pos + 28)
            append(pos)
            pos += fixed + n + e + c
    except struct.error:
        raise BundleError("the zip's central directory is damaged") from None
    if pos > len(directory):
        raise BundleError("the zip's central directory is damaged")
    if pos < len(directory):
        raise BundleError("the zip's central directory holds more than its end record counts")
    return np.frombuffer(starts, np.int64) if count else np.zeros(0, np.int64)


class BundleReader:
    """A bundle opened for bounded, checked reading (see the module doc).

    Every member's directory record is kept in compact columns (``_cols``, by row);
    ``members`` maps the names of members other than entries to their rows, ``_rows`` the
    indices of ``entries/<i>.json`` and ``entries/<i>.tlog-proof`` to theirs. Members are
    read a batch at a time (:meth:`entries`, :meth:`proofs`), or one by name (:meth:`read`).
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
            end = _end_records(self._fp)
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
        starts = _walk(directory, count)
        rec = _gather(np.frombuffer(directory, np.uint8), starts, _DIRECTORY)
        self._flags = rec["flags"]
        self._name_at = starts + (cd_offset + _RECORD.size)
        self._cols = (rec["method"], rec["crc"], rec["csize"], rec["size"], rec["offset"], rec["nlen"])
        if (rec["sig"] != _RECORD_SIG_U32).any():
            raise BundleError("the zip's central directory is damaged")
        size, csize, offset = (rec[f].astype(np.uint64) for f in ("size", "csize", "offset"))
        for r in np.flatnonzero((size == _ZIP64) | (csize == _ZIP64) | (offset == _ZIP64)).tolist():
            at = int(starts[r]) + _RECORD.size + int(rec["nlen"][r])
            extra = directory[at : at + int(rec["elen"][r])]
            size[r], csize[r], offset[r] = _zip64(extra, self._name(r), int(size[r]), int(csize[r]), int(offset[r]))
        self._cols = (rec["method"], rec["crc"], csize, size, offset, rec["nlen"])
        kind, idx = self._kinds(directory, starts, rec["nlen"])
        del directory
        entry, proof = kind != _OTHER, kind == _PROOF

        # the first record that breaks a rule, in directory order (as a reader reading them in turn)
        total = np.cumsum(np.minimum(size, limits.total + 1))
        caps = np.where(proof, limits.proof, limits.entry).astype(np.uint64)
        flags, method, attr, disk = rec["flags"], rec["method"], rec["attr"], rec["disk"]
        unsafe = entry & (
            (flags & _FLAG_UNUSUAL != 0)
            | ((method != _STORED) & (method != _DEFLATED))
            | (disk != 0)
            | (attr >> 28 == _S_IFLNK_HIGH)
            | (size > caps)
            | ((method == _STORED) & (csize != size))
            | ((method == _DEFLATED) & (size > limits.ratio_exempt) & ((size - 1) // limits.ratio >= csize))
        )
        failures = [(_first(total > limits.total), 0), (_first(unsafe), 1)]
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
        fixed = _RECORD.size
        for lo in range(0, count, _GATHER):
            hi = min(count, lo + _GATHER)
            names = [
                directory[a + fixed : a + fixed + n]
                for a, n in zip(starts[lo:hi].tolist(), nlen[lo:hi].tolist(), strict=True)
            ]
            lines = _NAME_LINES.findall(b"\n".join(names))
            if len(lines) != len(names):  # a name holding a line break: outside the layout
                check_name(self._name(lo + next(k for k, n in enumerate(names) if b"\n" in n)))
            digits, kinds = zip(*lines, strict=True)
            kind[lo:hi] = np.array(kinds, dtype="S10").view(np.uint8)[
                ::10
            ]  # b"", b"json", b"tlog-proof": their first byte
            entries = np.flatnonzero(kind[lo:hi])
            idx[lo + entries] = np.array([int(d) for d in digits if d], np.uint64)
        return kind, idx

    def _name(self, row: int) -> str:
        """Record ``row``'s name, as its directory record spells it."""
        at, n = int(self._name_at[row]), int(self._cols[5][row])
        raw = self._map[at : at + n]
        if raw.isascii():
            return raw.decode("ascii")
        return raw.decode("utf-8" if int(self._flags[row]) & _FLAG_UTF8 else "cp437", errors="replace")

    def _judge(self, name: str, flags: int, method: int, size: int, csize: int, attr: int, disk: int) -> None:
        """Refuse a member its directory record shows to be unsafe (named)."""
        check_name(name)
        if stat.S_ISLNK(attr >> 16):
            raise BundleError("member is a symbolic link", member=name)
        if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG):
            raise BundleError("member is encrypted", member=name)
        if flags & _FLAG_DESCRIPTOR:
            raise BundleError("member uses a data descriptor (a streamed zip); re-create the zip", member=name)
        if method not in (_STORED, _DEFLATED):
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
        if method == _STORED and csize != size:
            raise BundleError("stored member whose sizes differ", member=name)
        ratio = self.limits.ratio
        if method == _DEFLATED and size > self.limits.ratio_exempt and size > ratio * csize:
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
        past = offsets[rows] > max(end_of_file - _LOCAL.size, 0)  # compared unsigned: no offset wraps
        if end_of_file < _LOCAL.size:
            past[:] = True
        at = np.where(past, 0, offsets[rows]).astype(np.int64)
        head = _gather(self._file, at, _LOCAL_HEADER)
        nlen = nlens[rows].astype(np.int64)
        width = int(nlen.max(initial=0))
        span = np.arange(width, dtype=np.int64)
        last = end_of_file - 1
        here = self._file[np.minimum(at[:, None] + _LOCAL.size + span, last)]
        there = self._file[np.minimum(self._name_at[rows][:, None] + span, last)]
        same_name = ((here == there) | (span >= nlen[:, None])).all(axis=1)
        differs = (
            (head["sig"] != _LOCAL_SIG_U32) | (head["method"] != methods[rows]) | (head["nlen"] != nlen) | ~same_name
        )
        start = at + _LOCAL.size + head["nlen"] + head["elen"]
        csize = csizes[rows]
        stop = start + np.minimum(csize, end_of_file + 1).astype(np.int64)  # past the end either way
        problems = (
            (past, "member's local header is past the end of the file"),
            (differs, "member's local header differs from its directory record"),
            (head["flags"] & _FLAG_ENCRYPTED != 0, "member is encrypted"),
            (stop > end_of_file, "member is truncated"),
        )
        firsts = [(_first(mask), k) for k, (mask, _) in enumerate(problems)]
        first, k = min(firsts)
        if first < len(rows):
            raise BundleError(problems[k][1], member=self._name(int(rows[first])))
        view = self._map
        datas = [view[a:b] for a, b in zip(start.tolist(), stop.tolist(), strict=True)]
        for k in np.flatnonzero(methods[rows] == _DEFLATED).tolist():
            datas[k] = self._inflate(datas[k], int(sizes[rows[k]]), int(rows[k]))
        crc = np.fromiter(map(zlib.crc32, datas), np.uint32, len(datas))
        if (bad := _first(crc != crcs[rows])) < len(rows):
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
