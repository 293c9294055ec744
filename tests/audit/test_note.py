"""C2SP signed notes, checkpoints and tlog-proof files against the public vectors."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import checkpoint as ckpt
from audit import merkle, note, proof
from audit.errors import KeyFileError, VerificationError
from audit.pinning import PolicyTrust, pinned_keys
from tests.audit.vectors import b64, vector, vector_text

GO = vector("signed-note/go-sumdb-note.json")
VK = {name: note.parse_vkey(k["vkey"]) for name, k in GO["keys"].items()}
DERIVED = vector("derived/gpumeter-style-log.json")
LOG_VKEY = note.parse_vkey(DERIVED["log_key"]["vkey"])
WITNESS_VKEY = note.parse_vkey(DERIVED["witness"]["vkey"])
ORIGIN = DERIVED["checkpoint"]["origin"]


def pinned(origin: str = ORIGIN, witnesses: tuple[str, ...] = (), quorum: int = 0) -> PolicyTrust:
    """The derived log's key pinned as a tlog-policy, with ``quorum`` of ``witnesses``."""
    return pinned_keys([LOG_VKEY.vkey], origin, witnesses=witnesses, quorum=quorum)


def test_vkeys_parse_to_published_ids_and_keys() -> None:
    for name, k in GO["keys"].items():
        v = VK[name]
        assert (v.name, v.key_id.hex(), v.public_key.hex()) == (name, k["key_id_hex"], k["ed25519_public_key_hex"])
        assert v.vkey == k["vkey"]
    ex = vector("signed-note/c2sp-signed-note-example.json")
    v = note.parse_vkey(ex["vkey"])
    assert (v.key_id.hex(), v.public_key.hex()) == (ex["key_id_hex"], ex["ed25519_public_key_hex"])
    sum_db = vector("checkpoints/checkpoints.json")["sum_golang_org"]
    v = note.parse_vkey(sum_db["vkey"])  # its base64 holds '+': split on the first two only
    assert (v.name, v.key_id.hex(), v.public_key.hex()) == (
        "sum.golang.org",
        sum_db["key_id_hex"],
        sum_db["ed25519_public_key_hex"],
    )
    assert LOG_VKEY.key_id.hex() == DERIVED["log_key"]["key_id_hex"]
    assert WITNESS_VKEY.sig_type == 4 and WITNESS_VKEY.key_id.hex() == DERIVED["witness"]["key_id_hex"]


def _mutations(text: str) -> list[str]:
    out = [text[i:j] for i in range(len(text)) for j in range(i, len(text) + 1) if (i, j) != (0, len(text))]
    out += [text[:i] + chr(ord(text[i]) + 1) + text[i + 1 :] for i in range(len(text))]
    return out


def test_bad_vkeys_and_every_substring_or_increment_are_rejected() -> None:
    for bad in GO["bad_vkeys"]:
        if "vkey" in bad:
            with pytest.raises(KeyFileError):
                note.parse_vkey(bad["vkey"])
    good = GO["keys"]["PeterNeumann"]["vkey"]
    for bad_text in _mutations(good):
        with pytest.raises(KeyFileError):
            note.parse_vkey(bad_text)
    signer = GO["keys"]["PeterNeumann"]["signer_key"]
    assert note.parse_signer_key(signer).vkey == good
    for bad_text in _mutations(signer):
        with pytest.raises(KeyFileError):
            note.parse_signer_key(bad_text)


def test_signing_reproduces_go_and_derived_signatures_byte_for_byte() -> None:
    peter = note.parse_signer_key(GO["keys"]["PeterNeumann"]["signer_key"])
    assert note.sign_note(GO["note_text"], [peter]) == GO["signed_note_peter"]
    assert peter.sign(GO["note_text"]).line() == GO["signature_lines"]["PeterNeumann"] + "\n"
    assert (vector_text("signed-note/peterneumann.note")) == GO["signed_note_peter"]
    seed = bytes.fromhex(DERIVED["log_key"]["ed25519_seed_hex"])
    log = note.Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(seed))
    assert log.vkey == DERIVED["log_key"]["vkey"]
    assert note.sign_note(DERIVED["checkpoint"]["body"], [log]) == DERIVED["checkpoint"]["signed"]
    wseed = bytes.fromhex(DERIVED["witness"]["ed25519_seed_hex"])
    witness = note.Signer("witness.example.eu/w1", Ed25519PrivateKey.from_private_bytes(wseed), note.SIG_COSIGNATURE_V1)
    cosig = witness.sign(DERIVED["checkpoint"]["body"], timestamp=DERIVED["witness"]["timestamp"])
    assert cosig.line() == DERIVED["witness"]["signature_line"] + "\n"
    assert witness.vkey == DERIVED["witness"]["vkey"]


@pytest.mark.parametrize("case", GO["open_cases"], ids=[c["desc"] for c in GO["open_cases"]])
def test_go_open_cases(case: dict) -> None:  # type: ignore[type-arg]
    if "message" in case:
        msg: bytes | str = case["message"]
    elif "message_hex" in case:
        msg = bytes.fromhex(case["message_hex"])
    else:
        assert case["message_construct"].startswith("note_text + '\\n' + (signature_lines.PeterNeumann")
        msg = GO["note_text"] + "\n" + (GO["signature_lines"]["PeterNeumann"] + "\n") * 101
    verifiers = [VK[n] for n in case["verifiers"]]
    if case["expect"] == "reject":
        with pytest.raises(VerificationError):
            note.open_note(msg, verifiers)
        return
    opened = note.open_note(msg, verifiers)
    assert [s.name for s, _ in opened.verified] == case["verified"]
    assert len(opened.unverified) == len(case["unverified"])
    assert opened.text == GO["note_text"]


def test_verifier_lookup_cases() -> None:
    text = GO["note_text"]
    peter_line = GO["signature_lines"]["PeterNeumann"]
    for case in GO["verifier_lookup_cases"]:
        sig_b64 = peter_line.split(" ")[-1] if case["name"] == "PeterNeumann" else "AAAA"
        raw = bytearray(b64(sig_b64)) if sig_b64 != "AAAA" else bytearray(68)
        raw[:4] = bytes.fromhex(case["key_id_hex"])
        line = f"— {case['name']} {note.b64encode(bytes(raw))}\n"
        verifiers = [VK[n] for n in case["list"]]
        if case["expect"] == case["name"]:
            opened = note.open_note(text + "\n" + line, verifiers)
            assert opened.verified[0][1].name == case["name"]
        else:
            with pytest.raises(VerificationError) as err:
                note.open_note(text + "\n" + line, verifiers)
            word = case["expect"].split(" ")[0]
            assert word in ("unknown", "ambiguous")
            assert ("ambiguous" in str(err.value)) == (word == "ambiguous")


def test_c2sp_example_note_verifies_byte_exact() -> None:
    ex = vector("signed-note/c2sp-signed-note-example.json")
    raw = vector_text("signed-note/c2sp-example.note")
    assert raw == ex["signed_note"]
    opened = note.open_note(raw.encode(), [note.parse_vkey(ex["vkey"])])
    assert opened.text == ex["note_text"]
    parsed = note.parse_note(raw)
    assert parsed.format() == raw


def test_every_one_character_edit_of_a_signed_note_is_rejected() -> None:
    signed = DERIVED["checkpoint"]["signed"]
    for i in range(len(signed)):
        for delta in (1, -1):
            c = chr(max(0, ord(signed[i]) + delta))
            edited = signed[:i] + c + signed[i + 1 :]
            if edited == signed:
                continue
            with pytest.raises(VerificationError):
                ckpt.open_checkpoint(edited, [LOG_VKEY], origin=ORIGIN)


# ------------------------------------------------------------------------------ checkpoints


def test_sum_golang_org_checkpoint_origin_is_not_the_key_name() -> None:
    s = vector("checkpoints/checkpoints.json")["sum_golang_org"]
    text = vector_text("checkpoints/sum-golang-org-6476701.note")
    assert text == s["signed_checkpoint"]
    key = note.parse_vkey(s["vkey"])
    for case in s["cases"]:
        if case["expect"] == "ok":
            signed = ckpt.open_checkpoint(text, [key], origin=case["expected_origin"])
            assert signed.checkpoint.size == s["tree_size"]
            assert signed.checkpoint.root.hex() == s["root_hex"]
        else:
            with pytest.raises(VerificationError, match="origin"):
                ckpt.open_checkpoint(text, [key], origin=case["expected_origin"])


def test_go_format_tree_golden_and_bad_bodies() -> None:
    g = vector("checkpoints/checkpoints.json")["go_tlog_format_tree"]
    root = merkle.leaf_hash(b"hello world")
    cp = ckpt.Checkpoint("go.sum database tree", g["tree_size"], root)
    assert cp.body() == g["unsigned_body"]
    assert ckpt.parse_checkpoint(g["unsigned_body"], origin="go.sum database tree") == cp
    for bad in g["bad_bodies"]:
        with pytest.raises(VerificationError):
            ckpt.parse_checkpoint(bad["body"], origin="go.sum database tree")


@pytest.mark.parametrize(
    "body",
    [
        "o\n08\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",  # leading zero
        "o\n-1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        "o\n 1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        "o\n1\nZG9uJ3QgY2FyZSAy\n",  # 12-byte root
        "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n",  # non-canonical padding bits
        "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",  # no final newline
        "o\n1\n",
        "\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        "o\n0\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",  # size 0, not the empty root
        "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n",
        "o\n99999999999999999999\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
    ],
)
def test_checkpoint_bodies_rejected(body: str) -> None:
    with pytest.raises(VerificationError):
        ckpt.parse_checkpoint(body)


def test_checkpoint_extension_lines_are_kept_and_size_zero_needs_empty_root() -> None:
    body = "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n"
    cp = ckpt.parse_checkpoint(body)
    assert cp.extensions == ("ext",) and cp.root == merkle.EMPTY_ROOT and cp.body() == body


def test_c2sp_spec_examples_parse_but_cannot_verify() -> None:
    ex = vector("checkpoints/c2sp-spec-examples.json")["checkpoint_with_cosignature"]
    n = note.parse_note(ex["note"])
    cp = ckpt.parse_checkpoint(n.text, origin=ex["origin"])
    assert (cp.size, note.b64encode(cp.root)) == (ex["tree_size"], ex["root_b64"])
    assert n.signatures[0].key_hex == ex["log_signature"]["key_id_hex"]
    assert len(n.signatures[0].data) == ex["log_signature"]["signature_len"]
    co = n.signatures[1]
    assert (
        co.key_hex == ex["cosignature"]["key_id_hex"] and len(co.key_id + co.data) == ex["cosignature"]["decoded_len"]
    )
    assert int.from_bytes(co.data[:8], "big") == ex["cosignature"]["timestamp"]
    assert (
        note.Signer.message(n.text.encode(), ex["cosignature"]["timestamp"]).decode()
        == ex["cosigned_message_for_this_checkpoint"]
    )
    sum_key = note.parse_vkey(vector("checkpoints/checkpoints.json")["sum_golang_org"]["vkey"])
    with pytest.raises(VerificationError, match="no verifiable"):  # same key ID, other name: unknown
        ckpt.open_checkpoint(ex["note"], [sum_key], origin=ex["origin"])


def test_derived_checkpoint_with_witness_cosignature() -> None:
    text = vector_text("derived/checkpoint-8.note")
    assert text == DERIVED["checkpoint_with_cosignature"]
    signed = pinned(witnesses=(WITNESS_VKEY.vkey,), quorum=1).verify_checkpoint(text)
    assert signed.checkpoint.root.hex() == DERIVED["checkpoint"]["root_hex"]
    assert [v.name for v in signed.cosigners] == ["witness.example.eu/w1"]
    assert signed.opened.verified[1][1].cosigned_at(signed.opened.verified[1][0].data) == 1700000000
    ckpt.open_checkpoint(text, [LOG_VKEY], origin=ORIGIN)  # opening checks the log signature only
    pinned().verify_checkpoint(text)  # quorum none: the witness line is ignored
    other = note.Signer("witness.example.eu/w2", Ed25519PrivateKey.generate(), note.SIG_COSIGNATURE_V1).vkey
    with pytest.raises(VerificationError, match="witness quorum not met"):  # w1's cosignature is not w2's
        pinned(witnesses=(other,), quorum=1).verify_checkpoint(text)
    with pytest.raises(VerificationError, match="witness quorum not met"):
        pinned(witnesses=(WITNESS_VKEY.vkey, other), quorum=2).verify_checkpoint(text)


@pytest.mark.parametrize("case", DERIVED["negative_cases"], ids=[c["desc"] for c in DERIVED["negative_cases"]])
def test_derived_negative_cases(case: dict) -> None:  # type: ignore[type-arg]
    if "note" in case:
        keys = [note.parse_vkey(k) for k in case.get("vkeys", case.get("log_vkeys", []))]
        with pytest.raises(VerificationError):
            ckpt.open_checkpoint(case["note"], keys, origin=ORIGIN)
        return
    text = vector_text("derived/leaf-5.tlog-proof")
    leaf = bytes.fromhex(DERIVED["tlog_proof"]["leaf_input_hex"])
    if "index" in case:
        text = text.replace("index 5\n", f"index {case['index']}\n")
        with pytest.raises(VerificationError):
            proof.verify_proof(text, leaf, pinned())
    else:
        with pytest.raises(VerificationError, match="origin"):
            proof.verify_proof(text, leaf, pinned(case["expected_origin"]))


# ------------------------------------------------------------------------------ tlog-proof


def test_leaf_5_tlog_proof_parses_verifies_and_reformats() -> None:
    t = DERIVED["tlog_proof"]
    text = vector_text("derived/leaf-5.tlog-proof")
    assert text == t["text"]
    p = proof.parse_proof(text)
    assert p.index == 5 and [h.hex() for h in p.path] == t["inclusion_path_hex"]
    assert proof.format_proof(p) == text
    got = proof.verify_proof(text, bytes.fromhex(t["leaf_input_hex"]), pinned(witnesses=(WITNESS_VKEY.vkey,), quorum=1))
    assert got.leaf_hash.hex() == t["leaf_hash_hex"]
    with pytest.raises(VerificationError):
        proof.verify_proof(text, b"\x40\x41\x42\x44", pinned())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
        lambda t: t.replace("index 5", "index 05"),
        lambda t: t.replace("index 5", "index  5"),
        lambda t: t.replace(
            "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=", "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms"
        ),
        lambda t: t.replace("vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=", "vBoGQ7EuTS18d5GPROD095qDi2z57Ftc"),
        lambda t: t.replace(
            "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=", "vBoG!7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms="
        ),
        lambda t: t.replace("index 5\n", "index 5\n" + "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=\n" * 65),
        lambda t: t.replace("index 5\n", "extra ???\nindex 5\n"),
        lambda t: t.replace("\n\n", "\n", 1),
        lambda t: t.replace("index 5\n", "index 5\x07\n"),
    ],
)
def test_malformed_tlog_proofs_are_rejected(mutate) -> None:  # type: ignore[no-untyped-def]
    text = mutate(vector_text("derived/leaf-5.tlog-proof"))
    with pytest.raises(VerificationError):
        proof.verify_proof(text, bytes.fromhex("40414243"), pinned())


def test_extra_line_round_trips_and_is_not_authenticated() -> None:
    text = vector_text("derived/leaf-5.tlog-proof").replace("index 5\n", "extra aGVsbG8=\nindex 5\n")
    p = proof.parse_proof(text)
    assert p.extra == b"hello" and proof.format_proof(p) == text
    proof.verify_proof(text, bytes.fromhex("40414243"), pinned())
