"""A small sampling profiler over every thread: where a run's thread-time goes.

Every few milliseconds it looks at each thread's stack and files the sample under the
innermost frame of this repository's code (``package/module.py:function``), or, when the
thread is blocked, under what it waits for: ``(backend: socket read)`` for an HTTP answer,
``(idle: waiting)`` for a lock, a future or a queue. cProfile sees one thread only; collect
works in a pool, hence this. Sampling costs well under 1 % of a core at the default rate.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
OURS = tuple(str(ROOT / p) + "/" for p in ("metering", "gpumeter", "audit", "billing", "app", "simulator", "bench"))
SOCKET = ("socket.py", "ssl.py", "http/client.py", "selectors.py")
WAITING = ("threading.py", "concurrent/futures", "queue.py")


def _bucket(frame: FrameType) -> str:
    innermost = frame.f_code.co_filename
    if innermost.endswith(SOCKET) or "urllib3" in innermost:
        return "(backend: socket read)"
    if any(w in innermost for w in WAITING):
        return "(idle: waiting)"
    f: FrameType | None = frame
    while f is not None:
        name = f.f_code.co_filename
        if name.startswith(OURS):
            return f"{Path(name).relative_to(ROOT)}:{f.f_code.co_name}"
        f = f.f_back
    return f"(other: {Path(innermost).name}:{frame.f_code.co_name})"


class Sampler:
    """``with Sampler() as s: ...`` then ``s.report()``."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s = every_s
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.every_s):
            for ident, frame in sys._current_frames().items():  # the only way to see other threads' stacks
                if ident != me:
                    self.counts[_bucket(frame)] += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, top: int = 12, *, busy_only: bool = True) -> list[tuple[str, float]]:
        """The ``top`` buckets with their share of the samples (idle threads left out by default)."""
        counts = Counter({k: v for k, v in self.counts.items() if not (busy_only and k == "(idle: waiting)")})
        total = sum(counts.values()) or 1
        return [(k, v / total) for k, v in counts.most_common(top)]
