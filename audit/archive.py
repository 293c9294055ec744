"""Reading a bundle zip as hostile input: layout, paths, sizes and counts are bounded.

Nothing is extracted to disk. Two readers share the rules below.

:class:`SafeZip` is the reference: before :mod:`zipfile` parses the central directory,
the end-of-central-directory record (and its Zip64 form) is read to refuse archives with
too many members or an oversized directory. Each member must have a name from the bundle
layout (so ``..``, absolute paths, backslashes and stray files are refused), must not be a
symlink, encrypted, duplicated or use a compression other than stored/deflate, and is read
with a size cap by kind — :mod:`zipfile` never returns more than the declared size and
checks the CRC, so a lying header cannot inflate memory. Every refusal names the member.

:class:`ZipIndex` is the fast reader ``audit verify`` tries first: it maps the file once,
parses the central directory itself with :mod:`struct` under the same limits and name
rules, and slices stored members (inflating deflated ones with :mod:`zlib`, bounded by the
declared size), checking each local header against its directory record and every CRC.
It only accepts archives in the plain form gpumeter and common tools write (no comments,
extra fields, data descriptors, encryption, NUL or non-ASCII names, gaps before the
directory); on anything else — malformed or merely unusual — it raises
:class:`Unsupported` and the caller falls back to :class:`SafeZip`, whose refusals are the
ones users see. So the fast reader can only ever be stricter than the reference.
"""

from __future__ import annotations

import contextlib
import mmap
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from audit.entries import DOCUMENT_NAME
from audit.errors import BundleError

ENTRY = re.compile(r"^entries/(0|[1-9][0-9]{0,18})\.(json|tlog-proof)$")
KEY = re.compile(r"^keys/[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.vkey$")
FIXED = frozenset(
    {"checkpoint", "consistency.json", "policy.json", "VERIFY.md", "report/sovereignty.csv", "report/summary.md"}
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
    small: int = 1 * MiB  # policy.json, consistency.json, VERIFY.md
    report: int = 256 * MiB  # report/*
    document: int = 256 * MiB

    def cap(self, name: str) -> int:
        if name.startswith("entries/"):
            return self.entry if name.endswith(".json") else self.proof
        if name.startswith("documents/"):
            return self.document
        if name.startswith("keys/"):
            return self.key
        if name.startswith("report/"):
            return self.report
        if name == "checkpoint":
            return self.note
        return self.small


_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"


def _directory_size(fp: BinaryIO) -> tuple[int, int]:
    """(members, central-directory bytes) from the end records, without parsing the directory."""
    fp.seek(0, 2)
    end = fp.tell()
    tail_len = min(end, 22 + 0xFFFF)
    fp.seek(end - tail_len)
    tail = fp.read(tail_len)
    pos = tail.rfind(_EOCD)
    if pos < 0 or len(tail) - pos < 22:
        raise BundleError("not a zip archive (no end-of-central-directory record)")
    _, _, _, _, count, cd_size, _, _ = struct.unpack("<4s4H2LH", tail[pos : pos + 22])
    if count == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc = pos - 20
        if loc < 0 or tail[loc : loc + 4] != _ZIP64_LOCATOR:
            raise BundleError("zip64 archive without its locator")
        (zip64_at,) = struct.unpack("<Q", tail[loc + 8 : loc + 16])
        if zip64_at >= end:
            raise BundleError("zip64 end record points outside the file")
        fp.seek(zip64_at)
        rec = fp.read(56)
        if len(rec) < 56 or rec[:4] != _ZIP64_EOCD:
            raise BundleError("zip64 end record is damaged")
        count, cd_size = struct.unpack("<QQ", rec[32:48])
    return count, cd_size


def check_name(name: str) -> None:
    """Refuse any member name outside the bundle layout (zip slip and strays)."""
    if "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleError("path escapes the archive (absolute or with backslashes)", member=name)
    if any(part in ("..", ".") for part in name.split("/")):
        raise BundleError("path escapes the archive ('..' or '.')", member=name)
    if name in FIXED or name in FOLDERS or ENTRY.match(name) or KEY.match(name) or DOCUMENT_NAME.match(name):
        return
    raise BundleError("unexpected member: not part of the bundle layout", member=name)


class SafeZip:
    """A bundle opened for bounded, checked, member-by-member reading."""

    def __init__(self, path: Path, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.path = path
        try:
            self._fp: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise BundleError(f"cannot read the bundle: {exc.strerror}", member=str(path)) from exc
        try:
            count, cd_size = _directory_size(self._fp)
            if count > self.limits.members:
                raise BundleError(f"bundle has {count} members; at most {self.limits.members} are accepted")
            if cd_size > self.limits.central_directory:
                raise BundleError(f"bundle's central directory is {cd_size} bytes; too large")
            self._fp.seek(0)
            self._zip = zipfile.ZipFile(self._fp)
            infos = self._zip.infolist()
        except BundleError:
            self._fp.close()
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error) as exc:
            self._fp.close()
            raise BundleError(f"not a readable zip archive: {exc}") from exc
        if len(infos) > self.limits.members:
            self.close()
            raise BundleError(f"bundle has more than {self.limits.members} members")
        self.members: dict[str, zipfile.ZipInfo] = {}
        total = 0
        try:
            for info in infos:
                self._check(info)
                if info.filename in self.members:
                    raise BundleError("member appears twice", member=info.filename)
                total += info.file_size
                if total > self.limits.total:
                    raise BundleError("bundle expands to more than the size limit", member=info.filename)
                if not info.filename.endswith("/"):
                    self.members[info.filename] = info
        except BundleError:
            self.close()
            raise

    def _check(self, info: zipfile.ZipInfo) -> None:
        name = info.filename
        check_name(name)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BundleError("member is a symbolic link", member=name)
        if info.flag_bits & 0x1:
            raise BundleError("member is encrypted", member=name)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BundleError("member uses an unsupported compression method", member=name)
        if name.endswith("/"):
            if info.file_size:
                raise BundleError("directory entry with content", member=name)
            return
        cap = self.limits.cap(name)
        if info.file_size > cap:
            raise BundleError(f"member is {info.file_size} bytes; at most {cap} are accepted here", member=name)

    def names(self, prefix: str = "") -> Iterator[str]:
        return (n for n in self.members if n.startswith(prefix))

    def has(self, name: str) -> bool:
        return name in self.members

    def read(self, name: str) -> bytes:
        """The member's bytes, at most its cap; raises naming the member."""
        info = self.members.get(name)
        if info is None:
            raise BundleError("missing member", member=name)
        cap = self.limits.cap(name)
        try:
            with self._zip.open(info) as src:
                data = src.read(cap + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
            raise BundleError(f"member cannot be read: {exc}", member=name) from exc
        if len(data) > cap:
            raise BundleError(f"member is larger than {cap} bytes", member=name)
        return data

    def close(self) -> None:
        with contextlib.suppress(AttributeError):  # __init__ failed before the zip was opened
            self._zip.close()
        self._fp.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- fast reader


class Unsupported(Exception):
    """The fast reader does not vouch for this archive; :class:`SafeZip` decides."""


# a central directory record: sig, needed, flags, method, crc, csize, usize, nl, el, cl, disk, attr, off
_CD = struct.Struct("<4s2xHHH4xLLLHHHH2xLL")
_CD_SIG = b"PK\x01\x02"
_LH_SIG = b"PK\x03\x04"
_CD_FIXED = 46  # directory record bytes before the name
_LH_FIXED = 30  # local header bytes before the name; its bytes 4..30 are the record's 6..32
_MAX_EXTRACT_VERSION = 63  # zipfile refuses newer
_UTF8_NAME = 0x800
_LIMIT32 = 0xFFFFFFFF
_ENTRY_NAME = re.compile(rb"entries/(0|[1-9][0-9]{0,18})\.(json|tlog-proof)")
_PLAIN_NAME = re.compile(rb"[\x21-\x7e]+")  # printable ASCII without space: every layout name is
_S_IFMT, _S_IFLNK = 0o170000, 0o120000
_DIGITS = b"0123456789"
# Directory-record bytes that may differ between members of one run (see ZipIndex._pairs):
# made-by version, time and date, CRC and sizes, internal attributes, local header offset.
_VARIABLE = (*range(4, 6), *range(12, 28), *range(36, 38), *range(42, 46))
_FIRST_WINDOW, _MAX_WINDOW = 16, 1 << 16

# (method, CRC-32, compressed size, size, offset of the data); the local header was checked
Member = tuple[int, int, int, int, int]


def _end_records(mm: mmap.mmap, size: int) -> tuple[int, int, int]:
    """(members, directory size, directory offset) of a plain archive: the end record last,
    without a comment, its Zip64 form (when present) right before it, no disk spanning, and
    the directory ending where the end records begin (nothing prepended)."""
    if size < 22:
        raise Unsupported
    sig, disk, cd_disk, here, count, cd_size, cd_off, comment = struct.unpack("<4s4H2LH", mm[size - 22 : size])
    if sig != _EOCD or comment or disk or cd_disk or here != count:
        raise Unsupported
    end = size - 22
    loc = end - 20
    if loc >= 0 and mm[loc : loc + 4] == _ZIP64_LOCATOR:
        _, disk64, rec_at, disks = struct.unpack("<4sLQL", mm[loc : loc + 20])
        end = loc - 56
        if disk64 or disks > 1 or end < 0 or rec_at != end:
            raise Unsupported
        sig, _, _, _, disk, cd_disk, here, count, cd_size, cd_off = struct.unpack("<4sQ2H2L4Q", mm[end:loc])
        if sig != _ZIP64_EOCD or disk or cd_disk or here != count:
            raise Unsupported
    if cd_off + cd_size != end:
        raise Unsupported
    return count, cd_size, cd_off


def _columns(seg: bytes, at: int, width: int, stride: int, k: int) -> bytes:
    """Bytes ``at .. at+width`` of each of ``k`` records of ``stride`` bytes, concatenated."""
    out = bytearray(width * k)
    last = (k - 1) * stride + 1
    for b in range(width):
        out[b::width] = seg[at + b : at + b + last : stride]
    return bytes(out)


def _u32(seg: bytes, at: int, stride: int, k: int) -> tuple[int, ...]:
    return struct.unpack(f"<{k}L", _columns(seg, at, 4, stride, k))


class _Record:
    """One directory record, parsed and checked on its own."""

    __slots__ = ("end", "header", "index", "is_json", "member", "name")

    def __init__(self, cd: bytes, p: int, data_end: int) -> None:
        if p + _CD_FIXED > len(cd):
            raise Unsupported
        sig, needed, flags, method, crc, csize, usize, nl, el, cl, disk, attr, off = _CD.unpack_from(cd, p)
        if (
            sig != _CD_SIG
            or needed > _MAX_EXTRACT_VERSION
            or flags & ~_UTF8_NAME
            or method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
            or el
            or cl
            or disk
            or _LIMIT32 in (csize, usize, off)
            or (attr >> 16) & _S_IFMT == _S_IFLNK
            or (method == zipfile.ZIP_STORED and csize != usize)
        ):
            raise Unsupported
        name = cd[p + _CD_FIXED : p + _CD_FIXED + nl]
        if len(name) != nl or not _PLAIN_NAME.fullmatch(name):
            raise Unsupported
        self.name = name
        self.end = p + _CD_FIXED + nl
        self.header = _LH_SIG + cd[p + 6 : p + 32] + name
        start = off + len(self.header)
        if start + csize > data_end:
            raise Unsupported
        self.member: Member = (method, crc, csize, usize, start)
        m = _ENTRY_NAME.fullmatch(name)
        self.index = int(m[1]) if m else -1
        self.is_json = m is not None and m[2] == b"json"


class ZipIndex:
    """A bundle mapped once, its directory parsed with :mod:`struct` (see the module doc).

    ``members`` holds every member but the entries; ``entry_json`` and ``entry_proof``
    hold ``entries/<i>.json`` and ``entries/<i>.tlog-proof`` by index. Any deviation from
    the plain form, and any rule of :class:`SafeZip` broken, raises :class:`Unsupported`.

    The directory of a bundle is mostly pairs of records ``entries/<i>.json`` and
    ``entries/<i>.tlog-proof`` of the same shape. After one such pair has been checked
    record by record, the following pairs with the same name lengths are checked together
    (:meth:`_pairs`): every byte that must equal the first pair's is compared column by
    column, the varying fields are unpacked column by column, and the local headers are
    compared, all at once, with the ones the records imply.
    """

    def __init__(self, path: Path, limits: Limits | None = None) -> None:
        self.limits = limits = limits or Limits()
        try:
            with open(path, "rb") as fp:
                count, cd_size = _directory_size(fp)  # the reference's own reading of the end records
                if count > limits.members or cd_size > limits.central_directory:
                    raise Unsupported
                size = fp.seek(0, 2)
                if size == 0:
                    raise Unsupported
                # mapped in one go: first touching 10^5 pages one by one costs more than reading them
                populate = getattr(mmap, "MAP_POPULATE", 0)
                self._mm = mmap.mmap(fp.fileno(), 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ)
        except (OSError, ValueError, BundleError, struct.error) as exc:
            raise Unsupported from exc
        try:
            self._index(size, count, cd_size)
        except BaseException:
            self._mm.close()
            raise

    def _index(self, size: int, count: int, cd_size: int) -> None:
        mm = self._mm
        try:
            count64, cd_size64, cd_off = _end_records(mm, size)
        except struct.error as exc:
            raise Unsupported from exc
        if (count64, cd_size64) != (count, cd_size):
            raise Unsupported
        self._data_end = cd_off
        cd = mm[cd_off : cd_off + cd_size]
        self.members: dict[str, Member] = {}
        self._read: dict[str, bytes] = {}
        self.entry_json: dict[int, Member] = {}
        self.entry_proof: dict[int, Member] = {}
        self._seen = self._total = 0
        p, window = 0, _FIRST_WINDOW
        while p < cd_size:
            pair_start = p
            first = _Record(cd, p, cd_off)
            self._add(first)
            p = first.end
            if not first.is_json or p >= cd_size:
                continue
            second = _Record(cd, p, cd_off)
            self._add(second)
            p = second.end
            if second.index != first.index or second.is_json:
                continue
            template = cd[pair_start:p]
            split, digits = first.end - pair_start, len(first.name) - len(b"entries/.json")
            while True:  # further pairs of the same shape, in windows that double while they last
                k = self._pairs(cd, p, template, split, digits, window)
                p += k * len(template)
                if k < window or p >= cd_size:
                    window = _FIRST_WINDOW
                    break
                window = min(2 * window, _MAX_WINDOW)
        if p != cd_size or self._seen != count or self._total > self.limits.total:
            raise Unsupported

    def _add(self, rec: _Record) -> None:
        """Check one record's rules and local header, and keep it."""
        mm, limits = self._mm, self.limits
        usize, start = rec.member[3:]
        if mm[start - len(rec.header) : start] != rec.header:
            raise Unsupported
        self._seen += 1
        self._total += usize
        if rec.index >= 0:
            cap, table = (limits.entry, self.entry_json) if rec.is_json else (limits.proof, self.entry_proof)
            if usize > cap or table.setdefault(rec.index, rec.member) is not rec.member:
                raise Unsupported
            return
        name = rec.name.decode("ascii")
        try:
            check_name(name)
        except BundleError as exc:
            raise Unsupported from exc
        if name.endswith("/"):  # a folder of the layout (check_name allows no other)
            if usize:
                raise Unsupported
            return
        if name.startswith("entries/") or name in self.members:
            raise Unsupported
        if usize > limits.cap(name):
            raise Unsupported
        self.members[name] = rec.member

    def _pairs(self, cd: bytes, start: int, template: bytes, split: int, digits: int, window: int) -> int:
        """Take up to ``window`` pairs at ``start`` shaped like ``template`` (a checked pair of
        records ``entries/<i>.json`` + ``entries/<i>.tlog-proof`` whose second record starts at
        ``split``, names with ``digits`` digits); returns how many were taken, 0 if unsure."""
        stride = len(template)
        k = min(window, (len(cd) - start) // stride)
        if k <= 0:
            return 0
        seg = cd[start : start + k * stride]
        variable = {*_VARIABLE, *(split + c for c in _VARIABLE)}
        variable.update(range(_CD_FIXED + 8, _CD_FIXED + 8 + digits))  # the index in each name
        variable.update(range(split + _CD_FIXED + 8, split + _CD_FIXED + 8 + digits))
        for c in range(stride):
            if c not in variable:
                column = seg[c::stride]
                same = len(column) - len(column.lstrip(template[c : c + 1]))
                if same < k:
                    k = same
                    if not k:
                        return 0
        seg = seg[: k * stride]
        idx_json = _columns(seg, _CD_FIXED + 8, digits, stride, k)
        if idx_json != _columns(seg, split + _CD_FIXED + 8, digits, stride, k) or idx_json.translate(None, _DIGITS):
            return 0
        if digits > 1 and b"0" in idx_json[::digits]:
            return 0  # a leading zero
        first = int(idx_json[:digits])
        if idx_json == b"".join(b"%d" % i for i in range(first, first + k)):
            indices: Sequence[int] = range(first, first + k)
        else:
            indices = [int(idx_json[t : t + digits]) for t in range(0, k * digits, digits)]
        limits, mm = self.limits, self._mm
        taken: list[tuple[dict[int, Member], list[Member], int]] = []
        for at, table, cap in ((0, self.entry_json, limits.entry), (split, self.entry_proof, limits.proof)):
            method = template[at + 10]  # the method is one of the bytes that must not vary
            name_len = template[at + 28] | template[at + 29] << 8
            crcs, csizes, sizes, offsets = (_u32(seg, at + c, stride, k) for c in (16, 20, 24, 42))
            if (
                max(sizes) > cap
                or (method == zipfile.ZIP_STORED and csizes != sizes)
                or _LIMIT32 in (*csizes, *offsets)
            ):
                return 0
            width = _LH_FIXED + name_len
            header = bytearray(width * k)
            for b, sig in enumerate(_LH_SIG):
                header[b::width] = bytes((sig,)) * k
            for b in range(4, width):
                src = at + 2 + b if b < _LH_FIXED else at + _CD_FIXED + b - _LH_FIXED
                header[b::width] = seg[src : src + (k - 1) * stride + 1 : stride]
            if b"".join([mm[o : o + width] for o in offsets]) != header:
                return 0
            if max(map(int.__add__, offsets, csizes)) + width > self._data_end:
                return 0
            starts = list(map(width.__add__, offsets))
            members = list(zip([method] * k, crcs, csizes, sizes, starts, strict=True))
            taken.append((table, members, sum(sizes)))
        for table, members, total in taken:
            before = len(table)
            table.update(zip(indices, members, strict=True))
            if len(table) != before + k:
                raise Unsupported  # an index seen before
            self._seen += k
            self._total += total
        return k

    # -- the SafeZip interface, for the checks both verifiers share

    def names(self, prefix: str = "") -> Iterator[str]:
        return (n for n in self.members if n.startswith(prefix))

    def has(self, name: str) -> bool:
        return name in self.members

    def read(self, name: str) -> bytes:
        data = self._read.get(name)
        if data is None:
            member = self.members.get(name)
            if member is None:
                raise Unsupported
            data = self._read[name] = self.contents([member])[0]
        return data

    # -- bulk access

    def contents(self, members: Sequence[Member]) -> list[bytes]:
        """Members' bytes: exact size, CRC checked (local headers were checked when indexing)."""
        mm = self._mm
        out = [mm[start : start + csize] for _, _, csize, _, start in members]
        for k, (method, _, _, size, _) in enumerate(members):
            if method:
                out[k] = _inflate(out[k], size)
        if list(map(zlib.crc32, out)) != [m[1] for m in members]:
            raise Unsupported
        return out

    def all_equal(self, members: Sequence[Member], expected: Sequence[bytes]) -> bool:
        """True when each member holds exactly the expected bytes, CRCs included."""
        if list(map(zlib.crc32, expected)) != [m[1] for m in members]:
            return False
        if list(map(len, expected)) != [m[3] for m in members]:
            return False
        mm = self._mm
        if any(m[0] for m in members):
            return all(
                (_inflate(mm[start : start + csize], size) if method else mm[start : start + csize]) == want
                for (method, _, csize, size, start), want in zip(members, expected, strict=True)
            )
        return [mm[start : start + csize] for _, _, csize, _, start in members] == expected

    def close(self) -> None:
        self._mm.close()

    def __enter__(self) -> ZipIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _inflate(raw: bytes, size: int) -> bytes:
    """A raw deflate stream that holds exactly ``size`` bytes and nothing after it."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = d.decompress(raw, size + 1)
    except zlib.error as exc:
        raise Unsupported from exc
    if len(data) != size or not d.eof or d.unused_data or d.unconsumed_tail:
        raise Unsupported
    return data
