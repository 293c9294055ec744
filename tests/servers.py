"""Real telemetry backends for tests: Debian's Prometheus 2.42 and VictoriaMetrics.

Both listen on 127.0.0.1 on a free port. Prometheus gets its history by
``promtool tsdb create-blocks-from openmetrics`` before it starts (with a 100-year
retention: retention is measured from the newest block, not the clock); VictoriaMetrics
through its import API. A missing binary fails loudly: ``make test`` installs them.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import requests

from metering.samples import Series, escape_label_value


def _labels_text(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels['__name__']}{{{inner}}}"


def _fmt(v: float) -> str:
    return "NaN" if v != v else repr(float(v))


def backfill(series: list[Series], tsdb: Path, work: Path) -> None:
    """promtool tsdb create-blocks-from openmetrics (timestamps in seconds, # EOF last)."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "data.om"
    with path.open("w", encoding="utf-8") as f:
        for s in series:
            head = _labels_text(dict(s.labels))
            for t, v in zip(s.ts_ms.tolist(), s.values.tolist(), strict=True):
                f.write(f"{head} {_fmt(v)} {t // 1000}.{t % 1000:03d}\n")
        f.write("# EOF\n")
    subprocess.run(
        [need("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(path), str(tsdb)],
        check=True,
        capture_output=True,
    )


def vm_import(url: str, series: list[Series]) -> None:
    """POST /api/v1/import/prometheus (timestamps in ms), then force a flush."""
    lines = []
    for s in series:
        head = _labels_text(dict(s.labels))
        lines += [f"{head} {_fmt(v)} {t}" for t, v in zip(s.ts_ms.tolist(), s.values.tolist(), strict=True)]
    for i in range(0, len(lines), 50_000):
        r = requests.post(f"{url}/api/v1/import/prometheus", data="\n".join(lines[i : i + 50_000]).encode(), timeout=60)
        r.raise_for_status()
    requests.get(f"{url}/internal/force_flush", timeout=60).raise_for_status()


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
    need("promtool")
    binary = need("prometheus")
    tsdb = workdir / "tsdb"
    tsdb.mkdir(parents=True)
    backfill(list(series), tsdb, workdir / "om")
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tsdb}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{url}/-/ready", proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def victoria(workdir: Path) -> Iterator[str]:
    """An empty VictoriaMetrics single node, yielding its base URL."""
    binary = need("victoria-metrics")
    port = free_port()
    log = workdir / "victoria.log"
    data = workdir / "vmdata"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"-httpListenAddr=127.0.0.1:{port}",
                f"-storageDataPath={data}",
                "-retentionPeriod=100y",
                "-search.disableCache",
                "-search.latencyOffset=0s",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{url}/health", proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def load_victoria(url: str, series: Iterable[Series]) -> None:
    vm_import(url, list(series))
