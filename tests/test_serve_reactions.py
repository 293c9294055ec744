"""What follows metering in ``gpumeter serve``: the same reactions as ``collect``, and checkpoints.

The installed CLI in a subprocess against the session's Prometheus 2.42 (trap scenarios),
budget alerts to a real local receiver (:mod:`tests.billing.webhook_receiver`), checkpoints
cosigned by a real ``gpumeter witness`` and time-stamped by the TSA double
(:mod:`tests.tsa_double`: no RFC 3161 authority runs here, so it is the one fake).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from audit import cosign, keys, timestamp
from audit.log import AuditLog
from gpumeter import store
from gpumeter.config import load_config
from testing.servers import free_port
from tests.audit.witnesses import in_process, init
from tests.billing.test_budgets_cli import SECRET, accepted, alert_rows, env, site_with_alerts
from tests.billing.webhook_receiver import receiving
from tests.sites import make_site
from tests.test_serve import GPUMETER
from tests.tsa_double import running

PASSPHRASE = "correct horse battery staple"


def serve(*args: str, cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [GPUMETER, "serve", "--metrics-port", "0", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**env(), **(extra_env or {})},
    )
    assert p.returncode == 0, p.stderr
    return p


@pytest.mark.prometheus
def test_a_budget_threshold_fires_once_from_serve_across_a_restart(prometheus_url: str, tmp_path: Path) -> None:
    with receiving(SECRET) as rx:
        site = site_with_alerts(tmp_path / "site", prometheus_url, rx.url)
        p = subprocess.run(
            [GPUMETER, "budgets", "set", "acme", "--monthly", "0.01"], cwd=site, env=env(), capture_output=True
        )
        assert p.returncode == 0
        # acme's job-month runs from October into November
        first = serve("--start", "2026-10-31T22:00:00Z", "--until", "2026-11-01T00:00:00Z", cwd=site)
        assert first.stderr.count("of its 2026-10 budget") == 3 and "budget alerts: 3 delivered" in first.stderr
        assert [(m, t) for m, t, _ in accepted(rx)] == [("2026-10", t) for t in (50, 80, 100)]
        # the restart re-checks October's hours (late window) and meters November's: only those fire
        second = serve("--until", "2026-11-01T02:00:00Z", cwd=site)
        assert "2026-10 budget" not in second.stderr
        assert second.stderr.count("of its 2026-11 budget") == 3 and "budget alerts: 3 delivered" in second.stderr
        third = serve("--until", "2026-11-01T02:00:00Z", cwd=site)  # all metered: nothing decided again
        assert "budget alert" not in third.stderr
        assert [(m, t) for m, t, _ in accepted(rx)] == [(m, t) for m in ("2026-10", "2026-11") for t in (50, 80, 100)]
        assert len(rx.deliveries) == 6 and rx.problems() == []
    assert all(delivered for *_, delivered in alert_rows(site)) and len(alert_rows(site)) == 6


@pytest.mark.prometheus
def test_checkpoint_every_publishes_a_witnessed_time_stamped_checkpoint(prometheus_url: str, tmp_path: Path) -> None:
    root = tmp_path / "site"
    make_site(root, prometheus_url)
    secret = {"GPUMETER_AUDIT_PASSPHRASE": PASSPHRASE}
    subprocess.run([GPUMETER, "init"], cwd=root, env={**os.environ, **secret}, check=True, capture_output=True)
    cfg_path = root / "gpumeter.toml"
    cfg = load_config(cfg_path)
    log_vkey = keys.load_keyring(cfg.audit.signing_key).verifiers(cfg.audit.origin)[0].vkey
    witness_vkey = init(tmp_path / "witness", "eu-auditor.example.eu/witness").vkey
    with in_process(tmp_path / "witness", [log_vkey]) as witness, running() as tsa:
        (root / "tsa.pem").write_text(tsa.authority.ca_pem)
        cfg_path.write_text(
            cfg_path.read_text().replace(
                'allowed_countries = ["EU"]',
                'allowed_countries = ["EU"]\ncheckpoint_every = "1h"\n'
                f'witnesses = [{{ name = "eu-auditor", url = "{witness.url}", vkey = "{witness_vkey}" }}]\n'
                f'tsa_url = "{tsa.url}"\ntsa_cert = "tsa.pem"',
            )
        )
        p = serve("--start", "2026-10-01T00:00:00Z", "--until", "2026-10-01T03:00:00Z", cwd=root, extra_env=secret)
        assert "signed a checkpoint of the audit log" in p.stderr and "WARNING" not in p.stderr, p.stderr
        assert len(tsa.requests) == 1
    cfg = load_config(cfg_path)
    con = store.connect(cfg.store.database, read_only=True)
    try:
        (cp,) = AuditLog(con).checkpoints()
        assert cp.size == AuditLog(con).size() > 3  # the windows serve metered are in it
        stamp = timestamp.timestamp_of(con, cp.id)
        assert stamp is not None and stamp.tsa_url == tsa.url
        note, cosignatures, failures = cosign.cosign_latest(con, cfg)  # every witness has cosigned: no request
    finally:
        con.close()
    assert cosignatures == 1 and failures == []
    assert cosign.trust_policy(cfg).check_checkpoint(note).witnesses == ("eu-auditor",)


@pytest.mark.prometheus
def test_a_witness_that_is_down_keeps_serves_checkpoint_and_says_so_as_audit_checkpoint_does(
    prometheus_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "site"
    make_site(root, prometheus_url)
    secret = {"GPUMETER_AUDIT_PASSPHRASE": PASSPHRASE}
    subprocess.run([GPUMETER, "init"], cwd=root, env={**os.environ, **secret}, check=True, capture_output=True)
    cfg_path = root / "gpumeter.toml"
    witness_vkey = init(tmp_path / "witness", "eu-auditor.example.eu/witness").vkey
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg_path.write_text(
        cfg_path.read_text().replace(
            'allowed_countries = ["EU"]',
            'allowed_countries = ["EU"]\ncheckpoint_every = "1h"\n'
            f'witnesses = [{{ name = "eu-auditor", url = "{down}", vkey = "{witness_vkey}" }}]',
        )
    )
    p = serve("--start", "2026-10-01T00:00:00Z", "--until", "2026-10-01T03:00:00Z", cwd=root, extra_env=secret)
    cfg = load_config(cfg_path)
    con = store.connect(cfg.store.database, read_only=True)
    try:
        (cp,) = AuditLog(con).checkpoints()  # kept, though no witness cosigned it
    finally:
        con.close()
    shortfall = (
        f"checkpoint size {cp.size} is signed and kept, but: witness quorum not met (needs eu-auditor); "
        "it is submitted again at the next checkpoint"
    )
    assert "signed a checkpoint of the audit log" in p.stderr and f"WARNING {shortfall}" in p.stderr, p.stderr
    # the same rule, the same words, from the command an operator runs by hand
    by_hand = subprocess.run(
        [GPUMETER, "audit", "checkpoint"], cwd=root, env={**os.environ, **secret}, capture_output=True, text=True
    )
    assert by_hand.returncode == 1 and f"error: {shortfall}" in by_hand.stderr, by_hand.stderr
