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


def _site(tmp_path: Path) -> Path:
    cfg = tmp_path / "gpumeter.toml"
    cfg.write_text('[store]\ndatabase = "var/g.duckdb"\n', encoding="utf-8")
    return cfg


def test_a_new_store_and_its_folder_are_private(tmp_path: Path) -> None:
    import os
    import stat

    os.umask(0o022)  # the most permissive umask a user is likely to have
    db = tmp_path / "var" / "g.duckdb"
    con = store.connect(db)
    store.migrate(con)
    con.close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


def test_a_newer_store_is_refused_with_both_versions(tmp_path: Path) -> None:
    import pytest

    from gpumeter.config import load_config
    from gpumeter.errors import StoreError

    cfg = load_config(_site(tmp_path))
    con = store.connect(cfg.store.database)
    store.migrate(con)
    future = store.code_version() + 1
    con.execute("INSERT INTO schema_migrations VALUES ($v, 'from_the_future', now())", {"v": future})
    con.close()
    newer = rf"version {future}, newer than this gpumeter knows \({future - 1}\)"
    for mode in ("read", "write"):
        with pytest.raises(StoreError, match=newer), store.opened(cfg, mode):  # type: ignore[arg-type]
            pass
    con = store.connect(cfg.store.database)
    with pytest.raises(StoreError, match="newer"):
        store.migrate(con)
    con.close()


def test_a_writer_waits_a_bounded_time_and_names_the_holder(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    import pytest

    from gpumeter.config import load_config
    from gpumeter.errors import StoreError

    cfg = load_config(_site(tmp_path))
    con = store.connect(cfg.store.database)
    store.migrate(con)
    con.close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(cfg.store.database)!r}); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        began = time.monotonic()
        with pytest.raises(StoreError) as info, store.opened(cfg, "write", wait_s=1.5):
            pass
        waited = time.monotonic() - began
        assert 1.5 <= waited < 15
        assert f"PID {holder.pid}" in info.value.explain() and "waited 1.5 s" in info.value.explain()
    finally:
        holder.kill()
        holder.communicate()
    with store.opened(cfg, "write") as again:  # once the holder is gone the writer gets in
        assert again.execute("SELECT 1").fetchone() == (1,)
