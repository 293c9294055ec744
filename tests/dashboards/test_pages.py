"""Every page under Streamlit's AppTest, for every role: what each role can reach, and that
pages show the right figures (computed here independently) without an exception on a
populated month, a month with violations, a fresh month and an empty store."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from audit import cosign, keys, witness
from dashboards.exports import build_bundle
from dashboards.reader import StoreAccess
from dashboards.roles import Page, Role, Viewer
from gpumeter import store
from gpumeter.config import load_config
from metering import report
from testing.stores import mark_collected
from tests.dashboards.conftest import OpenApp, assert_clean, sign_in
from tests.dashboards.fixtures import MONTH, PASSPHRASE, SCOPED_TENANT

ALL_PAGES = tuple(Page)
ADMIN_PAGES = tuple(p for p in Page if p is not Page.ACCOUNT)  # an admin has no tenant of its own
REACHABLE = {
    "ada": ADMIN_PAGES,
    "fin": (Page.FINANCE, Page.UTILISATION),
    "comp": (Page.COMPLIANCE, Page.UTILISATION),
    "aud": (Page.AUDITOR, Page.COMPLIANCE),
    "aud-laguna": (Page.AUDITOR,),
    "ten-laguna": (Page.ACCOUNT,),
}
TITLES = {
    Page.FINANCE: "Finance",
    Page.UTILISATION: "Utilisation",
    Page.COMPLIANCE: "Compliance",
    Page.AUDITOR: "Auditor bundles",
    Page.ACCESS: "Access",
    Page.ACCOUNT: "My account",
}


def page_path(page: Page) -> str:
    return f"screens/{page.value}.py"


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r} in {[m.label for m in at.metric]}"
    return str(found[0])


def select(at: AppTest, key: str, value: str) -> AppTest:
    at.selectbox(key=key).select(value).run()
    return at


def read(config: Path) -> duckdb.DuckDBPyConnection:
    return store.connect(load_config(config).store.database, read_only=True)


def test_signed_out_session_has_only_the_sign_in_page(demo_site: Path, open_app: OpenApp) -> None:
    at = open_app(demo_site)
    assert_clean(at)
    assert titles(at) == ["gpumeter"]
    for page in ALL_PAGES:
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(page_path(page))


@pytest.mark.parametrize("user", sorted(REACHABLE))
def test_each_role_reaches_exactly_its_pages(user: str, demo_site: Path, open_app: OpenApp) -> None:
    at = open_app(demo_site, user)
    assert_clean(at)
    assert titles(at) == [TITLES[REACHABLE[user][0]]]  # the role's first page opens first
    for page in ALL_PAGES:
        if page in REACHABLE[user]:
            at.switch_page(page_path(page)).run()
            assert_clean(at)
            assert titles(at) == [TITLES[page]]
        else:
            with pytest.raises(ValueError, match="Could not find a navigation page"):
                at.switch_page(page_path(page))


def test_wrong_password_is_refused_on_the_page(demo_site: Path, open_app: OpenApp) -> None:
    at = open_app(demo_site, "fin", password="not the password at all")
    assert not at.exception
    assert [e.value for e in at.error] == ["unknown user or wrong password"]
    assert titles(at) == ["gpumeter"]


def test_finance_figures_match_the_store(demo_site: Path, open_app: OpenApp) -> None:
    at = open_app(demo_site, "fin")
    at.switch_page(page_path(Page.FINANCE)).run()
    assert_clean(at)
    con = read(demo_site)
    try:
        rows = con.execute("SELECT kind, net FROM billing_documents WHERE period = ?", [MONTH]).fetchall()
        paid = con.execute("SELECT number FROM stripe_documents WHERE payment_status = 'paid'").fetchall()
    finally:
        con.close()
    revenue = sum((-net if kind == "credit_note" else net for kind, net in rows), Decimal(0))
    assert metric(at, "Revenue issued, all months") == f"EUR {revenue:,.2f}"
    assert metric(at, "Credit notes issued") == "1"
    invoices = next(d.value for d in at.dataframe if "payment_status" in d.value.columns)
    assert len(invoices) == len(rows)
    statuses = dict(zip(invoices["number"], invoices["payment_status"], strict=True))
    assert statuses[paid[0][0]] == "paid"
    assert sorted(set(statuses.values())) == ["not sent to Stripe", "open", "paid"]
    labels = [b.label for b in at.get("download_button")]
    assert any(label.startswith("Download GM-2026-") and label.endswith(".pdf") for label in labels), labels
    assert "Download revenue by site (CSV)" in labels


def test_finance_by_site_adds_up_to_the_invoiced_cents(demo_site: Path, open_app: OpenApp) -> None:
    at = open_app(demo_site, "ada")
    by_site = next(d.value for d in at.dataframe if "site" in d.value.columns and "net_eur" in d.value.columns)
    by_month = next(d.value for d in at.dataframe if "month" in d.value.columns and "net_eur" in d.value.columns)
    assert sum(by_site["net_eur"], Decimal(0)) == sum(by_month["net_eur"], Decimal(0))
    assert len(by_site) > 1


def test_unbilled_usage_of_a_month_not_yet_invoiced(demo_site: Path, open_app: OpenApp) -> None:
    """Remove the month's documents: the page prices what invoicing would issue, via billing —
    the nets the removed documents carried (the demo's contracts included: a reservation
    billed whether used or not, spot usage at spot rates, a promotional credit taken off
    before VAT, as revenue counts it), since the usage has not moved."""
    cfg = load_config(demo_site)
    con = store.connect(cfg.store.database)
    try:
        (lines,) = con.execute(
            "SELECT sum(CASE WHEN d.kind = 'credit_note' THEN -l.amount ELSE l.amount END) "
            "FROM billing_documents d JOIN billing_document_lines l USING (number) WHERE d.period = ?",
            [MONTH],
        ).fetchone() or (None,)
        (allowed,) = con.execute(
            "SELECT coalesce(sum(CASE WHEN d.kind = 'credit_note' THEN -c.amount ELSE c.amount END), 0) "
            "FROM billing_documents d JOIN billing_document_credits c USING (number) "
            "WHERE d.period = ? AND c.role = 'allowance'",
            [MONTH],
        ).fetchone() or (None,)
        kinds = {k for (k,) in con.execute("SELECT DISTINCT kind FROM billing_document_lines").fetchall()}
        con.execute("DELETE FROM billing_document_credits")
        con.execute("DELETE FROM billing_document_lines")
        con.execute("DELETE FROM billing_documents")
    finally:
        con.close()
    assert {"reservation", "spot"} <= kinds, kinds
    assert allowed > 0  # the demo's promotional credit was drawn in this month
    expected = lines - allowed
    at = open_app(demo_site, "fin")
    select(at, "finance-unbilled-month", MONTH)
    assert_clean(at)
    assert metric(at, f"Unbilled so far, {MONTH}") == f"EUR {expected:,.2f}"
    assert expected > 0


def test_utilisation_figures_match_the_store(demo_site: Path, open_app: OpenApp) -> None:
    at = open_app(demo_site, "comp")
    at.switch_page(page_path(Page.UTILISATION)).run()
    assert_clean(at)
    con = read(demo_site)
    try:
        held_ns, busy_ns, energy_uj = con.execute(
            "SELECT sum(gpu_ns), sum(busy_ns), sum(energy_uj) FROM usage "
            "WHERE window_start >= '2026-10-01T00:00:00Z' AND window_start < '2026-11-01T00:00:00Z'"
        ).fetchall()[0]
        gaps = report.gaps(con, MONTH, 15_000)
    finally:
        con.close()
    assert metric(at, "GPU-hours held") == f"{held_ns / 3.6e12:,.1f}"
    assert metric(at, "GPU-hours busy") == f"{busy_ns / 3.6e12:,.1f}"
    assert metric(at, "Energy") == f"{energy_uj / 3.6e12:,.1f} kWh"
    assert gaps.height > 0  # the simulated fleet has exporter outages
    all_gaps = next(d.value for d in at.dataframe if "uuid" in d.value.columns and "minutes" in d.value.columns)
    assert len(all_gaps) == gaps.height


def test_compliance_shows_every_violation_with_evidence(demo_site: Path, open_app: OpenApp) -> None:
    at = open_app(demo_site, "comp")
    assert_clean(at)
    cfg = load_config(demo_site)
    con = read(demo_site)
    try:
        jobs = report.job_month(con, MONTH, report.allowed_set(cfg.audit.allowed_countries))
    finally:
        con.close()
    outside = jobs.filter(~jobs["in_eu"])
    assert outside.height > 0
    assert metric(at, "Jobs inside") == f"{(jobs.height - outside.height) / jobs.height:.2%}"
    findings = sum(len(f) for f in outside["findings"].to_list())
    assert metric(at, "Findings") == str(findings)
    violations = next(d.value for d in at.dataframe if "finding" in d.value.columns)
    assert len(violations) == findings
    hosts = violations[violations["finding"] == "host_outside"]
    assert len(hosts) > 0
    assert hosts["country"].notna().all() and hosts["first_window"].notna().all() and hosts["host"].notna().all()
    assert set(hosts["country"]) <= {"US", "CH"}
    data = violations[violations["finding"].str.startswith("data")]
    assert data["data_location"].notna().all()
    assert any("local log verifies" in s.value for s in at.success), [s.value for s in at.success]
    keys = next(d.value for d in at.dataframe if "fingerprint" in d.value.columns)
    assert len(keys) == 1 and keys["fingerprint"][0].startswith("SHA256:")


def test_compliance_reports_a_log_that_no_longer_verifies(demo_site: Path, open_app: OpenApp) -> None:
    cfg = load_config(demo_site)
    con = store.connect(cfg.store.database)
    try:
        con.execute("UPDATE audit_entries SET entry = entry || ' '::BLOB WHERE idx = 3")
    finally:
        con.close()
    at = open_app(demo_site, "comp")
    assert not at.exception
    assert any("does NOT verify" in e.value for e in at.error)
    assert any("entry 3" in m.value for m in at.markdown)


def test_auditor_scopes(demo_site: Path, open_app: OpenApp) -> None:
    scoped = open_app(demo_site, "aud-laguna")
    assert_clean(scoped)
    box = scoped.selectbox(key="auditor-tenant")
    assert box.options == [f"tenant {SCOPED_TENANT}"] and box.disabled
    assert scoped.selectbox(key="auditor-month").value == MONTH
    full = open_app(demo_site, "aud")
    box = full.selectbox(key="auditor-tenant")
    assert box.options[0] == "the whole log" and f"tenant {SCOPED_TENANT}" in box.options and not box.disabled
    button = next(b for b in full.get("download_button") if b.label == "Build and download bundle")
    assert not button.disabled
    # the page tells auditors to pin the log key or a policy, and shows the current key to compare with theirs
    assert any("never the copies inside the bundle" in c.value and "--policy FILE" in c.value for c in full.caption)
    cfg = load_config(demo_site)
    ring = keys.load_keyring(cfg.audit.signing_key)
    assert ring.current is not None
    vkey = ring.current.verifier(cfg.audit.origin).vkey
    assert [c.value for c in full.code] == [f"gpumeter audit verify gpumeter-audit-{MONTH}-log.zip --key '{vkey}'"]
    assert any("No witnesses are configured" in i.value for i in full.info)  # the demo's stopped with it
    assert any("times are the operator's clock" in c.value for c in full.caption)  # the demo has no TSA


def test_auditor_page_names_the_witnesses_to_pin(demo_site: Path, open_app: OpenApp, tmp_path: Path) -> None:
    text = demo_site.read_text()
    ws = [(name, witness.init_witness(tmp_path / name, f"{name}.example.eu/witness").vkey) for name in ("w1", "w2")]
    rows = ", ".join(f'{{ name = "{n}", url = "http://127.0.0.1:9/{n}", vkey = "{v}" }}' for n, v in ws)
    demo_site.write_text(text.replace("\n[audit]\n", f"\n[audit]\nwitnesses = [{rows}]\nquorum = 2\n"))
    cfg = load_config(demo_site)
    at = open_app(demo_site, "aud")
    assert_clean(at)
    ring = keys.load_keyring(cfg.audit.signing_key)
    assert ring.current is not None
    vkey = ring.current.verifier(cfg.audit.origin).vkey
    # named, with their keys, as --witness options and as a tlog-policy
    assert [c.value for c in at.code] == [
        f"gpumeter audit verify gpumeter-audit-{MONTH}-log.zip --key '{vkey}'",
        f"gpumeter audit verify gpumeter-audit-{MONTH}-log.zip --key '{vkey}' "
        f"--witness '{ws[0][1]}' --witness '{ws[1][1]}' --quorum 2",
        cosign.policy_text(cfg).rstrip("\n"),  # the bundle's policy.txt; st.code drops the last newline
    ]
    said = next(m.value for m in at.markdown if m.value.startswith("**Witnesses.**"))
    assert "all of (w1, w2) cosigned it" in said and "from the witness itself" in said
    assert f"**w1** `{ws[0][1]}`" in said and f"**w2** `{ws[1][1]}`" in said
    assert not at.info


def test_auditor_page_warns_when_a_bundle_was_built_while_the_witnesses_were_down(
    demo_site: Path, open_app: OpenApp, tmp_path: Path
) -> None:
    """A bundle built while the witnesses do not answer carries an uncosigned checkpoint, which
    `gpumeter audit verify` under the witness policy refuses: the page says so, and why."""
    text = demo_site.read_text()
    ws = [(name, witness.init_witness(tmp_path / name, f"{name}.example.eu/witness").vkey) for name in ("w1", "w2")]
    rows = ", ".join(f'{{ name = "{n}", url = "http://127.0.0.1:9/{n}", vkey = "{v}" }}' for n, v in ws)
    demo_site.write_text(text.replace("\n[audit]\n", f"\n[audit]\nwitnesses = [{rows}]\nquorum = 2\n"))
    cfg = load_config(demo_site)
    viewer = Viewer("aud", Role.AUDITOR, None)
    built = build_bundle(StoreAccess(cfg.store.database), cfg, PASSPHRASE, viewer, MONTH, None)
    at = open_app(demo_site, "aud")
    assert not at.exception
    warned = [w.value for w in at.warning if "cosignature" in w.value]
    assert len(warned) == 1, [w.value for w in at.warning]
    assert f"checkpoint size {built.checkpoint_size}" in warned[0]
    assert "0 of the 2 witness cosignatures" in warned[0]
    assert "w1:" in warned[0] and "w2:" in warned[0]  # each witness that failed, with why
    assert "refuses it" in warned[0]


def test_auditor_without_passphrase_cannot_sign(demo_site: Path, open_app: OpenApp) -> None:
    at = open_app(demo_site, "aud", signing=False)
    assert not at.exception
    assert any("GPUMETER_AUDIT_PASSPHRASE" in w.value for w in at.warning)
    button = next(b for b in at.get("download_button") if b.label == "Build and download bundle")
    assert button.disabled


def test_access_page_lists_users_and_refusals(demo_site: Path, open_app: OpenApp) -> None:
    open_app(demo_site, "fin", password="wrong password, twice over")
    at = open_app(demo_site, "ada")
    at.switch_page(page_path(Page.ACCESS)).run()
    assert_clean(at)
    users, refusals = (d.value for d in at.dataframe)
    # "admin": the demo's own
    assert sorted(users["name"]) == ["ada", "admin", "aud", "aud-laguna", "comp", "fin", "ten-laguna"]
    assert "password_hash" not in users.columns
    assert list(refusals[["name", "reason"]].itertuples(index=False, name=None)) == [("fin", "bad_password")]


def test_a_removed_user_is_signed_out_at_the_next_run(demo_site: Path, open_app: OpenApp) -> None:
    at = open_app(demo_site, "fin")
    assert titles(at) == ["Finance"]
    con = store.connect(load_config(demo_site).store.database)
    try:
        store.run(con, "dash_user_delete", {"name": "fin"})
    finally:
        con.close()
    at.run()
    assert titles(at) == ["gpumeter"]


def test_a_fresh_month_with_no_data(demo_site: Path, open_app: OpenApp) -> None:
    """December has been metered (one empty window) but nothing ran and nothing was billed."""
    con = store.connect(load_config(demo_site).store.database)
    try:
        mark_collected(con, [(datetime(2026, 12, 1, tzinfo=UTC), 0, "empty")])
    finally:
        con.close()
    at = open_app(demo_site, "ada")
    for page, key in (
        (Page.UTILISATION, "util-month"),
        (Page.COMPLIANCE, "compliance-month"),
        (Page.AUDITOR, "auditor-month"),
    ):
        at.switch_page(page_path(page)).run()
        assert at.selectbox(key=key).value == "2026-12"  # the newest metered month opens first
        assert_clean(at)
    at.switch_page(page_path(Page.UTILISATION)).run()
    assert metric(at, "GPU-hours held") == "0.0"
    assert any("No metered usage in 2026-12" in i.value for i in at.info)
    at.switch_page(page_path(Page.COMPLIANCE)).run()
    assert metric(at, "Jobs inside") == "n/a"
    at.switch_page(page_path(Page.FINANCE)).run()
    select(at, "finance-unbilled-month", "2026-12")
    assert_clean(at)
    # nothing ran, but the demo's reservation (to 2027-10) bills December whether used or not
    (res,) = tomllib.loads((demo_site.parent / "contracts.toml").read_text(encoding="utf-8"))["reservation"]
    committed = res["gpus"] * 24 * 31 * Decimal(res["eur_per_gpu_hour"])
    assert res["end"] > "2027-01-01" and metric(at, "Unbilled so far, 2026-12") == f"EUR {committed:,.2f}"


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_every_page_on_an_empty_store(page: Page, empty_site: Path, open_app: OpenApp) -> None:
    at = open_app(empty_site, "ada")
    at.switch_page(page_path(page)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert titles(at) == [TITLES[page]]
    if page is Page.FINANCE:
        assert any("No invoice has been issued yet" in i.value for i in at.info)
    if page is Page.COMPLIANCE:  # no key ring, no checkpoint: said, not crashed
        assert any("no signed checkpoint" in w.value for w in at.warning)
        assert any("could not be checked" in w.value for w in at.warning)


def test_store_without_migrations_is_one_line(tmp_path: Path, open_app: OpenApp) -> None:
    from testing.stores import SITE_CONFIG

    (tmp_path / "gpumeter.toml").write_text(SITE_CONFIG, encoding="utf-8")
    at = open_app(tmp_path / "gpumeter.toml")
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"no database at {tmp_path / 'var' / 'gpumeter.duckdb'}; run `gpumeter init` first"
    ]


def test_sign_in_with_oidc_maps_the_identity_to_a_user(tmp_path: Path, open_app: OpenApp) -> None:
    from tests.dashboards.fixtures import OIDC_USER, build_oidc

    config = build_oidc(tmp_path / "oidc")
    known = open_app(config, identity={"is_logged_in": True, "email": OIDC_USER, "email_verified": True, "name": "Ops"})
    assert_clean(known)
    assert titles(known) == ["Compliance"]
    stranger = open_app(config, identity={"is_logged_in": True, "email": "mallory@example.com", "email_verified": True})
    assert not stranger.exception
    assert titles(stranger) == ["gpumeter"]
    assert any("mallory@example.com is not a dashboard user" in e.value for e in stranger.error)
    con = store.connect(load_config(config).store.database, read_only=True)
    try:
        assert store.run(con, "dash_login_failures", {"limit": 10}).fetchall()[0][1:] == (
            "mallory@example.com",
            "local",
            "oidc_unknown",
        )
    finally:
        con.close()
    logged_out = open_app(config, identity={"is_logged_in": False})
    assert not logged_out.exception
    assert [b.label for b in logged_out.button] == ["Sign in with your identity provider"]


def test_sign_in_form_never_echoes_the_password(demo_site: Path, open_app: OpenApp) -> None:
    at = open_app(demo_site)
    sign_in(at, "fin", "hunter2-hunter2-hunter2")
    assert not any("hunter2" in str(e.value) for e in [*at.error, *at.markdown, *at.caption])


def test_every_page_opens_on_the_latest_month_with_data(demo_site: Path, open_app: OpenApp) -> None:
    """The store's data ends before the current month: no page opens on an empty month."""
    assert f"{datetime.now(UTC):%Y-%m}" > MONTH
    at = open_app(demo_site, "ada")
    for page, key in (
        (Page.FINANCE, "finance-unbilled-month"),
        (Page.UTILISATION, "util-month"),
        (Page.COMPLIANCE, "compliance-month"),
        (Page.AUDITOR, "auditor-month"),
    ):
        at.switch_page(page_path(page)).run()
        assert_clean(at)
        assert at.selectbox(key=key).value == MONTH, page
