"""SIGKILL during ``invoice --finalize`` after its transaction committed and before (or
while) it writes the documents' files: the documents are issued and frozen in the store, so
the next ``invoice --finalize`` issues nothing new and restores the missing files byte for
byte; the end state is that of an undisturbed run: same numbers, same amounts, same JSON,
every file matching the store, the log vouching for each document once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.billing_sites import MONTH, billing_site, killed_at
from tests.faults.conftest import gpumeter
from tests.faults.outcome import Billed, billed

FINALIZE = ("invoice", "--month", MONTH, "--finalize")


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> Billed:
    site = billing_site(tmp_path_factory.mktemp("undisturbed") / "site")
    gpumeter("--config", str(site.root / "gpumeter.toml"), *FINALIZE, cwd=site.root)
    reference = billed(site.config.store.database, site.out)
    assert reference.findings == [] and len(reference.documents) == 3
    return reference


@pytest.mark.parametrize(("nth_file", "written"), [(1, 0), (4, 3)], ids=["before-any-file", "after-three-files"])
def test_sigkill_between_commit_and_files(tmp_path: Path, undisturbed: Billed, nth_file: int, written: int) -> None:
    site = billing_site(tmp_path / "site")
    killed_at(site, nth_file, *FINALIZE)
    # the kill landed after the commit: every document is issued, its files are not all there
    after_kill = billed(site.config.store.database, site.out)
    assert [d[0] for d in after_kill.documents] == [d[0] for d in undisturbed.documents]
    files = sorted(p.name for p in (site.out / MONTH).glob("GM-*"))
    assert len(files) == written
    assert sum("missing from the invoices folder" in f for f in after_kill.findings) == 6 - written

    p = gpumeter("--config", str(site.root / "gpumeter.toml"), *FINALIZE, cwd=site.root)
    assert "0 document(s) issued" in p.stderr and "issued earlier" in p.stdout
    again = billed(site.config.store.database, site.out)
    assert again.findings == []
    assert again.documents == undisturbed.documents
