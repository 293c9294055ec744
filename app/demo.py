"""``gpumeter demo``: the whole chain on a built-in simulated fleet, no server needed.

A deterministic fleet (20 GPUs in France, Germany, the Netherlands, Finland, Italy, the US
and Switzerland, with MIG, shared GPUs, outages, counter resets, duplicate scrapes and a
sovereignty violation) is simulated for one month (or its first ``--days`` days, the fleet
idle after them); the whole month is metered by ``collect`` itself, through an in-process
simulated backend that answers the collector's queries as Prometheus would (only a fully
metered month can be invoiced); then the month is invoiced and audited, and an auditor
bundle is written and verified. Two witnesses (an auditor's and a customer's, each a witness
server on a free 127.0.0.1 port in a thread of this process, with a fresh folder each run)
cosign the log's checkpoints, 2 of 2 required
(gpumeter.toml names them while the demo runs); the bundle is verified under a tlog-policy
pinning the log key and both witnesses, and the same bundle re-signed with a fresh key is
refused. There is no time-stamping authority in the demo. The commands it suggests at the
end work as pasted, however gpumeter was started (``make demo`` runs ``.venv/bin/gpumeter``,
which is not on the PATH).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gpumeter import store
from gpumeter.commandline import err
from gpumeter.config import Config, WitnessConfig, load_config
from gpumeter.months import Month
from metering import report
from metering.commands import progress_bar
from metering.run import collect
from metering.windows import Span

DEMO_MONTH = "2026-10"
DEMO_WITNESSES = ("auditor", "customer")  # who would run them: an EU auditor, a customer


def this_command() -> str:
    """How to run this same gpumeter again from the current folder, as a user would paste it."""
    me = Path(sys.argv[0]).resolve()
    on_path = shutil.which("gpumeter")
    if on_path is not None and Path(on_path).resolve() == me:
        return "gpumeter"
    try:
        return str(me.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(me)


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo site, store, invoices and bundle.")] = Path(
        "demo-out"
    ),
    days: Annotated[int, typer.Option("--days", min=1, max=31, help="Days of October 2026 to simulate.")] = 31,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed.")] = 1,
) -> None:
    """Simulate a month of a small GPU fleet, meter, invoice and audit it."""
    from simulator import SimulatedBackend, small_fleet, write_inventory

    console = Console(width=None if sys.stdout.isatty() else 120)
    month = Month.parse(DEMO_MONTH)
    err.print(f"simulating {days} days of a 20-GPU fleet (seed {seed})…", highlight=False)
    fleet = small_fleet(seed=seed, start=month.start, days=float(days))
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(write_inventory(fleet, out, contracts=True))
    if cfg.store.database.exists():
        cfg.store.database.unlink()
    con = store.connect(cfg.store.database)
    try:
        store.migrate(con)
        span = Span.of(month.start, month.end)  # the whole month: the fleet is idle after `days`
        with progress_bar("metering") as update:
            rep = collect(con, cfg, span, client=SimulatedBackend(fleet.series), progress=update)
        err.print(
            f"metered {rep.windows} hour windows, {rep.rows_written} usage rows "
            f"({sum(len(s.ts_ms) for s in fleet.series):,} samples)",
            highlight=False,
        )
        for job in rep.unknown_jobs:
            err.print(f"warning: job {job!r} appears in telemetry but not in jobs.csv", highlight=False, markup=False)
        _print_tenants(console, con, cfg)
        _after_metering(console, con, cfg, out)
        password_file = _dashboard_user(con, out)
    finally:
        con.close()
    gm = this_command()
    console.print(
        f"\nDemo site in [bold]{out}[/bold]. Look around with:\n"
        f"  {gm} usage --config {out}/gpumeter.toml --month {DEMO_MONTH}\n"
        f"  {gm} audit verify {out}/audit-{DEMO_MONTH}.zip --key {out}/keys/audit.vkey\n"
        + (
            "  "
            if os.environ.get("GPUMETER_AUDIT_PASSPHRASE")
            else f"  GPUMETER_AUDIT_PASSPHRASE=$(cat {out}/keys/demo-passphrase.txt) "
        )
        + f"{gm} dashboard --config {out}/gpumeter.toml\n"
        f"and open http://127.0.0.1:8501 — user 'admin', password in {password_file}",
        highlight=False,
        soft_wrap=True,  # each command on one line, to paste
    )


def _dashboard_user(con: object, out: Path) -> Path:
    """A demo admin for the dashboards, its random password in a 0600 file (never printed)."""
    from dashboards.auth import add_user

    password = secrets.token_urlsafe(12)
    add_user(con, "admin", "admin", None, password, at=datetime.now(UTC), replace=True)  # type: ignore[arg-type]
    path = out / "keys" / "dashboard-admin-password.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(password + "\n")
    return path


def _print_tenants(console: Console, con: object, cfg: Config) -> None:
    import polars as pl

    usage = report.month_usage(con, DEMO_MONTH, report.allowed_set(cfg.audit.allowed_countries))  # type: ignore[arg-type]
    per = (
        usage.with_columns(pl.col("tenant").fill_null("(not in jobs.csv)"))
        .group_by("tenant")
        .agg(
            pl.col("job_id").n_unique().alias("jobs"),
            (pl.col("gpu_seconds").cast(pl.Float64).sum() / 3600).alias("gpu_hours"),
            (pl.col("busy_gpu_seconds").cast(pl.Float64).sum() / 3600).alias("busy_hours"),
            pl.col("energy_kwh").sum().alias("kwh"),
            pl.col("job_id").filter(~pl.col("in_eu")).n_unique().alias("outside"),
        )
        .sort("tenant")
    )
    table = Table(title=f"GPU usage per tenant, {DEMO_MONTH} (UTC)")
    for c in ("tenant", "jobs", "GPU-hours", "busy GPU-hours", "energy kWh", "jobs outside EU"):
        table.add_column(c, justify="left" if c == "tenant" else "right")
    for t, jobs, gh, bh, kwh, outside in per.iter_rows():
        table.add_row(t, str(jobs), f"{gh:,.2f}", f"{bh:,.2f}", f"{kwh:,.1f}", str(outside))
    console.print(table)


def _after_metering(console: Console, con: object, cfg: Config, out: Path) -> None:
    """Billing and audit steps of the demo (each runs when its package is present)."""
    # The demo's own key: its passphrase lives in a 0600 file beside it (a real site sets
    # GPUMETER_AUDIT_PASSPHRASE from its secret store instead).
    pf = out / "keys" / "demo-passphrase.txt"
    if os.environ.get("GPUMETER_AUDIT_PASSPHRASE"):
        passphrase = os.environ["GPUMETER_AUDIT_PASSPHRASE"]
    elif pf.exists():
        passphrase = pf.read_text().strip()
    else:
        passphrase = secrets.token_urlsafe(18)
        pf.parent.mkdir(parents=True, exist_ok=True)
        pf.touch(mode=0o600)
        pf.write_text(passphrase + "\n")
        err.print(f"demo signing-key passphrase stored in {pf} (mode 0600)", highlight=False)
    from audit import keys as audit_keys

    audit_keys.ensure_key(cfg.audit.signing_key, passphrase, cfg.audit.origin)
    _budget_alerts(console, con, cfg)
    log_vkey = audit_keys.load_signer(cfg.audit.signing_key, passphrase, cfg.audit.origin).vkey
    with _witnesses(out, log_vkey) as witnesses, _configured(cfg.path, witnesses) as cfg:
        console.print(
            f"Witnesses {', '.join(f'{w.name} ({w.url})' for w in witnesses)} cosign the log's checkpoints, "
            f"{len(witnesses)} of {len(witnesses)} required ([audit] witnesses and quorum in {cfg.path})",
            highlight=False,
        )
        _invoice(console, con, cfg)
        _audit(console, con, cfg, out, passphrase, witnesses)
    console.print(
        f"Witnesses stopped, and taken out of {cfg.path} again: they ran only for the demo "
        "(run your own with `gpumeter witness init` and `gpumeter witness serve`)",
        highlight=False,
    )


@contextmanager
def _witnesses(out: Path, log_vkey: str) -> Iterator[list[WitnessConfig]]:
    """Two witnesses following the demo's log, each served on a free 127.0.0.1 port from a
    thread of this process; fresh folders (the demo's log starts over each run), stopped
    when the block ends."""
    from audit import witness, witness_http
    from audit.note import parse_vkey

    servers: list[tuple[str, witness_http.WitnessServer]] = []
    try:
        for name in DEMO_WITNESSES:
            folder = out / "witnesses" / name
            shutil.rmtree(folder, ignore_errors=True)
            witness.init_witness(folder, f"{name}.example.eu/witness")
            server = witness_http.make_server(witness.Witness(folder, [parse_vkey(log_vkey)]))
            threading.Thread(target=server.serve_forever, name=f"witness {name}", daemon=True).start()
            servers.append((name, server))
        yield [WitnessConfig(name, server.url, server.witness.vkey) for name, server in servers]
    finally:
        for _, server in servers:
            server.shutdown()
            server.server_close()


@contextmanager
def _configured(path: Path, witnesses: list[WitnessConfig]) -> Iterator[Config]:
    """The demo's configuration with ``[audit] witnesses`` (all of them required) while the
    block runs; gpumeter.toml is restored afterwards, since the witnesses stop with the demo
    (a site naming witnesses that never answer could not sign a cosigned checkpoint again)."""
    text = path.read_text(encoding="utf-8")
    if text.count("\n[audit]\n") != 1:
        raise RuntimeError(f"{path} has no single [audit] table to add the witnesses to")
    rows = "".join(
        f"  {{ name = {json.dumps(w.name)}, url = {json.dumps(w.url)}, vkey = {json.dumps(w.vkey)} }},\n"
        for w in witnesses
    )
    table = f"\n[audit]\n# the demo's witnesses, while it runs\nwitnesses = [\n{rows}]\nquorum = {len(witnesses)}\n"
    path.write_text(text.replace("\n[audit]\n", table), encoding="utf-8")
    try:
        yield load_config(path)
    finally:
        path.write_text(text, encoding="utf-8")


def _budget_alerts(console: Console, con: object, cfg: Config) -> None:
    """A budget for the reserved tenant, set at 90 % over its month so far (its reservation
    included), so that the 50 % and 80 % thresholds fire: decided once, queued for the webhook."""
    from billing import alerts
    from billing.budgets import EVENT_TYPE, Budget
    from billing.contracts import read_contracts

    deals = read_contracts(cfg.billing.contracts)
    if not deals.reservations:
        return
    tenant = deals.reservations[0].tenant
    month = Month.parse(DEMO_MONTH)
    net = alerts.month_to_date_nets(con, cfg, month, [tenant])[tenant]  # type: ignore[arg-type]
    monthly = max(Decimal(1), (net * 100 / 90).quantize(Decimal(1), rounding=ROUND_CEILING))
    alerts.set_budget(con, Budget(tenant, monthly, (50, 80, 100)))  # type: ignore[arg-type]
    fired = alerts.evaluate(con, cfg, [month])  # type: ignore[arg-type]
    table = Table(title=f"Budget alerts fired for {DEMO_MONTH} (EUR excl. VAT)")
    for c in ("tenant", "threshold", "budget", "month so far", "CloudEvent"):
        table.add_column(c, justify="right" if c in ("threshold", "budget", "month so far") else "left")
    for a in fired:
        table.add_row(a.tenant, f"{a.threshold_percent} %", f"{a.budget:,.2f}", f"{a.net:,.2f}", EVENT_TYPE)
    console.print(table)
    console.print(
        "Each alert is decided once and queued, signed, for [alerts] webhook_url (none in the demo: it waits).",
        highlight=False,
        markup=False,
    )


def _invoice(console: Console, con: object, cfg: Config) -> None:
    from billing.run import invoice_month

    results = invoice_month(con, cfg, DEMO_MONTH, finalize=True)  # type: ignore[arg-type]
    table = Table(title=f"Invoices issued for {DEMO_MONTH} (EUR)")
    for c in ("tenant", "number", "VAT treatment", "net", "VAT", "total", "due", "Factur-X"):
        table.add_column(c, justify="right" if c in ("net", "VAT", "total", "due") else "left")
    for r in results:
        table.add_row(
            r.tenant,
            r.number or "(draft)",
            r.vat_treatment,
            f"{r.net:,.2f}",
            f"{r.vat:,.2f}",
            f"{r.total:,.2f}",
            f"{r.due:,.2f}",
            r.validation,
        )
    console.print(table)
    _print_contracts(console, [r.json_path for r in results])
    if results:
        peppol = sum(1 for r in results if r.ubl_path is not None)
        also = f", and {peppol} Peppol UBL e-invoice(s) (<number>.xml)" if peppol else ""
        console.print(f"PDF and JSON twins in {results[0].pdf_path.parent}{also}", highlight=False)


def _print_contracts(console: Console, documents: list[Path]) -> None:
    """What contracts did on the invoices: reservations, spot, credits drawn, paid and expired."""
    import json

    table = Table(title=f"Contracts on the {DEMO_MONTH} invoices (EUR)")
    for c in ("tenant", "what", "GPU-hours", "amount"):
        table.add_column(c, justify="right" if c in ("GPU-hours", "amount") else "left")
    for path in documents:
        doc = json.loads(path.read_text(encoding="utf-8"))
        for ln in doc["lines"]:
            if ln.get("kind") == "reservation":
                hours = f"{ln['gpu_hours']} included, {ln['used_gpu_hours']} used"
                table.add_row(doc["tenant"], f"reservation {ln['contract']}", hours, ln["amount"])
            elif ln.get("kind") == "spot":
                table.add_row(doc["tenant"], f"spot {ln['gpu_model']}", ln["gpu_hours"], ln["amount"])
        for role, label in (("allowances", "promotional credit"), ("paid", "prepaid credit")):
            for use in doc.get(role, []):
                table.add_row(doc["tenant"], f"{label} {use['credit']}", "", f"-{use['amount']}")
        for use in doc.get("credits_expired", []):
            table.add_row(doc["tenant"], f"credit {use['credit']} expired unused", "", f"({use['amount']})")
    if table.row_count:
        console.print(table)


def _audit(
    console: Console, con: object, cfg: Config, out: Path, passphrase: str, witnesses: list[WitnessConfig]
) -> None:
    """Attest the month, sign and cosign, export a bundle, verify it with the pinned key and
    with a policy of the key and both witnesses, and show that one edited byte and a fresh
    key are caught; publish the log's tiles."""
    from audit import cosign, keys, policy
    from audit.bundle import attest_and_export
    from audit.errors import VerificationError
    from audit.pinning import PolicyTrust
    from audit.seal import seal
    from audit.trust import WitnessSpec, build_policy, parse_policy
    from audit.verify import verify_bundle

    boundary = policy.policy(cfg.audit.allowed_countries)
    signer = keys.load_signer(cfg.audit.signing_key, passphrase, cfg.audit.origin)
    bundle = out / f"audit-{DEMO_MONTH}.zip"
    result = attest_and_export(
        con,  # type: ignore[arg-type]
        DEMO_MONTH,
        None,
        bundle,
        [signer],
        cfg.audit.origin,
        boundary,
        by="demo",
        seal=lambda stored: seal(con, cfg, stored),  # type: ignore[arg-type]  # con is the demo's DuckDB connection
        trust=cosign.trust_policy(cfg),
    ).export
    sealed = result.sealed
    if sealed is not None:
        console.print(
            f"Checkpoint size {sealed.size} cosigned by {', '.join(sealed.cosigned) or 'no witness'} "
            f"({len(sealed.cosigned)} of {sealed.witnesses} witnesses); "
            "no [audit] tsa_url: times are the operator's clock",
            highlight=False,
            markup=False,
        )
        for problem in (*sealed.warnings, *sealed.problems):
            console.print(f"[yellow]warning[/yellow]: {problem}", highlight=False)

    jobs = report.job_month(con, DEMO_MONTH, boundary.countries)  # type: ignore[arg-type]
    outside = jobs.filter(~jobs.get_column("in_eu"))
    table = Table(title=f"Sovereignty: {jobs.height - outside.height} of {jobs.height} jobs inside {boundary.id}")
    for c in ("job", "tenant", "hosts' countries", "data countries", "findings"):
        table.add_column(c)
    for row in outside.head(8).iter_rows(named=True):
        table.add_row(
            row["job_id"],
            row["tenant"] or "(not in jobs.csv)",
            ", ".join(row["countries"]),
            ", ".join(row["data_countries"]),
            "; ".join(row["findings"]),
        )
    if outside.height > 8:
        table.add_row("…", f"{outside.height - 8} more", "", "", "")
    console.print(table)

    verified = verify_bundle(bundle, [signer.vkey], origin=cfg.audit.origin)
    console.print(
        f"Auditor bundle {bundle}: {result.entries} entries, {result.documents} documents, checkpoint size "
        f"{result.checkpoint.size}; offline verification with the pinned key: [green]OK[/green] "
        f"({verified.attestations} attestations)",
        highlight=False,
    )
    tampered = out / f"audit-{DEMO_MONTH}-one-byte-edited.zip"
    _edit_one_byte(bundle, tampered)
    try:
        verify_bundle(tampered, [signer.vkey], origin=cfg.audit.origin)
    except VerificationError as exc:
        console.print(f"The same bundle with one byte edited: [red]rejected[/red] — {exc.explain()}", highlight=False)
    else:  # pragma: no cover - would be a verifier bug
        raise RuntimeError("an edited bundle verified")
    (out / "keys" / "audit.vkey").write_text(signer.vkey + "\n")

    # What an auditor pins: the log key (its fingerprint is on every invoice) and each
    # witness's key as the witness itself gives it, never what the bundle carries.
    pinned = out / "auditor-policy.txt"
    spec = [WitnessSpec(w.name, w.vkey) for w in witnesses]
    note = "The demo auditor's trust policy: the log key and both witnesses, 2 of 2 must cosign."
    pinned.write_text(build_policy([signer.vkey], spec, len(spec), source="the demo").format(note))
    trust = PolicyTrust(parse_policy(pinned.read_bytes(), source=str(pinned)), cfg.audit.origin)
    checked = verify_bundle(bundle, trust=trust)
    console.print(
        f"Verified under {pinned} (C2SP tlog-policy: the log key, quorum {checked.quorum}): [green]OK[/green], "
        f"cosigned by {', '.join(checked.witnesses)}",
        highlight=False,
    )
    forged = out / f"audit-{DEMO_MONTH}-fresh-key.zip"
    _resign(bundle, forged, cfg.audit.origin)
    try:
        verify_bundle(forged, trust=trust)
    except VerificationError as exc:
        console.print(
            "The same bundle re-signed with a fresh key, its keys/ and policy.txt rewritten to name it: "
            f"[red]refused[/red] under {pinned} — {exc.explain()}",
            highlight=False,
        )
    else:  # pragma: no cover - would be a verifier bug
        raise RuntimeError("a bundle re-signed with a fresh key verified")
    console.print(
        f"Verify it yourself: {this_command()} audit verify {bundle} --policy {pinned}",
        highlight=False,
        soft_wrap=True,  # one line, to paste
    )
    from audit.publish import publish

    published = publish(con, out / "tlog", cfg.audit.origin)  # type: ignore[arg-type]
    console.print(
        f"The log for monitors, as static C2SP tlog-tiles: {published.out}/checkpoint (size {published.size}, "
        f"cosigned), tile/0/…, tile/1/…, tile/entries/… ({published.written - 1} files); serve the folder as is",
        highlight=False,
    )


def _resign(src: Path, dst: Path, origin: str) -> None:
    """Copy a bundle as a forger would: a fresh key named after the log re-signs its
    checkpoint (the same tree), every proof carries that note, and keys/ and policy.txt
    name the fresh key. Only a pin from outside the bundle tells it apart."""
    import zipfile

    from audit import keys, report
    from audit.checkpoint import parse_checkpoint, sign_checkpoint
    from audit.note import Signer, parse_note
    from audit.trust import build_policy

    forger = Signer(origin, keys.generate_key())
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        genuine = zin.read("checkpoint")
        note = sign_checkpoint(parse_checkpoint(parse_note(genuine).text), [forger]).encode("utf-8")
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.startswith("keys/"):
                continue
            if info.filename == "checkpoint" or info.filename.endswith(".tlog-proof"):
                data = data.replace(genuine, note)
            elif info.filename == "policy.txt":
                data = report.policy_txt(origin, build_policy([forger.vkey], source="the forger"))
            zout.writestr(info, data)
        zout.writestr(report.key_file_name(forger.vkey), report.key_file(forger.vkey))


def _edit_one_byte(src: Path, dst: Path) -> None:
    """Copy a bundle, changing one digit inside the first job attestation's entry."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        edited = False
        for info in zin.infolist():
            data = zin.read(info)
            if (
                not edited
                and info.filename.startswith("entries/")
                and info.filename.endswith(".json")
                and b'"gpu_seconds"' in data
            ):
                at = data.index(b'"gpu_seconds"') + len(b'"gpu_seconds":')
                while not data[at : at + 1].isdigit():
                    at += 1
                digit = data[at : at + 1]
                data = data[:at] + (b"1" if digit != b"1" else b"2") + data[at + 1 :]
                edited = True
            zout.writestr(info, data)
