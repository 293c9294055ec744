"""Pausing Python's cyclic garbage collector while a batch builds many objects.

Verifying a bundle or encoding a batch creates ~10^5–10^6 dicts, lists and strings that
form no reference cycles; each generation-2 collection would traverse all of them, which
costs more than the work itself. Reference counting still frees everything as usual, and
the collector's previous state is restored afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (restored as it was after)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
