"""report/sovereignty.csv's rows (audit.report.csv_lines, the one rule the exporter writes and
the verifier re-derives) against the standard library's csv.writer over text_cell of each cell."""

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
