"""``gpumeter audit …``: export, verify, check, checkpoint, attest, keys.

A thin layer: parse options, read ``GPUMETER_AUDIT_PASSPHRASE`` (only here), call the
package, print. Data goes to stdout, progress and notices to stderr. Failures are
:class:`~gpumeter.errors.GpumeterError` subclasses that the app prints as one line: a proof,
signature or hash that fails exits 3, other errors 1. The app mounts :data:`audit_app` as
``gpumeter audit``.
"""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from audit import attest, highwater, keys, policy, publish
from audit.bundle import attest_and_export
from audit.check import check_log
from audit.entries import key_event
from audit.errors import KeyFileError, VerificationError, WitnessError
from audit.log import AuditLog, atomic
from audit.note import Signer, parse_note
from audit.verify import verify_bundle
from gpumeter import store
from gpumeter.commandline import ConfigOpt, MonthOpt, config_path, err, get_config, say
from gpumeter.config import Config

audit_app = typer.Typer(
    name="audit",
    help="The signed audit log: export and verify auditor bundles, check the log, manage keys.",
    no_args_is_help=True,
)
keys_app = typer.Typer(help="Show the log's keys (vkeys, fingerprints), or rotate the signing key.")
audit_app.add_typer(keys_app, name="keys")


def _passphrase() -> str | None:
    return os.environ.get(keys.PASSPHRASE_ENV) or None


def _signer(cfg: Config) -> Signer:
    return keys.load_signer(cfg.audit.signing_key, _passphrase(), cfg.audit.origin)


@audit_app.command("export")
def export_command(
    month: MonthOpt,
    out: Annotated[Path, typer.Option("--out", help="Where to write the bundle (a .zip).")],
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's entries.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Attest the month's jobs, sign a checkpoint and write an auditor bundle."""
    cfg = get_config(config)
    boundary = policy.policy(cfg.audit.allowed_countries)
    signer = _signer(cfg)
    with (
        store.opened(cfg, "write") as con,
        err.status("logging usage and attestations, signing a checkpoint, writing the bundle"),
    ):
        mark = highwater.mark_path(cfg.audit.signing_key)
        done = attest_and_export(
            con, month, tenant, out, [signer], cfg.audit.origin, boundary, by=getpass.getuser(), mark=mark
        )
        highwater.record(mark, done.export.checkpoint.note)
    attested, result = done.attested, done.export
    say(
        f"{month}: {attested.jobs} job(s) under {boundary.id}, {len(attested.appended)} new attestation(s); "
        f"bundle holds {result.entries} entries, {result.documents} document(s); "
        f"checkpoint size {result.checkpoint.size}"
        + (f"; consistent with size {result.previous_size}" if result.previous_size is not None else "")
    )
    if tenant is not None and result.attestations == 0:
        say(f"warning: tenant {tenant!r} has no job attestations in {month}")
    if result.outside:
        say(f"{len(result.outside)} job(s) outside the boundary: {', '.join(result.outside)}")
    typer.echo(str(result.path))


def _key_args(values: list[str]) -> list[str]:
    """``--key`` values: a vkey string, or a file holding one vkey per line."""
    out: list[str] = []
    for value in values:
        path = Path(value)
        if "+" not in value and path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise KeyFileError(f"cannot read the key file: {exc}", member=value) from exc
            out += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        else:
            out.append(value)
    return out


@audit_app.command("verify")
def verify_command(
    bundle: Annotated[Path, typer.Argument(help="The bundle (.zip) to check, offline.")],
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="Trusted verifier key (vkey string or file); repeat for rotated keys."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Check every signature, proof and hash in a bundle; exit 0 only if all hold."""
    pinned = _key_args(key or [])
    origin = None
    if not pinned and config_path(config):
        cfg = get_config(config)
        ring = keys.load_keyring(cfg.audit.signing_key)
        pinned = [v.vkey for v in ring.verifiers(cfg.audit.origin)]
        origin = cfg.audit.origin
        if not pinned:
            raise KeyFileError("the configured key ring is empty; pass --key", member=str(cfg.audit.signing_key))
    result = verify_bundle(bundle, pinned, origin=origin)
    scope = f"tenant {result.tenant}" if result.tenant is not None else "whole log"
    typer.echo(
        f"OK {bundle}: {result.origin} {result.month} ({scope}); checkpoint size {result.checkpoint_size}; "
        f"{result.entries} entries, {result.documents} document(s) verified; "
        + (f"consistent with size {result.consistency_from}; " if result.consistency_from is not None else "")
        + f"{result.attestations} job(s), {len(result.outside)} outside {result.policy}"
    )
    if result.notice:
        typer.echo(f"WARNING: {result.notice}")
        say(f"warning: {result.notice}")


@audit_app.command("check")
def check_command(config: ConfigOpt = None) -> None:
    """Recompute the local log from its entry bytes and compare with its signed checkpoints."""
    cfg = get_config(config)
    ring = keys.load_keyring(cfg.audit.signing_key)
    verifiers = ring.verifiers(cfg.audit.origin)
    if not verifiers:
        raise KeyFileError("the key ring is empty: no key to check checkpoints with", member=str(cfg.audit.signing_key))
    with store.opened(cfg, "read") as con, err.status("recomputing the tree"):
        result = check_log(con, verifiers, cfg.audit.origin)
    if not result.passed:
        for finding in result.findings:
            say(f"finding: {finding}")
        raise VerificationError(result.findings[0], entry=result.first_bad_entry)
    typer.echo(
        f"OK: {result.size} entries match checkpoint #{result.checkpoint_id} (size {result.checkpoint_size}) "
        f"and every earlier checkpoint"
    )


@audit_app.command("checkpoint")
def checkpoint_command(config: ConfigOpt = None) -> None:
    """Sign a checkpoint of the whole log now, time-stamp it and have the witnesses cosign it.

    Prints the signed note with every cosignature gathered. The checkpoint is kept even
    when a witness or the TSA fails; the failure is reported (exit 1 when the witness
    quorum is not met or the time stamp failed) and the next checkpoint is submitted again.
    """
    cfg = get_config(config)
    signer = _signer(cfg)
    with (
        store.opened(cfg, "write") as con,
        err.status("publishing the checkpoint"),
    ):
        done = publish.publish_checkpoint(con, cfg, signer)
    if done.stamp is not None:
        say(f"time-stamped by {done.stamp.tsa_url} at {done.stamp.gen_time.isoformat()}")
    if done.gathered is not None:
        for failure in done.gathered.failures:
            say(f"warning: {failure}")
        say(f"checkpoint size {done.checkpoint.size}: cosigned by {', '.join(done.gathered.cosigned) or 'no witness'}")
    typer.echo(done.note, nl=False)
    if done.problems:
        raise WitnessError(done.shortfall())


@audit_app.command("attest")
def attest_command(
    month: MonthOpt,
    config: ConfigOpt = None,
) -> None:
    """Log the month's usage windows, inventory versions and one attestation per job."""
    cfg = get_config(config)
    boundary = policy.policy(cfg.audit.allowed_countries)
    with store.opened(cfg, "write") as con:
        attest.sync_inventory(con)
        windows = attest.sync_usage_windows(con, month)
        result = attest.attest_month(con, month, boundary)
    typer.echo(
        f"{month}: {len(windows.appended)} usage window(s) logged; {result.jobs} job(s) under {result.policy}: "
        f"{len(result.appended)} attested ({len(result.superseded)} superseding), {result.unchanged} unchanged; "
        f"{len(result.outside)} outside"
    )


@keys_app.callback(invoke_without_command=True)
def keys_command(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Show the log's verifier keys (vkeys) and fingerprints, oldest first."""
    if ctx.invoked_subcommand is not None:
        return
    cfg = get_config(config)
    ring = keys.load_keyring(cfg.audit.signing_key)
    if not ring.records:
        raise KeyFileError("no key ring yet; run `gpumeter init`", member=str(cfg.audit.signing_key))
    for record in ring.records:
        status = "current" if record is ring.current else f"retired {record.retired}" if record.retired else "old"
        typer.echo(f"{record.verifier(cfg.audit.origin).vkey}  {record.fingerprint}  added {record.added}  {status}")


@keys_app.command("rotate")
def rotate_command(config: ConfigOpt = None) -> None:
    """Replace the signing key: log the change and sign one checkpoint with old and new keys."""
    cfg = get_config(config)
    passphrase = _passphrase()
    path = cfg.audit.signing_key
    now = datetime.now(UTC)
    old, new = keys.start_rotation(path, passphrase, cfg.audit.origin)
    try:
        with store.opened(cfg, "write") as con, atomic(con):
            log = AuditLog(con)
            log.record_keys([old], at=now)
            log.append(key_event(at=now, event="key_rotated", key=new.vkey, previous=old.vkey), at=now)
            note = log.sign_checkpoint([old, new], cfg.audit.origin, at=now, mark=highwater.mark_path(path))
    except BaseException:
        keys.pending_path(path).unlink(missing_ok=True)
        raise
    retired = keys.finish_rotation(path, old, new, at=now)
    highwater.record(highwater.mark_path(path), note)
    say(f"old key moved to {retired} (encrypted); destroy it once no one needs it to sign")
    say(f"checkpoint size {parse_note(note).text.splitlines()[1]} signed by both keys")
    typer.echo(new.vkey)
