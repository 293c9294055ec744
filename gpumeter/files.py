"""Replacing a file atomically: readers see the old content or the new, never a mix.

:func:`atomic_write` writes a temporary file beside the target, flushes it to disk
(``fsync``), renames it over the target and, when asked to be durable, syncs the folder
so the rename itself survives a crash. State that a decision rests on (a witness's
latest tree head, the largest checkpoint a log signed) must be durable before the
decision is announced.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, durable: bool = False, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` in one rename; ``durable`` also syncs the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
