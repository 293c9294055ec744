"""report/sovereignty.csv's rows and which attestation each shows (audit.report: the one rule
the exporter writes by and the verifier re-derives with), against plain restatements of them:
csv.writer over text_cell of each cell, and "per job, the highest index nothing supersedes"."""

from __future__ import annotations

import csv
import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audit import report
from gpumeter.csvcells import text_cell

_TEXT = st.text(alphabet=st.sampled_from(list("ab-=+@\t\r\n,\";é '")), max_size=6)
_FIELD = st.one_of(st.none(), _TEXT, st.lists(_TEXT, max_size=3), st.booleans(), st.integers(-3, 3))


def _expected(entry: dict[str, Any]) -> str:
    def joined(value: Any) -> str:
        if value is None or value == [] or value == "":
            return ""
        return ";".join(map(str, value)) if type(value) is list else str(value)

    tenant = entry.get("tenant")
    cells = [
        text_cell(str(entry.get("job_id", ""))),
        text_cell("" if tenant is None else str(tenant)),
        *(text_cell(joined(entry.get(k))) for k in ("hosts", "countries", "data_locations", "data_countries")),
        "true" if entry.get("in_eu") is True else "false",
        text_cell(joined(entry.get("findings"))),
    ]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(report.CSV_COLUMNS), _FIELD), max_size=8))
def test_each_row_is_what_csv_writes_of_the_inert_cells(entries: list[dict[str, Any]]) -> None:
    """Formula triggers at a cell's start (and after a comma inside a cell), commas, quotes,
    line breaks, non-ASCII text, absent and null fields: every line equals csv.writer's."""
    assert report.csv_lines(entries) == [_expected(e) for e in entries]


def test_a_trigger_inside_a_cell_is_left_alone_and_one_at_its_start_is_marked() -> None:
    rows = report.csv_lines(
        [
            {"job_id": "a,=b", "hosts": ["x", "-y"], "in_eu": True},
            {"job_id": "-5", "tenant": "@t", "findings": ["=1+1", "ok"]},
            {"job_id": None},
        ]
    )
    assert rows == ['"a,=b",,x;-y,,,,true,\n', "'-5,'@t,,,,,false,'=1+1;ok\n", "None,,,,,,false,\n"]


_SUPERSEDES = st.one_of(st.none(), st.integers(-1, 12), st.booleans(), st.text(max_size=2), st.lists(st.integers(0, 3)))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "=d"]), _SUPERSEDES),
        max_size=12,
    ),
    st.randoms(use_true_random=False),
)
def test_the_row_of_a_job_is_its_highest_attestation_nothing_supersedes(
    rows: list[tuple[str, object]], rng: Any
) -> None:
    """Superseded by an integer index (a bool counts as one, as isinstance says), never by a
    string, a list or null; the result in job order, whatever order the attestations come in."""
    atts = [(2 * k + 1, job, s) for k, (job, s) in enumerate(rows)]
    replaced = {s for _, _, s in atts if isinstance(s, int)}
    expected: dict[str, int] = {}
    for i, job, _ in atts:
        if i not in replaced:
            expected[job] = max(expected.get(job, i), i)
    shuffled = list(atts)
    rng.shuffle(shuffled)
    assert report.latest_of(shuffled) == [expected[job] for job in sorted(expected)]
