"""``gpumeter audit …``: export, verify, check, publish, checkpoint, attest, keys.

A thin layer: parse options, read ``GPUMETER_AUDIT_PASSPHRASE`` (only here), call the
package, print. Data goes to stdout, progress and notices to stderr. Failures are
:class:`~gpumeter.errors.GpumeterError` subclasses that the app prints as one line: a proof,
signature or hash that fails exits 3, other errors 1; ``audit verify`` exits 4 when all of
a bundle's checks hold but nothing outside it pins its log key (a bundle can carry any
key). The app mounts :data:`audit_app` as ``gpumeter audit``.
"""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from audit import attest, cosign, highwater, keys, policy
from audit.bundle import attest_and_export
from audit.check import check_log
from audit.entries import key_event
from audit.errors import KeyFileError, UnpinnedKey, VerificationError, WitnessError
from audit.log import AuditLog, atomic
from audit.note import Signer, parse_note
from audit.pinning import PolicyTrust, pinned_keys
from audit.publish import publish
from audit.seal import Sealed, seal, sign_and_seal
from audit.trust import build_policy, parse_policy
from audit.verify import verify_bundle
from gpumeter import store
from gpumeter.commandline import ConfigOpt, MonthOpt, config_path, err, get_config, say
from gpumeter.config import DEFAULT_CONFIG, Config

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
            con,
            month,
            tenant,
            out,
            [signer],
            cfg.audit.origin,
            boundary,
            by=getpass.getuser(),
            mark=mark,
            seal=lambda stored: seal(con, cfg, stored),
            trust=cosign.trust_policy(cfg),
        )
        highwater.record(mark, done.export.checkpoint.note)
    attested, result = done.attested, done.export
    if result.sealed is not None:
        _say_sealed(result.sealed)
        for problem in result.sealed.problems:
            say(f"warning: the bundle's checkpoint: {problem}")
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


def _pin(
    key: list[str],
    policy_file: Path | None,
    witness: list[str],
    quorum: int | None,
    tsa_cert: Path | None,
    config: Path | None,
) -> PolicyTrust | None:
    """What pins the log from outside the bundle: ``--policy FILE``; or ``--key`` with any
    ``--witness``/``--quorum``; or the key ring, witnesses and quorum of the site's
    ``gpumeter.toml`` (``--config``, else ./gpumeter.toml). None: nothing does."""
    pem = _read_small(tsa_cert, "--tsa-cert") if tsa_cert is not None else None
    if policy_file is not None:
        if key or witness or quorum is not None:
            raise typer.BadParameter(
                "--policy names the keys, witnesses and quorum: do not add --key/--witness/--quorum"
            )
        text = _read_small(policy_file, "--policy")
        return PolicyTrust(parse_policy(text, source=str(policy_file)), tsa_cert=pem)
    if key:
        return pinned_keys(_key_args(key), witnesses=_key_args(witness), quorum=quorum, tsa_cert=pem)
    found = config_path(config) or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    if found is None:
        if witness or quorum is not None:
            raise typer.BadParameter("--witness/--quorum need the log key too: add --key (or --policy FILE)")
        return None
    cfg = get_config(found)
    if witness or quorum is not None:
        ring = [v.vkey for v in keys.load_keyring(cfg.audit.signing_key).verifiers(cfg.audit.origin)]
        policy = build_policy(ring, _key_args(witness), quorum, source="--witness/--quorum")
    else:
        policy = cosign.trust_policy(cfg)
    if not policy.logs:
        raise KeyFileError(f"the key ring of {found} is empty; pass --key", member=str(cfg.audit.signing_key))
    if pem is None and cfg.audit.tsa_cert is not None:
        pem = _read_small(cfg.audit.tsa_cert, "[audit] tsa_cert")
    return PolicyTrust(policy, cfg.audit.origin, pem)


def _read_small(path: Path, what: str) -> bytes:
    """A file an option names (a policy, a certificate), at most 1 MiB."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_PIN_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"{what}: cannot read the file: {exc.strerror}", member=str(path)) from exc
    if len(data) > MAX_PIN_FILE:
        raise KeyFileError(f"{what}: the file is larger than {MAX_PIN_FILE} bytes", member=str(path))
    return data


MAX_PIN_FILE = 1 << 20


@audit_app.command("verify")
def verify_command(
    bundle: Annotated[Path, typer.Argument(help="The bundle (.zip) to check, offline.")],
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="Trusted log verifier key (vkey string or file); repeat for rotated keys."),
    ] = None,
    policy_file: Annotated[
        Path | None,
        typer.Option("--policy", help="A C2SP tlog-policy file: the trusted log key(s), witnesses and quorum."),
    ] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option("--witness", help="A witness's verifier key (vkey string or file) that must cosign; repeatable."),
    ] = None,
    quorum: Annotated[
        int | None, typer.Option("--quorum", help="How many of the --witness keys must cosign (default: all).")
    ] = None,
    tsa_cert: Annotated[
        Path | None,
        typer.Option("--tsa-cert", help="The TSA's pinned certificate(s) (PEM): checkpoint.tsr must verify."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Check every signature, proof and hash in a bundle; exit 0 only if all hold and the
    log key is pinned from outside the bundle (--key, --policy, or the site's key ring);
    exit 4 when nothing pins it. The bundle's keys/ and policy.txt are never trusted."""
    trust = _pin(key or [], policy_file, witness or [], quorum, tsa_cert, config)
    result = verify_bundle(bundle, trust=trust)
    if not result.pinned:
        hint = (
            f"nothing outside {bundle} pins its log key: its checks hold only against the key it carries itself "
            f"(fingerprint {', '.join(result.keys)}), which a forger would carry too. Get the log's verifier key "
            "from the operator (its fingerprint is on every invoice) and pass it with --key, or pass --policy FILE, "
            "or run where the site's gpumeter.toml is"
        )
        raise UnpinnedKey(hint)
    scope = f"tenant {result.tenant}" if result.tenant is not None else "whole log"
    witnessed = (
        f"cosigned by {', '.join(result.witnesses) or 'no witness'} (quorum {result.quorum}); "
        if result.quorum != "none" or result.witnesses
        else ""
    )
    stamped = f"time-stamped {result.timestamp.isoformat()}; " if result.timestamp is not None else ""
    typer.echo(
        f"OK {bundle}: {result.origin} {result.month} ({scope}); checkpoint size {result.checkpoint_size}; "
        + witnessed
        + stamped
        + f"{result.entries} entries, {result.documents} document(s) verified; "
        + (f"consistent with size {result.consistency_from}; " if result.consistency_from is not None else "")
        + f"{result.attestations} job(s), {len(result.outside)} outside {result.policy}"
    )
    if result.notice:
        say(f"note: {result.notice}")


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


@audit_app.command("publish")
def publish_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to publish into (served as is by any static server).")],
    config: ConfigOpt = None,
) -> None:
    """Publish the log as static C2SP tlog-tiles with its latest checkpoint (incremental)."""
    cfg = get_config(config)
    with store.opened(cfg, "read") as con, err.status("writing new and grown tiles, then the checkpoint"):
        result = publish(con, out, cfg.audit.origin)
    since = f" (was {result.previous})" if result.previous is not None else ""
    say(
        f"published checkpoint size {result.size}{since}: {result.written} file(s) written, "
        f"{result.bytes_written:,} bytes; partial tiles for {result.checkpoints} checkpoint size(s)"
    )
    typer.echo(str(result.out))


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
        err.status("signing a checkpoint, time-stamping it and asking the witnesses to cosign"),
    ):
        sealed = sign_and_seal(con, cfg, signer)
    _say_sealed(sealed)
    typer.echo(sealed.note, nl=False)
    if sealed.problems:
        raise WitnessError(sealed.shortfall())


def _say_sealed(sealed: Sealed) -> None:
    if sealed.gen_time is not None:
        say(f"time-stamped by {sealed.tsa_url} at {sealed.gen_time.isoformat()}")
    for warning in sealed.warnings:
        say(f"warning: {warning}")
    if sealed.witnesses:
        say(f"checkpoint size {sealed.size}: cosigned by {', '.join(sealed.cosigned) or 'no witness'}")


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
