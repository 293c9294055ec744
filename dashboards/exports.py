"""The Auditor page's data and its one write: building an auditor bundle.

A bundle is built when it is downloaded — the page hands ``st.download_button`` a
function, not bytes — so every download is one run of :func:`build_bundle`, and every
run appends its own ``export`` entry to the audit log (by ``dashboard:<user>``), signs a
checkpoint and records the export, exactly as ``gpumeter audit export`` does.

The steps are those of the CLI (:func:`audit.bundle.attest_and_export`: log new inventory
versions and the month's usage windows, attest the month's jobs, sign and write the
bundle), on one short read-write connection; ``collect`` waits for it like it waits for
any writer.

The function the page hands over is bound to the tab's session and to the viewer the
page was drawn for, not to a verdict: on each click :func:`bundle_bytes` checks, at that
moment, that the session goes on (not signed out, not idle, no new password) and that the
store's user is still that viewer — a user removed, demoted or re-scoped since the page
was drawn builds nothing (:func:`dashboards.sessions.verify`). The tenant is then checked
against the viewer (:func:`dashboards.roles.verify_export`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from audit import cosign, highwater, keys, policy
from audit.bundle import ExportResult, attest_and_export
from audit.note import Signer
from audit.seal import seal
from dashboards import sessions
from dashboards.reader import StoreAccess, forget_version
from dashboards.roles import Viewer, verify_export
from dashboards.sessions import Session
from dashboards.settings import Site
from gpumeter import store
from gpumeter.config import Config
from gpumeter.errors import GpumeterError


@dataclass(frozen=True)
class ExportReadiness:
    """Whether this dashboard can sign bundles (the key and its passphrase are there)."""

    passed: bool
    reason: str


def check_signing(config: Config, passphrase: str | None) -> ExportReadiness:
    if not passphrase:
        return ExportReadiness(
            False, "the dashboard was started without GPUMETER_AUDIT_PASSPHRASE, so it cannot sign bundles"
        )
    try:
        keys.load_signer(config.audit.signing_key, passphrase, config.audit.origin)
    except GpumeterError as exc:
        return ExportReadiness(False, exc.explain())
    return ExportReadiness(True, "ready")


def export_month(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    signer: Signer,
    month: str,
    tenant: str | None,
    out: Path,
    *,
    by: str,
    at: datetime,
) -> ExportResult:
    """What ``gpumeter audit export`` does, on an open read-write connection."""
    boundary = policy.policy(config.audit.allowed_countries)
    store.require_schema(con)
    mark = highwater.mark_path(config.audit.signing_key)
    return attest_and_export(
        con,
        month,
        tenant,
        out,
        [signer],
        config.audit.origin,
        boundary,
        by=by,
        at=at,
        mark=mark,
        seal=lambda stored: seal(con, config, stored),
        trust=cosign.trust_policy(config),
    ).export


@dataclass(frozen=True)
class Bundle:
    file_name: str
    data: bytes
    export_index: int
    checkpoint_size: int


def bundle_name(month: str, tenant: str | None) -> str:
    scope = "log" if tenant is None else "".join(c if c.isalnum() or c in "-_." else "_" for c in tenant)
    return f"gpumeter-audit-{month}-{scope}.zip"


def build_bundle(
    access: StoreAccess,
    config: Config,
    passphrase: str | None,
    viewer: Viewer,
    month: str,
    tenant: str | None,
    *,
    now: datetime | None = None,
) -> Bundle:
    """Check the viewer may, build the bundle (recording the export), return its bytes."""
    verify_export(viewer, tenant)
    signer = keys.load_signer(config.audit.signing_key, passphrase, config.audit.origin)
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    with tempfile.TemporaryDirectory(prefix="gpumeter-bundle-") as tmp:
        out = Path(tmp) / bundle_name(month, tenant)
        with access.write() as con:
            result = export_month(con, config, signer, month, tenant, out, by=f"dashboard:{viewer.name}", at=moment)
        data = out.read_bytes()
    forget_version(access)
    return Bundle(bundle_name(month, tenant), data, result.export_index, result.checkpoint.size)


def tenants(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [str(t) for t, _ in store.run(con, "dash_tenants").fetchall()]


def recent_exports(con: duckdb.DuckDBPyConnection, month: str | None) -> pl.DataFrame:
    """Bundles made (for ``month``, or all), newest first: who, when, which checkpoint."""
    return store.frame(con, "dash_exports", {"month": month}).with_columns(pl.col("tenant").fill_null("(whole log)"))


def witness_shortfall(made: pl.DataFrame, config: Config) -> str:
    """A warning when the newest bundle in ``made`` (newest first, as :func:`recent_exports`
    orders it) carries fewer witness cosignatures than ``[audit] quorum`` asks for — it was
    built while witnesses did not answer — else ''. The bundle itself says nothing of it:
    its checkpoint is signed and valid, only the policy's check refuses it."""
    witnesses = config.audit.witnesses
    if not witnesses or not made.height:
        return ""
    needed = config.audit.quorum or len(witnesses)
    newest = made.row(0, named=True)
    have = int(newest["cosignatures"] or 0)
    if have >= needed:
        return ""
    why = f" ({newest['witness_failures']})" if newest.get("witness_failures") else ""
    return (
        f"The newest bundle (made by {newest['made_by']} at {newest['made_at']:%Y-%m-%d %H:%M} UTC, checkpoint size "
        f"{newest['checkpoint_size']}) carries {have} of the {needed} witness cosignatures [audit] quorum asks "
        f"for{why}, so `gpumeter audit verify` under the witness policy refuses it. Build it again once the "
        "witnesses answer: each new checkpoint is submitted to them again."
    )


def visible_exports(frame: pl.DataFrame, viewer: Viewer) -> pl.DataFrame:
    """A scoped auditor sees only its tenant's bundles (who made the others is not its business)."""
    if viewer.tenant is None:
        return frame
    return frame.filter(pl.col("tenant") == viewer.tenant)


def months(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every month the store knows anything about, newest first."""
    return [str(m) for (m,) in store.run(con, "dash_months").fetchall()]


def bundle_bytes(
    site: Site, session: Session, drawn: Viewer, month: str, tenant: str | None, *, now: datetime | None = None
) -> bytes:
    """What the page's deferred download button calls on each click (in Streamlit's worker
    thread): re-check the session and the viewer now, then :func:`build_bundle`'s bytes."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    viewer = sessions.verify(site.access, session, drawn, now=moment, idle_s=site.settings.session_idle_s)
    return build_bundle(site.access, site.config, site.passphrase, viewer, month, tenant, now=moment).data
