"""The zip format's records as the bundle reader reads them (PKWARE APPNOTE 6.3).

Part of :mod:`audit.archive`, apart to keep each module short: the layouts of the end
records, the central directory records and the local headers (as :mod:`struct` formats
and as numpy dtypes, to read many records at once), the flags the reader judges, and the
steps that read them: :func:`end_records`, :func:`walk` (where each directory record
starts), :func:`gather` (fixed-size records at many positions at once) and
:func:`zip64_values`. Every damaged record is a :class:`audit.errors.BundleError`.
"""

from __future__ import annotations

import io
import stat
import struct
from array import array
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from audit.errors import BundleError

EOCD = struct.Struct("<4s4H2LH")
EOCD_SIG = b"PK\x05\x06"
LOCATOR = struct.Struct("<4sLQL")
LOCATOR_SIG = b"PK\x06\x07"
EOCD64 = struct.Struct("<4sQ2H2L4Q")
EOCD64_SIG = b"PK\x06\x06"
RECORD_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"
FLAG_ENCRYPTED = 0x0001
FLAG_DESCRIPTOR = 0x0008
FLAG_STRONG = 0x0040
FLAG_UTF8 = 0x0800
FLAG_UNUSUAL = FLAG_ENCRYPTED | FLAG_DESCRIPTOR | FLAG_STRONG
S_IFLNK_HIGH = stat.S_IFLNK >> 12  # the file type in the top 4 bits of the external attributes
ZIP64_MARK = 0xFFFFFFFF
STORED, DEFLATED = 0, 8


def end_records(fp: BinaryIO) -> tuple[int, int, int]:
    """(members, directory size, directory offset), read from the end records alone."""
    end = fp.seek(0, io.SEEK_END)
    tail_len = min(end, EOCD.size + 0xFFFF)
    fp.seek(end - tail_len)
    tail = fp.read(tail_len)
    pos = tail.rfind(EOCD_SIG)
    if pos < 0 or len(tail) - pos < EOCD.size:
        raise BundleError("not a zip archive (no end-of-central-directory record)")
    _, disk, cd_disk, here, count, cd_size, cd_offset, comment = EOCD.unpack_from(tail, pos)
    eocd_at = end - tail_len + pos
    if pos + EOCD.size + comment != len(tail):
        raise BundleError("the zip's end record is damaged (its comment does not end the file)")
    directory_end = eocd_at
    if count == 0xFFFF or cd_size == ZIP64_MARK or cd_offset == ZIP64_MARK:
        loc = pos - LOCATOR.size
        if loc < 0 or tail[loc : loc + 4] != LOCATOR_SIG:
            raise BundleError("zip64 archive without its locator")
        _, disk64, record_at, disks = LOCATOR.unpack_from(tail, loc)
        fp.seek(record_at)
        record = fp.read(EOCD64.size)
        if disk64 or disks > 1 or len(record) < EOCD64.size or record[:4] != EOCD64_SIG:
            raise BundleError("zip64 end record is damaged")
        _, _, _, _, disk, cd_disk, here, count, cd_size, cd_offset = EOCD64.unpack(record)
        directory_end = record_at
    if disk or cd_disk or here != count:
        raise BundleError("multi-disk zip archives are not bundles")
    if cd_offset + cd_size > directory_end:
        raise BundleError("the zip's central directory runs past its end record")
    return count, cd_size, cd_offset


def zip64_values(extra: bytes, member: str, *values: int) -> list[int]:
    """Resolve 0xFFFFFFFF fields from the zip64 extra field (in its order: size, compressed, offset)."""
    wanted = [v == ZIP64_MARK for v in values]
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


LENGTHS = struct.Struct("<3H")  # name, extra field and comment lengths, 28 bytes into a directory record
# what a directory record and a local header both say of a member, in the same order
_MEMBER = [
    ("flags", "<u2"),
    ("method", "<u2"),
    ("when", "<u4"),
    ("crc", "<u4"),
    ("csize", "<u4"),
    ("size", "<u4"),
    ("nlen", "<u2"),
    ("elen", "<u2"),
]
DIRECTORY = np.dtype(
    [
        ("sig", "<u4"),
        ("made_by", "<u2"),
        ("needed", "<u2"),
        *_MEMBER,
        ("clen", "<u2"),
        ("disk", "<u2"),
        ("internal", "<u2"),
        ("attr", "<u4"),
        ("offset", "<u4"),
    ]
)
LOCAL_HEADER = np.dtype([("sig", "<u4"), ("needed", "<u2"), *_MEMBER])
RECORD_SIZE, LOCAL_SIZE = DIRECTORY.itemsize, LOCAL_HEADER.itemsize  # 46 and 30 bytes
RECORD_SIG_U32 = int.from_bytes(RECORD_SIG, "little")
LOCAL_SIG_U32 = int.from_bytes(LOCAL_SIG, "little")
GATHER = 1 << 15  # records gathered at once (a bounded index array)


def first_true(mask: npt.NDArray[np.bool_]) -> int:
    """Position of the first True in ``mask``, or its length when none is."""
    return int(mask.argmax()) if mask.any() else len(mask)


def gather(data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """The fixed-size records of ``dtype`` at ``starts`` in ``data`` (every start checked in range)."""
    out = np.empty(len(starts), dtype)
    flat = out.view(np.uint8).reshape(len(starts), dtype.itemsize)
    width = np.arange(dtype.itemsize, dtype=np.int64)
    for lo in range(0, len(starts), GATHER):
        flat[lo : lo + GATHER] = data[starts[lo : lo + GATHER, None] + width]
    return out


def walk(directory: bytes, count: int) -> npt.NDArray[np.int64]:
    """Where each of the ``count`` records of the central directory starts."""
    lengths, fixed = LENGTHS.unpack_from, RECORD_SIZE
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
