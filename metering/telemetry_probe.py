"""What ``gpumeter check`` asks the telemetry backend: a few aggregations, never raw samples.

The I/O half of the telemetry preflight (the rules are in :mod:`metering.telemetry_check`).
Every question is a PromQL aggregation whose answer is bounded by the number of GPUs,
hosts, models or job ids — not by samples — and most by far less (a count, a top 5):

- the backend: ``/api/v1/status/buildinfo`` (Prometheus answers its version there; a
  VictoriaMetrics answers an empty or a made-up Prometheus version), ``/-/healthy`` (its
  text names the product), and for VictoriaMetrics the ``vm_app_version`` gauge of
  ``/metrics`` (empty in some distribution builds);
- per hour of the window (``query_range``, one point per hour): DCGM series and GPUs per
  family, MIG instances, and the samples per evidence series in the hour (its 90th
  percentile over series gives the scrape interval);
- over the whole window (one instant query at its end, ``[window] offset 1ms``): samples
  per job label value, GPUs per model, (model, MIG profile, host) placements, GPUs with
  duplicate series (with the scrape targets that carry them, and how many GPUs have series
  naming different hosts, models or MIG profiles), and the label names of the evidence
  series;
- coverage: per GPU and hour the samples of its densest scrape target, in a subquery with
  one step per hour, compared server side with the hours around it (see :func:`_gap_query`).

Each question that fails is recorded with its reason; the others still run. A backend that
does not answer the first question (buildinfo) is not asked anything else. Every request
has the client's timeout and retries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from statistics import median
from typing import Any

from metering.errors import TelemetryError
from metering.prom import PromClient
from metering.promql import label_name, over_evidence, quote
from metering.samples import GR_ACTIVE, UTIL, host_of, uuid_of
from metering.windows import HOUR_MS, Span

EXAMPLES = 5
GPU = "UUID, uuid, GPU_I_ID"  # a GPU, or one MIG instance of it
DCGM = '{__name__=~"DCGM_FI_.+"}'
HOST_LABELS = ("Hostname", "hostname")
HA_LABELS = ("replica", "prometheus_replica", "prometheus", "cluster")
"""Labels an HA pair of Prometheus servers (or a federation) adds to tell its copies apart."""
TARGET_LABELS = (*HOST_LABELS, "job", "instance", *HA_LABELS)
"""The labels in which several series of one GPU usually differ: host spelling, scrape job, replica."""
_VM_VERSION = re.compile(r"^vm_app_version\{(?P<labels>[^}]*)\}", re.MULTILINE)


@dataclass(frozen=True)
class Backend:
    kind: str  # "Prometheus", "VictoriaMetrics" or "Prometheus-compatible"
    version: str  # "" when the backend does not say
    closed_ranges: bool  # [t-r, t] (Prometheus 2.x) rather than (t-r, t]


@dataclass(frozen=True)
class Placement:
    """GPUs (or MIG instances) of one model and profile seen on one host."""

    model: str
    profile: str | None
    host: str
    gpus: int


@dataclass(frozen=True)
class GapExample:
    uuid: str
    gpu_i_id: str
    hosts: tuple[str, ...]
    hours: int  # hours of the window with a gap


@dataclass(frozen=True)
class TelemetryFacts:
    """The answers, as plain values; a question that failed is in :attr:`errors` instead."""

    url: str
    span: Span
    timeout_s: float
    retries: int
    job_label: str
    backend: Backend | None = None
    dcgm_series: int = 0  # DCGM series at the busiest hour's end
    families: Mapping[str, int] = field(default_factory=dict)  # family -> GPUs
    mig_instances: int = 0
    samples_per_hour: float | None = None  # per evidence series (90th percentile, median hour)
    job_samples: Mapping[str, int] = field(default_factory=dict)  # job label value ("": none) -> samples
    evidence_labels: tuple[str, ...] = ()
    other_job_labels: Mapping[str, int] = field(default_factory=dict)  # job-like label -> samples carrying it
    gpus_present: int = 0  # GPUs and MIG instances with evidence, in the busiest hour
    placements: tuple[Placement, ...] = ()
    duplicated_gpus: int = 0
    duplicate_examples: tuple[tuple[Mapping[str, str], ...], ...] = ()  # series of one GPU and job
    duplicate_targets: tuple[Mapping[str, str], ...] = ()  # TARGET_LABELS of the series of duplicated GPUs
    conflicting_gpus: int = 0  # of those, GPUs whose series for one job name different hosts, models or profiles
    conflict_examples: tuple[tuple[Mapping[str, str], ...], ...] = ()  # series of one GPU and job
    gap_gpus: int = 0
    gap_examples: tuple[GapExample, ...] = ()
    expected_per_hour: int = 0  # the samples per hour the coverage was judged against
    errors: Mapping[str, str] = field(default_factory=dict)  # question -> why it has no answer

    @property
    def samples(self) -> int:
        return sum(self.job_samples.values())


def probe_backend(client: PromClient) -> Backend:
    """Kind, version and range semantics of the backend; raises if it does not answer."""
    info = client.api("/api/v1/status/buildinfo")
    version = str(info.get("version", "")) if isinstance(info, dict) else ""
    health = client.get("/-/healthy", missing_ok=True)
    text = health.text if health is not None else ""
    if "VictoriaMetrics" in text:
        return Backend("VictoriaMetrics", _vm_version(client), client.closed_ranges())
    kind = "Prometheus" if "Prometheus" in text else "Prometheus-compatible"
    return Backend(kind, version, client.closed_ranges())


def _vm_version(client: PromClient) -> str:
    """``short_version`` (else ``version``) of the ``vm_app_version`` gauge; "" if unset."""
    try:
        page = client.get("/metrics", missing_ok=True)
    except TelemetryError:
        return ""
    m = _VM_VERSION.search(page.text if page is not None else "")
    if m is None:
        return ""
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels")))
    return labels.get("short_version") or labels.get("version") or ""


def probe(client: PromClient, span: Span, *, job_label: str, interval_ms: int, workers: int = 4) -> TelemetryFacts:
    """Ask every question about ``span``; answers and failures in one :class:`TelemetryFacts`."""
    base = TelemetryFacts(client.url, span, client.timeout_s, client.retries, label_name(job_label))
    try:
        backend = probe_backend(client)
    except TelemetryError as exc:
        return _with(base, errors={"backend": exc.explain()})
    q = _Questions(client, span, job_label)
    answers: dict[str, Any] = {"backend": backend}
    errors: dict[str, str] = {}
    try:
        answers.update(q.labels())
    except TelemetryError as exc:
        errors["labels"] = exc.explain()
    questions: dict[str, Callable[[], dict[str, Any]]] = {
        "families": q.families,
        "interval": q.interval,
        "jobs": q.jobs,
        "models": q.models,
        "duplicates": q.duplicates,
    }
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(ask) for name, ask in questions.items()}
        for name, future in futures.items():
            try:
                answers.update(future.result())
            except TelemetryError as exc:
                errors[name] = exc.explain()
    per_hour = answers.get("samples_per_hour")
    expected = round(per_hour) if per_hour else HOUR_MS // interval_ms
    answers["expected_per_hour"] = expected
    if answers.get("placements"):
        try:
            answers.update(q.gaps(expected))
        except TelemetryError as exc:
            errors["gaps"] = exc.explain()
    return _with(base, errors=errors, **answers)


def _with(facts: TelemetryFacts, **changes: Any) -> TelemetryFacts:
    return replace(facts, **changes)


class _Questions:
    """The PromQL of each question, and how its answer becomes plain values."""

    def __init__(self, client: PromClient, span: Span, job_label: str) -> None:
        self.c = client
        self.span = span
        self.job = label_name(job_label)
        self.r_hour = client.range_ms(HOUR_MS)
        self.r_span = client.range_ms(span.end_ms - span.start_ms)
        self.others: tuple[str, ...] = ()  # job-like labels besides the configured one (see labels())

    def _hourly(self, query: str) -> list[tuple[dict[str, str], list[float]]]:
        """(labels, value per hour) of a query evaluated at each hour's end in the window."""
        labels, frame = self.c.range_frame(query, self.span.start_ms + HOUR_MS, self.span.end_ms, HOUR_MS // 1000)
        values: list[list[float]] = [[] for _ in labels]
        for idx, value in frame.select("idx", "value").iter_rows():
            values[idx].append(value)
        return list(zip(labels, values, strict=True))

    def _at_end(self, query: str, shift_ms: int = 0) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of an instant query at the window's end (plus ``shift_ms``)."""
        out = []
        for item in self.c.instant(query, self.span.end_ms + shift_ms):
            try:
                out.append((dict(item["metric"]), float(item["value"][1])))
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise TelemetryError(f"unusable answer from {self.c.url} to {query[:80]}…") from exc
        return out

    def _evidence(self, func: str = "count_over_time", extra: str = "") -> str:
        return over_evidence(func, self.r_span, extra=extra)

    # -- questions ---------------------------------------------------------------------

    def families(self) -> dict[str, Any]:
        per_family = self._hourly(f"count by (__name__) (group by (__name__, UUID, uuid) ({DCGM} offset 1ms))")
        mig = self._hourly(f'count(group by ({GPU}) ({{__name__=~"DCGM_FI_.+", GPU_I_ID!=""}} offset 1ms))')
        series = self._hourly(f"count({DCGM} offset 1ms)")
        return {
            "families": {lab.get("__name__", ""): int(max(vs)) for lab, vs in per_family if vs},
            "mig_instances": int(max((v for _, vs in mig for v in vs), default=0)),
            "dcgm_series": int(max((v for _, vs in series for v in vs), default=0)),
        }

    def interval(self) -> dict[str, Any]:
        per_hour = [
            v for _, vs in self._hourly(f"quantile(0.9, {over_evidence('count_over_time', self.r_hour)})") for v in vs
        ]
        per_hour = [v for v in per_hour if v > 0]
        return {"samples_per_hour": median(per_hour) if per_hour else None}

    def labels(self) -> dict[str, Any]:
        """Label names of the evidence series; those that may name a job join the configured one."""
        names = tuple(
            sorted(
                self.c.label_names(
                    [f'{UTIL}{{GPU_I_ID=""}}', f'{GR_ACTIVE}{{GPU_I_ID!=""}}'],
                    self.span.start_ms,
                    self.span.end_ms - 1,
                )
            )
        )
        self.others = tuple(n for n in names if n != self.job and _job_like(n))
        return {"evidence_labels": names}

    @property
    def job_labels(self) -> str:
        """The configured job label and the job-like ones: series differing only there are one target."""
        return ", ".join((self.job, *self.others))

    def jobs(self) -> dict[str, Any]:
        counts = {lab.get(self.job, ""): int(v) for lab, v in self._at_end(f"sum by ({self.job}) ({self._evidence()})")}
        others = {}
        for name in self.others:
            carried = self._evidence(extra=f"{name}!={quote('')}")
            found = self._at_end(f"sum({carried})")
            others[name] = int(found[0][1]) if found else 0
        return {"job_samples": counts, "other_job_labels": others}

    def models(self) -> dict[str, Any]:
        placed = self._at_end(
            "count by (modelName, GPU_I_PROFILE, Hostname, hostname) "
            f"(group by ({GPU}, modelName, GPU_I_PROFILE, Hostname, hostname) ({self._evidence()}))"
        )
        return {
            "placements": tuple(
                sorted(
                    (
                        Placement(lab.get("modelName", ""), lab.get("GPU_I_PROFILE") or None, host_of(lab), int(v))
                        for lab, v in placed
                    ),
                    key=lambda p: (p.model, p.profile or "", p.host),
                )
            ),
        }

    def duplicates(self) -> dict[str, Any]:
        evidence = self._evidence()
        doubled = f"count by ({GPU}, {self.job_labels}) ({evidence}) > 1"
        total = self._at_end(f"count(count by ({GPU}) ({doubled}))")
        count = int(total[0][1]) if total else 0
        if not count:
            return {"duplicated_gpus": 0}
        carried = f"({evidence}) and on ({GPU}, {self.job_labels}) ({doubled})"
        targets = self._at_end(f"group by ({', '.join(TARGET_LABELS)}) ({carried})")
        # the host whatever its label's spelling: hostname (4.6+) wins, as in metering.samples.host_of
        folded = f'label_replace({evidence}, "Hostname", "$1", "hostname", "(.+)")'
        split = (
            f"count by ({GPU}, {self.job_labels}) "
            f"(group by ({GPU}, {self.job_labels}, Hostname, modelName, GPU_I_PROFILE) ({folded})) > 1"
        )
        found = self._at_end(f"count(count by ({GPU}) ({split}))")
        conflicting = int(found[0][1]) if found else 0
        return {
            "duplicated_gpus": count,
            "duplicate_examples": self._examples(doubled),
            "duplicate_targets": tuple(lab for lab, _ in targets),
            "conflicting_gpus": conflicting,
            "conflict_examples": self._examples(split) if conflicting else (),
        }

    def _examples(self, per_gpu_and_job: str) -> tuple[tuple[dict[str, str], ...], ...]:
        """The evidence series of the top few (GPU, job) of a ``count by (GPU, job labels)`` query."""
        groups = []
        for lab, _ in self._at_end(f"topk({EXAMPLES}, {per_gpu_and_job})"):
            same_job = ",".join(f"{n}={quote(lab.get(n, ''))}" for n in (self.job, *self.others))
            groups.append(tuple(self._series_of(lab, extra=same_job)))
        return tuple(groups)

    def _series_of(self, gpu: Mapping[str, str], extra: str = "") -> list[dict[str, str]]:
        """The label sets of the evidence series of one GPU (or MIG instance) in the window."""
        key = "UUID" if gpu.get("UUID") else "uuid"
        matchers = [f"{key}={quote(uuid_of(gpu))}", f"GPU_I_ID={quote(gpu.get('GPU_I_ID', ''))}"]
        if extra:
            matchers.append(extra)
        return [lab for lab, _ in self._at_end(self._evidence(extra=",".join(matchers)))]

    def gaps(self, expected: int) -> dict[str, Any]:
        """GPUs with gaps; the per-GPU question runs only when the per-hour counts hint at one."""
        present = _present(self.c, self.job_labels, 0)
        hours = (self.span.end_ms - self.span.start_ms) // HOUR_MS
        per_hour = [v for _, vs in self._hourly(f"count({present})") for v in vs]
        short = [v for _, vs in self._hourly(f"count({present} < {expected})") for v in vs]
        answer: dict[str, Any] = {"gpus_present": int(max(per_hour, default=0)), "gap_gpus": 0}
        if len(per_hour) == hours and len(set(per_hour)) <= 1 and not any(short):
            return answer  # the same GPUs every hour, none short: no gap anywhere
        query = _gap_query(self.c, self.span, self.job_labels, expected)
        total = self._at_end(f"count({query})", HOUR_MS)
        answer["gap_gpus"] = count = int(total[0][1]) if total else 0
        if not count:
            return answer
        examples = []
        for lab, n in self._at_end(f"topk({EXAMPLES}, {query})", HOUR_MS):
            hosts = tuple(sorted({host_of(s) for s in self._series_of(lab)}))
            examples.append(GapExample(uuid_of(lab), lab.get("GPU_I_ID", ""), hosts, int(n)))
        answer["gap_examples"] = tuple(sorted(examples, key=lambda g: (-g.hours, g.uuid)))
        return answer


def _present(client: PromClient, job_labels: str, hours_back: int) -> str:
    """Per GPU (or MIG instance), its samples in the hour ending ``hours_back`` hours before t.

    Counted on its densest scrape target: series that differ only in the host label's
    spelling or in ``job_labels`` are one target's.
    """
    inner = over_evidence("count_over_time", client.range_ms(HOUR_MS), offset_ms=hours_back * HOUR_MS + 1)
    return f"max by ({GPU}) (sum without ({', '.join((*HOST_LABELS, job_labels))}) ({inner}))"


def _gap_query(client: PromClient, span: Span, job_labels: str, expected: int) -> str:
    """Per GPU with a gap in ``span``, the hours it shows one; evaluated at ``span.end + 1h``.

    With ``present(h)`` from :func:`_present`, a GPU has a gap when, for an hour h of the
    window,

    - it is present in h-1 and h+1 but has fewer than ``expected`` samples in h, or
    - it is absent in h but present both before and after h in the window.

    The second is counted from its first and last present hour. A GPU that starts or stops
    inside the window has no gap there.
    """
    r_span = client.range_ms(span.end_ms - span.start_ms)

    def present(hours_back: int) -> str:
        return _present(client, job_labels, hours_back)

    sub = f"[{r_span}ms:1h]"
    short = f"({present(1)} < {expected}) and on ({GPU}) {present(0)} and on ({GPU}) {present(2)}"
    stamp = f"({present(1)} * 0 + time())"
    missing = (
        f"((max_over_time({stamp}{sub}) - min_over_time({stamp}{sub})) / 3600 + 1 "
        f"- count_over_time({present(1)}{sub})) > 0"
    )
    return f"(count_over_time(({short}){sub}) or {missing})"


_JOB_LIKE = re.compile(r"job|pod|slurm|pbs|lsf|batch|task|workload", re.IGNORECASE)
_NOT_JOB = frozenset({"job", "instance", "__name__", "exported_job", "exported_instance"})


def _job_like(name: str) -> bool:
    """A label that may name the job: ``pod``, ``job_id``, ``slurm_job_id``, ``hpc_job``…"""
    return name not in _NOT_JOB and bool(_JOB_LIKE.search(name))
