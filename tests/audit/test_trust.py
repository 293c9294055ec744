"""Trust policies (C2SP tlog-policy): parsing, quorum rules, checkpoints, and hostile files."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import trust
from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.errors import TrustPolicyError, VerificationError
from audit.merkle import EMPTY_ROOT
from audit.note import SIG_COSIGNATURE_V1, Signer, format_note, parse_note
from gpumeter.config import load_config
from gpumeter.errors import ConfigError
from tests.audit.vectors import vector

DERIVED = vector("derived/gpumeter-style-log.json")
ORIGIN = DERIVED["checkpoint"]["origin"]
LOG_VKEY = DERIVED["log_key"]["vkey"]
W1_VKEY = DERIVED["witness"]["vkey"]


def cosigner(name: str) -> Signer:
    return Signer(name, Ed25519PrivateKey.generate(), SIG_COSIGNATURE_V1)


W = {n: cosigner(f"witness.example.eu/{n}") for n in ("X1", "X2", "X3", "Y1", "Y2", "Y3")}

# The C2SP example (two organisations, two levels of groups), with real keys in place of <vkey>.
C2SP_EXAMPLE = f"""log {LOG_VKEY}

witness X1 {W["X1"].vkey}
witness X2 {W["X2"].vkey}
witness X3 {W["X3"].vkey}
group X-witnesses 2 X1 X2 X3

witness Y1 {W["Y1"].vkey}
witness Y2 {W["Y2"].vkey}
witness Y3 {W["Y3"].vkey}
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
"""


def test_the_c2sp_example_quorum_needs_two_x_and_one_y() -> None:
    p = trust.parse_policy(C2SP_EXAMPLE)
    assert [w.name for w in p.witnesses] == ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
    assert [(g.name, g.threshold) for g in p.groups] == [("X-witnesses", 2), ("Y-witnesses", 1), ("X-and-Y", 2)]
    assert p.satisfied({"X1", "X3", "Y2"})
    assert not p.satisfied({"X1", "Y1", "Y2", "Y3"})  # one X is not enough
    assert not p.satisfied({"X1", "X2", "X3"})  # no Y
    assert not p.satisfied({"X1", "X-witnesses", "Y-witnesses"})  # group names are not witnesses
    assert p.describe_quorum() == "all of (2 of (X1, X2, X3), any of (Y1, Y2, Y3))"


def test_format_round_trips_and_whitespace_and_comments_are_ignored() -> None:
    p = trust.parse_policy(C2SP_EXAMPLE)
    assert trust.parse_policy(p.format("a comment\nover two lines")) == p
    spaced = "  # leading comment\n\t\n" + C2SP_EXAMPLE.replace(" ", " \t ").replace("\n", "  \n")
    assert trust.parse_policy(spaced) == p
    assert trust.parse_policy(f"log {LOG_VKEY} https://log.example.eu\nquorum none").logs[0].url == (
        "https://log.example.eu"
    )


def signed_checkpoint(*cosigners: Signer, time: int = 1_800_000_000) -> str:
    body = Checkpoint(ORIGIN, 8, bytes.fromhex(DERIVED["checkpoint"]["root_hex"])).body()
    note = parse_note(DERIVED["checkpoint"]["signed"])
    return format_note(body, [*note.signatures, *(c.sign(body, timestamp=time) for c in cosigners)])


def test_check_checkpoint_names_the_log_key_the_cosigners_and_their_times() -> None:
    p = trust.parse_policy(C2SP_EXAMPLE)
    ok = p.check_checkpoint(signed_checkpoint(W["X1"], W["X2"], W["Y3"]), origin=ORIGIN)
    assert ok.passed and ok.quorum_met and ok.findings == ()
    assert ok.log_keys == (LOG_VKEY,) and ok.size == 8
    assert ok.witnesses == ("X1", "X2", "Y3")
    assert {c.time for c in ok.cosignatures} == {datetime.fromtimestamp(1_800_000_000, UTC)}
    assert p.verify_checkpoint(signed_checkpoint(W["X1"], W["X2"], W["Y3"])) == ok

    short = p.check_checkpoint(signed_checkpoint(W["X1"], W["Y3"]))
    assert not short.passed and not short.quorum_met
    assert short.findings == ("witness quorum not met: X1, Y3 cosigned, the policy needs " + ok.quorum,)
    with pytest.raises(VerificationError, match="quorum not met"):
        p.verify_checkpoint(signed_checkpoint(W["X1"], W["Y3"]))


def test_the_derived_vector_cosignature_counts_for_its_witness() -> None:
    p = trust.parse_policy(f"log {LOG_VKEY}\nwitness w1 {W1_VKEY}\nquorum w1\n")
    result = p.verify_checkpoint(DERIVED["checkpoint_with_cosignature"], origin=ORIGIN)
    assert result.witnesses == ("w1",)
    assert result.cosignatures[0].time == datetime.fromtimestamp(DERIVED["witness"]["timestamp"], UTC)
    assert not p.check_checkpoint(DERIVED["checkpoint"]["signed"]).passed  # no cosignature


def test_bad_checkpoints_fail_with_one_finding() -> None:
    p = trust.parse_policy(f"log {LOG_VKEY}\nwitness X1 {W['X1'].vkey}\nquorum X1\n")
    good = signed_checkpoint(W["X1"])
    forged = good.replace("\n8\n", "\n9\n", 1)
    assert p.check_checkpoint(forged).findings[0].startswith("invalid signature for key")
    # a cosignature line of a known witness whose signature is broken rejects the note
    lines = good.split("\n")
    last = lines[-2]
    lines[-2] = last[:-6] + ("AAAA==" if not last.endswith("AAAA==") else "BBBB==")
    assert not p.check_checkpoint("\n".join(lines)).passed
    assert p.check_checkpoint(good, origin="another.example/log").findings[0].startswith("checkpoint origin")
    other_log = Signer("other.example/log", Ed25519PrivateKey.generate())
    refused = p.check_checkpoint(sign_checkpoint(Checkpoint("other.example/log", 0, EMPTY_ROOT), [other_log]))
    assert refused.findings[0].startswith(
        f"note has no verifiable signatures: it is signed by other.example/log+{other_log.verifier.key_id.hex()}, "
        "and the keys given are "
    )
    # an unknown witness's cosignature is ignored, it does not count
    assert not p.check_checkpoint(signed_checkpoint(cosigner("stranger.example/w"))).quorum_met
    # a key of the policy named as the log signs a checkpoint of another origin: not a log signature for it
    assert not trust.parse_policy("quorum none").check_checkpoint(good).passed


def test_quorum_none_needs_no_witness() -> None:
    p = trust.parse_policy(f"log {LOG_VKEY}\nquorum none\n")
    assert p.verify_checkpoint(DERIVED["checkpoint"]["signed"]).quorum_met


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("quorum none\nquorum none\n", 2, "exactly one quorum line"),
        ("log x\nquorum none\n", 1, "log key: verifier key must be"),
        (f"witness w {LOG_VKEY}\nquorum w\n", 1, "must be of type 0x04"),
        (f"log {W1_VKEY}\nquorum none\n", 1, "must be of type 0x01"),
        (f"log {LOG_VKEY}\nlog {LOG_VKEY}\nquorum none\n", 2, "same public key"),
        (f"witness a {W1_VKEY}\nwitness b {W1_VKEY}\nquorum a\n", 2, "same public key"),
        (f"witness a {W1_VKEY}\nwitness a {W['X1'].vkey}\nquorum a\n", 2, "name defined twice"),
        (f"witness none {W1_VKEY}\nquorum none\n", 1, "'none' is reserved"),
        (f"group g any a\nwitness a {W1_VKEY}\nquorum g\n", 1, "defined on an earlier line"),  # forward reference
        (f"quorum a\nwitness a {W1_VKEY}\n", 1, "defined on an earlier line"),
        ("quorum nobody\n", 1, "defined on an earlier line"),
        (f"witness a {W1_VKEY}\ngroup g 2 a\nquorum g\n", 2, "threshold 2 is larger than its 1 member"),
        (f"witness a {W1_VKEY}\ngroup g 0 a\nquorum g\n", 2, "threshold must be"),
        (f"witness a {W1_VKEY}\ngroup g 01 a\nquorum g\n", 2, "threshold must be"),
        (f"witness a {W1_VKEY}\ngroup g 99999999999999999999 a\nquorum g\n", 2, "threshold must be"),
        (f"witness a {W1_VKEY}\ngroup g any a a\nquorum g\n", 2, "lists a member twice"),
        (f"witness a {W1_VKEY}\ngroup g any a\ngroup h any a\nquorum h\n", 3, "one group only"),
        (f"witness a {W1_VKEY}\ngroup g any none\nquorum g\n", 2, "'none' cannot be a group member"),
        (f"witness a {W1_VKEY}\ngroup g any\nquorum g\n", 2, "at least one member"),
        (f"witness a {W1_VKEY}\ngroup g\nquorum g\n", 2, "expected 'group"),
        (f"witness a {W1_VKEY}\ngroup g any a\ngroup g any g\nquorum g\n", 3, "name defined twice"),
        ("quorum\n", 1, "expected 'quorum"),
        ("witness a\nquorum none\n", 1, "expected 'witness"),
        ("logs x\nquorum none\n", 1, "unknown line"),
        ("quorum none\r\n", 1, r"control character U\+000D"),
        (b"# caf\xe9\nquorum none\n", 1, "not valid UTF-8"),
        (f"log {LOG_VKEY}\n", None, "no quorum line"),
    ],
)
def test_malformed_policies_are_refused_naming_the_line(text: str | bytes, line: int | None, message: str) -> None:
    with pytest.raises(TrustPolicyError, match=message) as caught:
        trust.parse_policy(text, source="policy.txt")
    assert caught.value.line == line
    where = "policy.txt" if line is None else f"policy.txt:{line}"
    assert caught.value.explain().startswith(where + ": ")
    assert "\n" not in caught.value.explain()


def test_junk_and_huge_files_are_refused_quickly() -> None:
    junk = "".join(f"junk line {i} with words\n" for i in range(80))
    with pytest.raises(TrustPolicyError, match="unknown line") as caught:
        trust.parse_policy("# ok\n" + junk)
    assert caught.value.line == 2
    with pytest.raises(TrustPolicyError, match="at most 65536 bytes"):
        trust.parse_policy("#" * (trust.MAX_POLICY_BYTES + 1))
    many = "".join(f"witness w{i} {cosigner(f'w{i}.example').vkey}\n" for i in range(trust.MAX_NAMES + 1))
    with pytest.raises(TrustPolicyError, match="more than 256") as caught:
        trust.parse_policy(many + "quorum none\n")
    assert caught.value.line == trust.MAX_NAMES + 1


def test_policy_from_options_and_configuration() -> None:
    two = [W["X1"].vkey, W["X2"].vkey]
    every = trust.build_policy([LOG_VKEY], two)
    assert every.describe_quorum() == "all of (witness.example.eu/X1, witness.example.eu/X2)"
    assert every.satisfied({"witness.example.eu/X1", "witness.example.eu/X2"})
    assert not every.satisfied({"witness.example.eu/X1"})
    one = trust.build_policy([LOG_VKEY], two, 1)
    assert one.satisfied({"witness.example.eu/X2"})
    assert trust.build_policy([LOG_VKEY], two, 0).quorum == "none"
    single = trust.build_policy([LOG_VKEY], [trust.WitnessSpec("eu-auditor", W["X3"].vkey, "http://w.example")], 1)
    assert single.quorum == "eu-auditor" and single.witnesses[0].url == "http://w.example"
    assert trust.parse_policy(single.format()) == single
    # a witness named like the implicit group does not collide with it
    clash = trust.build_policy([LOG_VKEY], [trust.WitnessSpec("witnesses", W["X1"].vkey), W["X2"].vkey], 2)
    assert clash.quorum == "witnesses-quorum" and trust.parse_policy(clash.format()) == clash
    with pytest.raises(TrustPolicyError, match="quorum 3 is not between 0 and the 2") as caught:
        trust.build_policy([LOG_VKEY], two, 3, source="--quorum")
    assert caught.value.explain().startswith("--quorum: ")
    with pytest.raises(TrustPolicyError, match="name defined twice"):
        trust.build_policy([LOG_VKEY], [W["X1"].vkey, W["X1"].vkey])
    with pytest.raises(TrustPolicyError, match="witness name must be"):
        trust.build_policy([LOG_VKEY], [trust.WitnessSpec("two words", W["X1"].vkey)])


W_VKEY = W["X1"].vkey


@pytest.mark.parametrize(
    ("audit", "message"),
    [
        (
            'witnesses = [{ name = "a", url = "http://w", vkey = "V", port = 1 }]',
            "[audit.witnesses[1]] unknown key 'port'",
        ),
        ('witnesses = [{ name = "a", url = "http://w" }]', "[audit.witnesses[1]] lacks vkey"),
        ('witnesses = [{ name = "two words", url = "http://w", vkey = "V" }]', "name must be one word"),
        ('witnesses = [{ name = "none", url = "http://w", vkey = "V" }]', "name must be one word"),
        ('witnesses = [{ name = "a", url = "ftp://w", vkey = "V" }]', "url must be an http"),
        ('witnesses = [{ name = "a", url = "http://w", vkey = "nokey" }]', "vkey must be"),
        (
            'witnesses = [{ name = "a", url = "http://w", vkey = "V" }, { name = "a", url = "http://x", vkey = "V" }]',
            "names a witness twice",
        ),
        ('witnesses = { name = "a" }', "must be a list"),
        ('witnesses = ["a"]', "[audit.witnesses[1]] must be a table"),
        ('witnesses = [{ name = "a", url = "http://w", vkey = "V" }]\nquorum = 2', "from 0 to the 1 witness"),
        ("quorum = -1", "from 0 to the 0 witness"),
        ("quorum = true", "quorum must be a whole number"),
        ('tsa_url = "tsa.example.eu"', "tsa_url must be an http"),
    ],
)
def test_witness_configuration_errors_name_the_file(tmp_path: Path, audit: str, message: str) -> None:
    cfg = tmp_path / "gpumeter.toml"
    cfg.write_text("[audit]\n" + audit.replace('"V"', f'"{W_VKEY}"') + "\n")
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_config(cfg)
    assert caught.value.explain().startswith(f"{cfg}:{caught.value.line}: [audit")


def test_witness_configuration_defaults_to_all_witnesses(tmp_path: Path) -> None:
    cfg = tmp_path / "gpumeter.toml"
    rows = ", ".join(f'{{ name = "{n}", url = "https://{n}.example.eu/", vkey = "{W[n].vkey}" }}' for n in ("X1", "Y1"))
    cfg.write_text(f'[audit]\nwitnesses = [{rows}]\ntsa_url = "https://tsa.example.eu/tsr"\ntsa_cert = "tsa.pem"\n')
    audit = load_config(cfg).audit
    assert [(w.name, w.url) for w in audit.witnesses] == [
        ("X1", "https://X1.example.eu"),
        ("Y1", "https://Y1.example.eu"),
    ]
    assert (
        audit.quorum == 2 and audit.tsa_url == "https://tsa.example.eu/tsr" and audit.tsa_cert == tmp_path / "tsa.pem"
    )
    assert load_config(_write(tmp_path, "[audit]\n")).audit.quorum == 0


def _write(folder: Path, text: str) -> Path:
    path = folder / "other.toml"
    path.write_text(text)
    return path
