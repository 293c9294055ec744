"""``gpumeter stripe webhook`` in a process of its own, as an operator runs it.

:func:`webhook_command` starts the installed console script on a free 127.0.0.1 port,
waits for its "listening on" line, and stops it on exit, keeping what it wrote to stderr.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

GPUMETER = str(Path(sys.executable).parent / "gpumeter")  # the console script of this venv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WebhookProcess:
    proc: subprocess.Popen[str]
    port: int
    errors: str = ""  # what it wrote to stderr after its first line, once stopped

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stripe/webhook"


@contextmanager
def webhook_command(config: Path, secret: str) -> Iterator[WebhookProcess]:
    """``gpumeter stripe webhook`` through the installed console script, once it listens; stopped after."""
    port = free_port()
    proc = subprocess.Popen(
        [GPUMETER, "stripe", "webhook", "--port", str(port), "--config", str(config)],
        env={**os.environ, "GPUMETER_STRIPE_WEBHOOK_SECRET": secret},
        stderr=subprocess.PIPE,
        text=True,
    )
    served = WebhookProcess(proc, port)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert f"listening on {served.url}" in line, line
        yield served
    finally:
        proc.terminate()
        _, served.errors = proc.communicate(timeout=10)
