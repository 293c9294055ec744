"""Reading a bundle zip as hostile input: one streaming reader, standard library only.

:class:`BundleReader` reads the zip's end records and then streams its central
directory — the record every zip tool extracts by — with :mod:`struct`, judging each
member before any content is read:

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

Members are then read one at a time at their offsets: the local header must repeat the
directory's name and method, a deflated member is inflated with :mod:`zlib` to exactly
its declared size and no further, and its CRC-32 must match. Only the directory's
small per-member records stay in memory (about 100 bytes each), so memory does not
grow with what the bundle claims to hold. Every refusal names the member.
"""

from __future__ import annotations

import io
import re
import stat
import struct
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

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
    if ENTRY.match(name):  # most members: digits and a fixed suffix, nothing to escape with
        return
    if "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleError("path escapes the archive (absolute or with backslashes)", member=name)
    if any(part in ("..", ".") for part in name.split("/")):
        raise BundleError("path escapes the archive ('..' or '.')", member=name)
    if name in FIXED or name in FOLDERS or ENTRY.match(name) or KEY.match(name) or DOCUMENT_NAME.match(name):
        return
    raise BundleError("unexpected member: not part of the bundle layout", member=name)


class Member(NamedTuple):
    """A member as its directory record describes it."""

    name: str
    method: int  # 0 stored, 8 deflated
    crc: int
    compressed: int
    size: int
    offset: int  # of its local header


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


class _Chunks:
    """``size`` bytes of a file from ``start``, handed out as records, read 1 MiB at a time.

    :meth:`record` returns (buffer, position) with at least ``n`` bytes at the position
    (fewer only at the end); :meth:`advance` moves past a record.
    """

    def __init__(self, fp: BinaryIO, start: int, size: int) -> None:
        self._fp, self._at, self.left = fp, start, size
        self.buf, self.pos = b"", 0

    def record(self, n: int) -> int:
        if self.pos + n > len(self.buf) and self.left:
            want = min(self.left, max(n, MiB))
            self._fp.seek(self._at)
            self.buf = self.buf[self.pos :] + self._fp.read(want)
            self._at += want
            self.left -= want
            self.pos = 0
        return len(self.buf) - self.pos

    @property
    def remaining(self) -> int:
        return self.left + len(self.buf) - self.pos


class BundleReader:
    """A bundle opened for bounded, checked, member-by-member reading (see the module doc).

    ``members`` holds every member but the entries by name; the entries' records are
    kept in compact columns, by index: :meth:`entry` and :meth:`proof` read
    ``entries/<i>.json`` and ``entries/<i>.tlog-proof``.
    """

    def __init__(self, path: Path, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.path = Path(path)
        try:
            self._fp: BinaryIO = open(self.path, "rb", buffering=MiB)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise BundleError(f"cannot read the bundle: {exc.strerror}", member=str(path)) from exc
        self.members: dict[str, Member] = {}
        self._rows: tuple[dict[int, int], dict[int, int]] = ({}, {})  # index -> row, for .json and .tlog-proof
        self._cols = [array("B"), array("L"), array("Q"), array("Q"), array("Q")]  # method, crc, sizes, offset
        try:
            self._read_directory()
        except BaseException:
            self._fp.close()
            raise

    def _read_directory(self) -> None:
        limits, fp = self.limits, self._fp
        count, cd_size, cd_offset = _end_records(fp)
        if count > limits.members:
            raise BundleError(f"bundle has {count} members; at most {limits.members} are accepted")
        if cd_size > limits.central_directory:
            raise BundleError(f"bundle's central directory is {cd_size} bytes; too large")
        directory = _Chunks(fp, cd_offset, cd_size)
        unpack, match, fixed = _RECORD.unpack_from, ENTRY.match, _RECORD.size
        methods, crcs, compressed, sizes, offsets = self._cols
        caps = (limits.entry, limits.proof)
        total = 0
        for _ in range(count):
            if directory.record(fixed) < fixed or not directory.buf.startswith(_RECORD_SIG, directory.pos):
                raise BundleError("the zip's central directory is damaged")
            _, _, _, flags, method, crc, csize, size, nlen, elen, clen, disk, _, attr, offset = unpack(
                directory.buf, directory.pos
            )
            length = fixed + nlen + elen + clen
            if directory.record(length) < length:
                raise BundleError("the zip's central directory is damaged")
            buf, at = directory.buf, directory.pos + fixed
            directory.pos += length
            raw = buf[at : at + nlen]
            name = raw.decode("ascii") if raw.isascii() else raw.decode("utf-8" if flags & _FLAG_UTF8 else "cp437")
            if _ZIP64 in (size, csize, offset):
                size, csize, offset = _zip64(buf[at + nlen : at + nlen + elen], name, size, csize, offset)
            total += size
            if total > limits.total:
                raise BundleError("bundle expands to more than the size limit", member=name)
            m = match(name)
            if m is None:
                self._judge(name, flags, method, size, csize, attr, disk)
                if not name.endswith("/"):
                    member = Member(name, method, crc, csize, size, offset)
                    if self.members.setdefault(name, member) is not member:
                        raise BundleError("member appears twice", member=name)
                continue
            proof = m[2] != "json"
            if (
                flags & _FLAG_UNUSUAL
                or method not in (_STORED, _DEFLATED)
                or disk
                or attr >> 28 == _S_IFLNK_HIGH
                or size > caps[proof]
                or (method == _STORED and csize != size)
                or (method == _DEFLATED and size > limits.ratio_exempt and size > limits.ratio * csize)
            ):
                self._judge(name, flags, method, size, csize, attr, disk)  # says which rule
            rows = self._rows[proof]
            if rows.setdefault(int(m[1]), len(methods)) != len(methods):
                raise BundleError("member appears twice", member=name)
            methods.append(method)
            crcs.append(crc)
            compressed.append(csize)
            sizes.append(size)
            offsets.append(offset)
        if directory.remaining:
            raise BundleError("the zip's central directory holds more than its end record counts")

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
        return sorted(self._rows[0].keys() | self._rows[1].keys())

    def has_entry(self, index: int) -> bool:
        return index in self._rows[0]

    def has_proof(self, index: int) -> bool:
        return index in self._rows[1]

    def entry(self, index: int) -> bytes:
        """``entries/<index>.json``."""
        return self.content(self._member(f"entries/{index}.json", self._rows[0].get(index)))

    def proof(self, index: int) -> bytes:
        """``entries/<index>.tlog-proof``."""
        return self.content(self._member(f"entries/{index}.tlog-proof", self._rows[1].get(index)))

    def _member(self, name: str, row: int | None) -> Member:
        if row is None:
            raise BundleError("missing member", member=name)
        methods, crcs, compressed, sizes, offsets = self._cols
        return Member(name, methods[row], crcs[row], compressed[row], sizes[row], offsets[row])

    def read(self, name: str) -> bytes:
        """The member's bytes; raises naming the member."""
        m = ENTRY.match(name)
        if m is not None:
            return self.entry(int(m[1])) if m[2] == "json" else self.proof(int(m[1]))
        member = self.members.get(name)
        if member is None:
            raise BundleError("missing member", member=name)
        return self.content(member)

    def content(self, member: Member) -> bytes:
        """A member's bytes: local header checked, inflated to exactly its size, CRC-32 checked."""
        fp, name = self._fp, member.name
        want = name.encode("utf-8")
        fixed = _LOCAL.size + len(want)
        fp.seek(member.offset)
        chunk = fp.read(fixed + member.compressed)  # the header, the name and, without extra field, the data
        if len(chunk) < _LOCAL.size:
            raise BundleError("member's local header is past the end of the file", member=name)
        sig, flags, method, nlen, elen = _LOCAL.unpack_from(chunk)
        if sig != _LOCAL_SIG or method != member.method or nlen != len(want) or chunk[_LOCAL.size : fixed] != want:
            raise BundleError("member's local header differs from its directory record", member=name)
        if flags & _FLAG_ENCRYPTED:
            raise BundleError("member is encrypted", member=name)
        raw = chunk[fixed:] + fp.read(elen) if elen else chunk[fixed:]
        raw = raw[elen:]
        if len(raw) != member.compressed:
            raise BundleError("member is truncated", member=name)
        if method == _DEFLATED:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                data = inflater.decompress(raw, member.size + 1)
            except zlib.error as exc:
                raise BundleError(f"member cannot be inflated: {exc}", member=name) from exc
            if len(data) != member.size or not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
                raise BundleError("member does not inflate to its declared size", member=name)
        else:
            data = raw
        if zlib.crc32(data) != member.crc:
            raise BundleError("member's CRC-32 does not match its content", member=name)
        return data

    def close(self) -> None:
        self._fp.close()

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
