"""Real servers for tests and benchmarks: Debian's Prometheus 2.42 and VictoriaMetrics, and
:func:`serve` for any other (``gpumeter dashboard``).

Both listen on 127.0.0.1 on a free port. Prometheus gets its history by
``promtool tsdb create-blocks-from openmetrics`` before it starts (with a 100-year
retention: retention is measured from the newest block, not the clock); VictoriaMetrics
through its import API. A missing binary fails loudly: ``make test`` installs them.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import requests

from metering.samples import Series
from simulator.exposition import backfill, vm_import


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed; `make test` installs Debian's package")
    return path


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not become ready:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def prometheus(series: Iterable[Series], workdir: Path) -> Iterator[str]:
    """A Prometheus 2.42 holding ``series`` (backfilled), yielding its base URL."""
    tsdb = workdir / "tsdb"
    backfill(list(series), tsdb, workdir / "om", promtool=need("promtool"))
    with prometheus_on(tsdb, workdir) as url:
        yield url


@contextlib.contextmanager
def in_thread(server: socketserver.BaseServer) -> Iterator[socketserver.BaseServer]:
    """Serve an in-process server from a daemon thread until the block ends, then close it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve(
    argv: list[str],
    ready_path: str,
    port: int,
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[str]:
    """Run a server process on 127.0.0.1:port until the block ends; yields its base URL.

    Ready once ``ready_path`` answers 200; stdout and stderr go to ``log``.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url + ready_path, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _prometheus_argv(tsdb: Path, workdir: Path, port: int) -> list[str]:
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    return [
        need("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tsdb}",
        "--storage.tsdb.retention.time=100y",
        f"--web.listen-address=127.0.0.1:{port}",
        "--query.max-samples=200000000",
    ]


@contextlib.contextmanager
def prometheus_on(tsdb: Path, workdir: Path) -> Iterator[str]:
    """A Prometheus 2.42 serving an existing TSDB folder, yielding its base URL."""
    port = free_port()
    with serve(_prometheus_argv(tsdb, workdir, port), "/-/ready", port, workdir / "prometheus.log") as url:
        yield url


def start_prometheus(tsdb: Path, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """A Prometheus 2.42 on ``tsdb`` at 127.0.0.1:``port``, returned once ready; the caller
    stops it (fault tests kill it and start it again on the same folder and port)."""
    log = workdir / f"prometheus-{port}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(_prometheus_argv(tsdb, workdir, port), stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(f"http://127.0.0.1:{port}/-/ready", proc, log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


@contextlib.contextmanager
def victoria(workdir: Path) -> Iterator[str]:
    """An empty VictoriaMetrics single node, yielding its base URL."""
    port = free_port()
    argv = [
        need("victoria-metrics"),
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={workdir / 'vmdata'}",
        "-retentionPeriod=100y",
        "-search.disableCache",
        "-search.latencyOffset=0s",
    ]
    with serve(argv, "/health", port, workdir / "victoria.log") as url:
        yield url


def load_victoria(url: str, series: Iterable[Series]) -> None:
    vm_import(url, list(series))
