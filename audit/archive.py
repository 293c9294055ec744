"""Reading a bundle zip as hostile input: layout, paths, sizes and counts are bounded.

Nothing is extracted to disk. Before :mod:`zipfile` parses the central directory, the
end-of-central-directory record (and its Zip64 form) is read to refuse archives with too
many members or an oversized directory. Each member must have a name from the bundle
layout (so ``..``, absolute paths, backslashes and stray files are refused), must not be a
symlink, encrypted, duplicated or use a compression other than stored/deflate, and is read
with a size cap by kind — :mod:`zipfile` never returns more than the declared size and
checks the CRC, so a lying header cannot inflate memory. Every refusal names the member.
"""

from __future__ import annotations

import contextlib
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
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
