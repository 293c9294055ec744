"""Building auditor bundles from the dashboard: who may, and that each build is logged."""

from __future__ import annotations

import json
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from audit.keys import load_keyring
from audit.verify import verify_bundle
from dashboards.errors import AccessDenied
from dashboards.exports import build_bundle
from dashboards.reader import StoreAccess
from dashboards.roles import Role, Viewer
from gpumeter import store
from gpumeter.config import load_config
from tests.dashboards.fixtures import MONTH, PASSPHRASE, SCOPED_TENANT


def audit_rows(config: Path) -> tuple[int, list[tuple[object, ...]]]:
    con = store.connect(load_config(config).store.database, read_only=True)
    try:
        size = int(store.run(con, "audit_size").scalar())
        made = con.execute("SELECT month, tenant, made_by, entry_idx FROM audit_exports ORDER BY id").fetchall()
    finally:
        con.close()
    return size, made


def test_each_download_is_a_verified_bundle_and_an_export_entry(demo_site: Path, tmp_path: Path) -> None:
    cfg = load_config(demo_site)
    db = StoreAccess(cfg.store.database)
    viewer = Viewer("aud-laguna", Role.AUDITOR, SCOPED_TENANT)
    _, earlier = audit_rows(demo_site)
    first = build_bundle(db, cfg, PASSPHRASE, viewer, MONTH, SCOPED_TENANT)
    second = build_bundle(db, cfg, PASSPHRASE, viewer, MONTH, SCOPED_TENANT)
    assert first.file_name == f"gpumeter-audit-{MONTH}-{SCOPED_TENANT}.zip"
    assert second.export_index > first.export_index
    size, made = audit_rows(demo_site)
    assert made == [
        *earlier,
        (MONTH, SCOPED_TENANT, "dashboard:aud-laguna", first.export_index),
        (MONTH, SCOPED_TENANT, "dashboard:aud-laguna", second.export_index),
    ]
    assert size == second.checkpoint_size
    vkeys = [v.vkey for v in load_keyring(cfg.audit.signing_key).verifiers(cfg.audit.origin)]
    for bundle in (first, second):
        path = tmp_path / f"{bundle.export_index}.zip"
        path.write_bytes(bundle.data)
        result = verify_bundle(path, vkeys, origin=cfg.audit.origin)
        assert (result.month, result.tenant, result.key_source) == (MONTH, SCOPED_TENANT, "pinned")
        assert result.attestations > 0
        with zipfile.ZipFile(BytesIO(bundle.data)) as z:
            entry = json.loads(z.read(f"entries/{bundle.export_index}.json"))
            tenants = {
                json.loads(z.read(n)).get("tenant") for n in z.namelist() if n.endswith(".json") and "entries/" in n
            }
        assert (entry["type"], entry["by"], entry["tenant"]) == ("export", "dashboard:aud-laguna", SCOPED_TENANT)
        assert tenants <= {SCOPED_TENANT, None}  # no other tenant's entries in a tenant bundle


@pytest.mark.parametrize(
    ("viewer", "tenant"),
    [
        (Viewer("aud-laguna", Role.AUDITOR, SCOPED_TENANT), "armor-bio"),
        (Viewer("aud-laguna", Role.AUDITOR, SCOPED_TENANT), None),
        (Viewer("fin", Role.FINANCE), SCOPED_TENANT),
        (Viewer("comp", Role.COMPLIANCE), None),
    ],
)
def test_refused_exports_change_nothing(viewer: Viewer, tenant: str | None, demo_site: Path) -> None:
    cfg = load_config(demo_site)
    before = audit_rows(demo_site)
    with pytest.raises(AccessDenied):
        build_bundle(StoreAccess(cfg.store.database), cfg, PASSPHRASE, viewer, MONTH, tenant)
    assert audit_rows(demo_site) == before


def test_whole_log_bundle_for_an_unscoped_auditor(demo_site: Path, tmp_path: Path) -> None:
    cfg = load_config(demo_site)
    bundle = build_bundle(StoreAccess(cfg.store.database), cfg, PASSPHRASE, Viewer("aud", Role.AUDITOR), MONTH, None)
    path = tmp_path / "log.zip"
    path.write_bytes(bundle.data)
    vkeys = [v.vkey for v in load_keyring(cfg.audit.signing_key).verifiers(cfg.audit.origin)]
    result = verify_bundle(path, vkeys, origin=cfg.audit.origin)
    assert result.tenant is None and len(result.outside) > 0
