"""The store: migrations apply once, in order, and every connection is in UTC."""

from __future__ import annotations

from pathlib import Path

from gpumeter import store


def test_migrate_is_idempotent_and_sets_utc(tmp_path: Path) -> None:
    db = tmp_path / "g.duckdb"
    con = store.connect(db)
    applied = store.migrate(con)
    assert applied and applied == sorted(applied)
    assert store.migrate(con) == []
    con.close()
    ro = store.connect(db, read_only=True)
    assert ro.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)
    store.require_schema(ro)
    ro.close()
