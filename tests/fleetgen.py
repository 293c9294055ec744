"""Hypothesis strategies: small random fleets shaped the way Prometheus really holds DCGM data.

A GPU is scraped by one or more scrape loops (a second scrape job, an HA replica), each at
its own phase, one sample per interval, with outages; the job mapping changes over time
(jobs start and end at any slot, idle as no label or "0", two jobs sharing a GPU), MIG
instances carry their own jobs, utilisation can be NaN, energy counters reset, and an
exporter upgrade can rename the host label.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from metering.samples import ENERGY, GR_ACTIVE, UTIL, Series

HOUR = 3_600_000


@st.composite
def fleets(
    draw: st.DrawFn, *, start_ms: int, hours: int = 2, interval_ms: int = 60_000, max_gpus: int = 3
) -> list[Series]:
    S = interval_ms
    end = start_ms + hours * HOUR
    slots = (end - (start_ms - HOUR)) // S
    out: list[Series] = []
    n_gpus = draw(st.integers(1, max_gpus))
    per_hour = HOUR // S
    for g in range(n_gpus):
        uuid = f"GPU-{start_ms // 1000:x}-{g:04d}"
        # a "plain" GPU is what most of a real fleet looks like: one scrape loop, no outage,
        # jobs changing only on the hour, no NaN -- the windows PromQL aggregates settle.
        plain = draw(st.booleans())
        mig = draw(st.booleans())
        model = draw(st.sampled_from(["NVIDIA A100-SXM4-80GB", "NVIDIA A30"])) if mig else "NVIDIA H100 80GB HBM3"
        instances = (
            [
                (
                    str(i),
                    draw(
                        st.sampled_from(["1g.10gb", "2g.20gb", "3g.40gb"] if "A100" in model else ["1g.6gb", "2g.12gb"])
                    ),
                )
                for i in range(draw(st.integers(1, 3)))
            ]
            if mig
            else [("", None)]
        )
        # job mapping per instance and slot: None (no label), "0" (idle) or job ids; maybe two
        timelines = []
        for _ in instances:
            cut = st.integers(0, slots // per_hour).map(lambda h: h * per_hour) if plain else st.integers(0, slots)
            cuts = sorted(draw(st.lists(cut, min_size=0, max_size=4)))
            jobs_in = draw(
                st.lists(
                    st.one_of(
                        st.none(),
                        st.just(("0",)),
                        st.tuples(st.sampled_from(["a", "b", 'c"q', "d\\e"])),
                        st.tuples(st.just("s1"), st.just("s2")),
                    ),
                    min_size=len(cuts) + 1,
                    max_size=len(cuts) + 1,
                )
            )
            bounds = [0, *cuts, slots]
            per_slot: list[tuple[str, ...] | None] = [None] * slots
            for i, j in enumerate(jobs_in):
                for k in range(bounds[i], bounds[i + 1]):
                    per_slot[k] = j
            timelines.append(per_slot)
        loops = [("dcgm", draw(st.integers(0, S - 1)))]
        if not plain and draw(st.booleans()):
            loops.append(("dcgm-2", draw(st.integers(0, S - 1))))
        rename_at = None if plain else draw(st.one_of(st.none(), st.integers(0, slots)))
        reset_at = None if plain else draw(st.one_of(st.none(), st.integers(1, slots)))
        base_energy = draw(st.integers(0, 10**9))
        power = [draw(st.integers(0, 10_000)) for _ in range(4)]
        step = [draw(st.integers(0, 10_000)) for _ in range(4)]
        for target, phase in loops:
            down = None if plain else draw(st.one_of(st.none(), st.tuples(st.integers(0, slots), st.integers(1, 30))))
            for k in range(slots):
                if down and down[0] <= k < down[0] + down[1]:
                    continue
                t = start_ms - HOUR + k * S + phase
                host_label = "hostname" if rename_at is not None and k >= rename_at else "Hostname"
                # a counter: grows by a varying step each slot, restarts low at reset_at
                grown = base_energy + sum(step[i % 4] for i in range(k))
                energy = grown if reset_at is None or k < reset_at else (k - reset_at) * power[0] + 7
                for (gi, profile), per_slot in zip(instances, timelines, strict=True):
                    labs = {
                        "UUID": uuid,
                        "modelName": model,
                        host_label: f"host{g % 2}",
                        "gpu": str(g),
                        "job": target,
                        "instance": f"host{g % 2}:9400",
                    }
                    if gi:
                        labs |= {"GPU_I_ID": gi, "GPU_I_PROFILE": profile or ""}
                    jobs = per_slot[k]
                    for job in jobs or (None,):
                        lab = dict(labs)
                        if job is not None:
                            lab["hpc_job"] = job
                        if gi:
                            value = draw(st.sampled_from([0.0, 0.25, 0.5, 0.731, 1.0]))
                            out.append(_one(GR_ACTIVE, lab, t, value))
                        else:
                            value = draw(
                                st.sampled_from([0.0, 37.0, 100.0] if plain else [0.0, 37.0, 100.0, float("nan")])
                            )
                            out.append(_one(UTIL, lab, t, value))
                        out.append(_one(ENERGY, lab, t, float(energy)))
    return _merge(out)


def _one(metric: str, labels: dict[str, str], t: int, v: float) -> Series:
    return Series({"__name__": metric, **labels}, np.array([t], dtype=np.int64), np.array([v]))


def _merge(samples: list[Series]) -> list[Series]:
    """One Series per label set, samples in time order."""
    by: dict[str, tuple[dict[str, str], list[int], list[float]]] = {}
    for s in samples:
        k = s.key()
        if k not in by:
            by[k] = (dict(s.labels), [], [])
        by[k][1].append(int(s.ts_ms[0]))
        by[k][2].append(float(s.values[0]))
    out = []
    for labels, ts, vs in by.values():
        order = np.argsort(np.asarray(ts), kind="stable")
        out.append(Series(labels, np.asarray(ts, dtype=np.int64)[order], np.asarray(vs)[order]))
    return out
