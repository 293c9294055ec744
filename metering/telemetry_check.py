"""The telemetry preflight's rules: :class:`TelemetryFacts` and the inventory in, findings out.

Pure: no I/O, no clock (the questions are asked by :mod:`metering.telemetry_probe`). What
each finding means for metering:

- no evidence metric (``DCGM_FI_DEV_GPU_UTIL`` on whole GPUs, ``DCGM_FI_PROF_GR_ENGINE_ACTIVE``
  on MIG instances) means nothing can be metered: FAIL; no energy counter means no kWh: WARN;
- a scrape interval more than 10 % off ``[telemetry] scrape_interval`` miscounts every
  held slot: FAIL, naming the value to set;
- no sample carrying the configured job label means every GPU looks idle: FAIL, naming the
  label that does carry job ids when there is one;
- a host missing from nodes.csv is in no allowed country, so its jobs fail the sovereignty
  check: FAIL; a job missing from jobs.csv is metered untenanted and never invoiced: WARN;
- duplicate series (a second scrape job, an HA pair, ``Hostname`` renamed ``hostname``) are
  counted once by the meter: PASS, naming the causes and their hosts. Unless the series of
  one GPU and job name different hosts, models or MIG profiles: the meter still counts each
  slot once, but attributes the job to every host named (each one's country counts in its
  sovereignty verdict) and prices it under the first model name: WARN;
- coverage gaps are never billed: WARN.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from gpumeter.config import TelemetryConfig
from gpumeter.findings import Finding, Status, failed, passed, some, warned
from metering.inventory import Inventory
from metering.samples import ENERGY, GR_ACTIVE, UTIL, host_of, uuid_of
from metering.telemetry_probe import HA_LABELS, TelemetryFacts
from metering.windows import HOUR_MS, from_ms

INTERVAL_TOLERANCE = 0.10
"""How far the measured scrape interval may stray from the configured one."""
IDLE_LOOKING = ("0", "-1", "none", "None", "idle", "null", "N/A", "-")
"""Job label values that usually mean "no job"; seen but not in ``idle_job_ids``, they get billed."""


def check_telemetry(facts: TelemetryFacts, tel: TelemetryConfig, inventory: Inventory) -> list[Finding]:
    """Every telemetry finding, in the order a person fixes them."""
    backend = _backend(facts)
    if facts.backend is None:
        return [backend]
    out = [backend]
    out += [
        failed(
            f"telemetry.{name}",
            f"the {name} question failed: {reason}",
            f"{_patience(facts)}; raise [telemetry] timeout_s for a slow backend, or read the server's log",
            question=name,
        )
        for name, reason in sorted(facts.errors.items())
    ]
    if "families" not in facts.errors:
        out += _families(facts)
    if not (facts.families.get(UTIL) or facts.families.get(GR_ACTIVE)):
        return out  # nothing to meter: the rest would only repeat it
    if "interval" not in facts.errors:
        out.append(_interval(facts, tel))
    if "jobs" not in facts.errors:
        label = _job_label(facts, tel)
        out += label
        if all(f.status is not Status.FAIL for f in label):  # job ids mean nothing under the wrong label
            out += _jobs(facts, tel, inventory)
    if "models" not in facts.errors:
        out += _hosts(facts, inventory)
    if "duplicates" not in facts.errors:
        out.append(_duplicates(facts))
    if "gaps" not in facts.errors and "models" not in facts.errors:
        out.append(_coverage(facts))
    return out


def _when(facts: TelemetryFacts) -> str:
    return f"[{_iso(facts.span.start_ms)}, {_iso(facts.span.end_ms)})"


def _iso(ms: int) -> str:
    return from_ms(ms).isoformat().replace("+00:00", "Z")


def _patience(facts: TelemetryFacts) -> str:
    return f"each request waits up to {facts.timeout_s:g} s and is retried {facts.retries} times"


def _backend(facts: TelemetryFacts) -> Finding:
    name = "telemetry.backend"
    b = facts.backend
    if b is None:
        return failed(
            name,
            facts.errors.get("backend", f"no answer from {facts.url}"),
            f"check [telemetry] prometheus_url and that the server is up ({_patience(facts)})",
            url=facts.url,
        )
    version = b.version or "(this build reports no version)"
    ranges = "closed [t-r, t]" if b.closed_ranges else "left-open (t-r, t]"
    return passed(
        name,
        f"{b.kind} {version} at {facts.url} answers; range selectors are {ranges}",
        url=facts.url,
        kind=b.kind,
        version=b.version,
        closed_ranges=b.closed_ranges,
    )


def _families(facts: TelemetryFacts) -> list[Finding]:
    name = "telemetry.dcgm"
    fam = dict(facts.families)
    details = {"families": fam, "series": facts.dcgm_series, "mig_instances": facts.mig_instances}
    if not fam:
        return [
            failed(
                name,
                f"no DCGM series at all in {_when(facts)}",
                "check that this Prometheus scrapes dcgm-exporter (port 9400) and that the window holds data "
                "(--start/--end)",
                **details,
            )
        ]
    metered = ", ".join(f"{m} on {fam.get(m, 0)} GPUs" for m in (UTIL, GR_ACTIVE, ENERGY))
    mig = f"MIG seen ({facts.mig_instances} instances)" if facts.mig_instances else "no MIG"
    about = f"{len(fam)} DCGM families, {facts.dcgm_series} series: {metered}; {mig}"
    if not fam.get(UTIL) and not fam.get(GR_ACTIVE):
        return [
            failed(
                name,
                f"{about}; neither {UTIL} nor {GR_ACTIVE}: nothing to meter",
                f"enable {UTIL} (and {GR_ACTIVE} for MIG) in dcgm-exporter's counters file",
                **details,
            )
        ]
    if facts.mig_instances and not fam.get(GR_ACTIVE):
        return [
            failed(
                name,
                f"{about}; MIG instances report no {GR_ACTIVE}, so they cannot be metered",
                f"enable {GR_ACTIVE} in dcgm-exporter's counters file (DCP metrics)",
                **details,
            )
        ]
    if not fam.get(ENERGY):
        return [
            warned(
                name,
                f"{about}; no {ENERGY}: energy will read 0 kWh",
                f"enable {ENERGY} in dcgm-exporter's counters file",
                **details,
            )
        ]
    return [passed(name, about, **details)]


def suggested_interval_s(measured_s: float) -> int:
    """The whole-second interval dividing one hour that is nearest to ``measured_s``."""
    divisors = [d for d in range(1, 3601) if 3600 % d == 0]
    return min(divisors, key=lambda d: (abs(d - measured_s), d))


def _interval(facts: TelemetryFacts, tel: TelemetryConfig) -> Finding:
    name = "telemetry.scrape_interval"
    configured = tel.scrape_interval_ms / 1000
    if not facts.samples_per_hour:
        return warned(name, "no evidence series held a sample in any hour", "check the window", configured_s=configured)
    measured = HOUR_MS / 1000 / facts.samples_per_hour
    details = {"configured_s": configured, "measured_s": round(measured, 3), "samples_per_hour": facts.samples_per_hour}
    if abs(measured - configured) > INTERVAL_TOLERANCE * configured:
        good = suggested_interval_s(measured)
        return failed(
            name,
            f"samples arrive every {measured:.3g} s but [telemetry] scrape_interval is {configured:g}s: "
            "every held slot would be miscounted",
            f'set scrape_interval = "{good}s" in [telemetry] (or scrape every {configured:g} s)',
            **details,
        )
    return passed(name, f"samples arrive every {measured:.3g} s, as [telemetry] scrape_interval says", **details)


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.3g} %" if whole else "0 %"


def _job_label(facts: TelemetryFacts, tel: TelemetryConfig) -> list[Finding]:
    name = "telemetry.job_label"
    label = tel.job_label
    total = facts.samples
    idle = set(tel.idle_job_ids)
    carrying = sum(n for v, n in facts.job_samples.items() if v != "")
    idle_n = sum(n for v, n in facts.job_samples.items() if v in idle and v != "")
    others = {k: v for k, v in facts.other_job_labels.items() if v}
    details = {
        "label": label,
        "samples": total,
        "with_label": carrying,
        "idle_values": idle_n,
        "other_job_labels": others,
    }
    if total and not carrying:
        if others:
            best = max(others, key=lambda k: (others[k], k))
            return [
                failed(
                    name,
                    f"no evidence sample carries the job label {label!r}, but {best!r} carries values on "
                    f"{_share(others[best], total)} of them: the job label looks renamed",
                    f'set job_label = "{best}" in [telemetry]',
                    **details,
                )
            ]
        return [
            failed(
                name,
                f"no evidence sample carries the job label {label!r}: every GPU would look idle",
                "map jobs to GPUs in dcgm-exporter (its HPC job mapping directory, or --kubernetes for pods) "
                "or set [telemetry] job_label to the label that names the job",
                **details,
            )
        ]
    out = []
    rival = {k: v for k, v in others.items() if v > carrying}
    if rival:
        best = max(rival, key=lambda k: (rival[k], k))
        out.append(
            warned(
                name,
                f"{best!r} carries job-like values on {_share(rival[best], total)} of evidence samples, "
                f"more than {label!r} ({_share(carrying, total)}): the job label may have been renamed",
                f'if {best!r} names the jobs, set job_label = "{best}" in [telemetry]',
                **details,
            )
        )
    else:
        out.append(
            passed(
                name,
                f"{label!r} is on {_share(carrying, total)} of {total} evidence samples "
                f"({_share(idle_n, total)} with an idle value {sorted(idle - {''})!r}, "
                f"{_share(total - carrying, total)} without the label)",
                **details,
            )
        )
    looks_idle = {v: n for v, n in facts.job_samples.items() if v in IDLE_LOOKING and v not in idle}
    if looks_idle:
        out.append(
            warned(
                "telemetry.idle_job_ids",
                f"job label values {some(looks_idle)} look like 'no job' but are not in idle_job_ids: "
                f"{sum(looks_idle.values())} samples would be metered as a job of that name",
                f"add {sorted(looks_idle)!r} to idle_job_ids in [telemetry] if they mean an idle GPU",
                values=looks_idle,
            )
        )
    return out


def _jobs(facts: TelemetryFacts, tel: TelemetryConfig, inventory: Inventory) -> list[Finding]:
    idle = set(tel.idle_job_ids)
    seen = {v for v in facts.job_samples if v not in idle and v != ""}
    listed = set(inventory.jobs)
    unlisted = seen - listed
    silent = listed - seen
    out = []
    if unlisted:
        out.append(
            warned(
                "inventory.jobs",
                f"{len(unlisted)} of {len(seen)} job ids in telemetry are not in jobs.csv: {some(unlisted)}",
                "add them to jobs.csv (job_id, tenant, project, data_locations); until then they are metered "
                "without a tenant and never invoiced",
                unlisted=sorted(unlisted)[:100],
                unlisted_count=len(unlisted),
            )
        )
    else:
        out.append(passed("inventory.jobs", f"all {len(seen)} job ids in telemetry are in jobs.csv", seen=len(seen)))
    out.append(
        passed(
            "inventory.jobs_without_telemetry",
            f"{len(silent)} of {len(listed)} jobs in jobs.csv have no telemetry in {_when(facts)}"
            + (f": {some(silent)} (normal for jobs that ran at other times)" if silent else ""),
            silent=sorted(silent)[:100],
            silent_count=len(silent),
        )
    )
    return out


def _hosts(facts: TelemetryFacts, inventory: Inventory) -> list[Finding]:
    seen = {p.host for p in facts.placements}
    listed = set(inventory.nodes)
    unlisted = seen - listed
    silent = listed - seen
    out = []
    if unlisted:
        names = {h or "(no Hostname/hostname label)" for h in unlisted}
        out.append(
            failed(
                "inventory.hosts",
                f"{len(unlisted)} of {len(seen)} hosts in telemetry are not in nodes.csv: {some(names)}; "
                "jobs on them would be judged outside the allowed countries",
                "add a row hostname,site,country,provider for each to nodes.csv",
                unlisted=sorted(unlisted)[:100],
                unlisted_count=len(unlisted),
            )
        )
    else:
        out.append(passed("inventory.hosts", f"all {len(seen)} hosts in telemetry are in nodes.csv", seen=len(seen)))
    if silent:
        out.append(
            warned(
                "inventory.hosts_without_telemetry",
                f"{len(silent)} of {len(listed)} nodes in nodes.csv sent no GPU telemetry in {_when(facts)}: "
                f"{some(silent)}",
                "check their dcgm-exporter and its scrape target; remove retired nodes from nodes.csv",
                silent=sorted(silent)[:100],
                silent_count=len(silent),
            )
        )
    return out


def duplicate_causes(series: Iterable[Mapping[str, str]]) -> tuple[str, ...]:
    """Why several series carry one GPU and job (or one host's GPUs): each way their labels differ."""
    items = [dict(s) for s in series]
    differ = _differing(items)
    causes = []
    if {"Hostname", "hostname"} <= differ:
        causes.append("the host label renamed Hostname -> hostname (a dcgm-exporter upgrade)")
    if differ & set(HA_LABELS):
        causes.append(f"an HA Prometheus pair (label {sorted(differ & set(HA_LABELS))[0]!r})")
    if differ & {"job", "instance"}:
        jobs = sorted({s.get("job", "") for s in items})
        if len(jobs) > 1:
            causes.append(f"{'two' if len(jobs) == 2 else len(jobs)} scrape jobs ({', '.join(repr(j) for j in jobs)})")
        else:
            causes.append(f"several instances of scrape job {jobs[0]!r}")
    return tuple(causes)


def duplicate_cause(series: Iterable[Mapping[str, str]]) -> str:
    """:func:`duplicate_causes` in one phrase (the labels that differ when no known cause fits)."""
    items = [dict(s) for s in series]
    causes = duplicate_causes(items)
    if causes:
        return "; ".join(causes)
    return f"series differing in {', '.join(sorted(_differing(items))) or 'nothing'}"


def _differing(items: list[dict[str, str]]) -> set[str]:
    """The labels (but the metric name) whose value is not the same on every series."""
    keys = set().union(*items) - {"__name__"} if items else set()
    return {k for k in keys if len({s.get(k) for s in items}) > 1}


def causes_by_host(targets: Iterable[Mapping[str, str]]) -> dict[str, tuple[str, ...]]:
    """Cause -> the hosts it applies to, from the scrape targets that carry duplicated GPUs."""
    per_host: dict[str, list[Mapping[str, str]]] = defaultdict(list)
    for target in targets:
        per_host[host_of(target)].append(target)
    hosts: dict[str, list[str]] = defaultdict(list)
    for host, carried in sorted(per_host.items()):
        for cause in duplicate_causes(carried) or ("series that name another host or differ in other labels",):
            hosts[cause].append(host)
    return {cause: tuple(names) for cause, names in sorted(hosts.items())}


def _duplicates(facts: TelemetryFacts) -> Finding:
    name = "telemetry.duplicates"
    if not facts.duplicated_gpus:
        return passed(name, "one series per GPU and job: no duplicate scrapes", duplicated_gpus=0)
    causes = causes_by_host(facts.duplicate_targets)
    why = "; ".join(
        f"{cause} on {len(hosts)} host{'s' if len(hosts) > 1 else ''} ({some(hosts)})"
        for cause, hosts in causes.items()
    )
    details = {
        "duplicated_gpus": facts.duplicated_gpus,
        "causes": {cause: list(hosts) for cause, hosts in causes.items()},
        "examples": _series_examples(facts.duplicate_examples),
    }
    carried = f"{facts.duplicated_gpus} GPUs or MIG instances are carried by several series for one job ({why})"
    if not facts.conflicting_gpus:
        return passed(name, f"{carried}; each slot counts once", **details)
    conflicts = list(dict.fromkeys(_disagreement(group) for group in facts.conflict_examples if group))  # per unit
    return warned(
        name,
        f"{carried}; the series of {facts.conflicting_gpus} of them disagree, e.g. {'; '.join(conflicts[:3])}: "
        "each slot still counts once, but the job is attributed to every host named (each one's country "
        "counts in its sovereignty verdict) and priced under the alphabetically first model name",
        "make every series of a GPU name the same host, model and MIG profile (check the relabeling of each "
        "scrape job and Prometheus replica)",
        conflicting_gpus=facts.conflicting_gpus,
        conflicts=conflicts,
        **details,
    )


def _series_examples(groups: Iterable[tuple[Mapping[str, str], ...]]) -> list[dict[str, object]]:
    return [
        {"uuid": uuid_of(g[0]), "gpu_i_id": g[0].get("GPU_I_ID", ""), "series": len(g), "cause": duplicate_cause(g)}
        for g in groups
        if g
    ]


def _disagreement(series: tuple[Mapping[str, str], ...]) -> str:
    """``GPU-…/3: hosts 'a', 'b'`` — what the series of one GPU and job disagree on."""
    first = series[0]
    unit = uuid_of(first) + (f"/{first['GPU_I_ID']}" if first.get("GPU_I_ID") else "")
    parts = []
    for what, value in (
        ("hosts", host_of),
        ("models", lambda s: s.get("modelName", "")),
        ("MIG profiles", lambda s: s.get("GPU_I_PROFILE", "")),
    ):
        values = {value(s) for s in series}
        if len(values) > 1:
            parts.append(f"{what} {some(values)}")
    return f"{unit}: {', '.join(parts)}"


def _coverage(facts: TelemetryFacts) -> Finding:
    name = "telemetry.coverage"
    gpus = facts.gpus_present
    every = f"{HOUR_MS / 1000 / facts.expected_per_hour:.3g} s" if facts.expected_per_hour else "interval"
    if not facts.gap_gpus:
        return passed(
            name,
            f"all {gpus} GPUs and MIG instances sent a sample every {every} while present in {_when(facts)}",
            gpus=gpus,
            gap_gpus=0,
        )
    shown = [
        f"{g.uuid}{'/' + g.gpu_i_id if g.gpu_i_id else ''} on {', '.join(g.hosts) or '?'} ({g.hours} h)"
        for g in facts.gap_examples
    ]
    more = f" and {facts.gap_gpus - len(shown)} more" if facts.gap_gpus > len(shown) else ""
    return warned(
        name,
        f"{facts.gap_gpus} of {gpus} GPUs and MIG instances have gaps in {_when(facts)}: {', '.join(shown)}{more}",
        "missing samples are never billed: check those exporters' uptime and scrape errors "
        "(`up == 0`); after a collect, `gpumeter usage --gaps` lists every gap",
        gpus=gpus,
        gap_gpus=facts.gap_gpus,
        examples=[
            {"uuid": g.uuid, "gpu_i_id": g.gpu_i_id, "hosts": list(g.hosts), "hours": g.hours}
            for g in facts.gap_examples
        ],
    )
