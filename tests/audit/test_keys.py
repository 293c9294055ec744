"""The signing key on disk: encrypted, 0600 from creation, clear errors, rotation."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from audit import checkpoint as ckpt
from audit import keys, merkle, note
from audit.errors import KeyFileError, VerificationError
from tests.audit import fleet
from tests.audit.vectors import vector

PASS = "correct horse battery staple"


def test_key_is_created_encrypted_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.key"
    old = os.umask(0)  # even a permissive umask must not widen the file's mode
    try:
        status = keys.ensure_key(path, PASS, fleet.ORIGIN)
    finally:
        os.umask(old)
    assert status.created and stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert PASS.encode() not in pem
    signer = keys.load_signer(path, PASS, fleet.ORIGIN)
    assert str(status) == signer.vkey and status.fingerprint == signer.verifier.fingerprint
    assert PASS not in repr(signer) and "PRIVATE" not in repr(signer)
    ring = keys.load_keyring(path)
    assert [r.public_key for r in ring.records] == [signer.verifier.public_key]
    again = keys.ensure_key(path, PASS, fleet.ORIGIN)  # present: left alone
    assert not again.created and again.vkey == signer.vkey
    assert keys.ensure_key(path, None, fleet.ORIGIN).vkey == signer.vkey  # from the ring, no passphrase


def test_creating_needs_a_passphrase(tmp_path: Path) -> None:
    for missing in (None, ""):
        with pytest.raises(KeyFileError, match="GPUMETER_AUDIT_PASSPHRASE"):
            keys.ensure_key(tmp_path / f"k{missing!r}", missing)
    assert list(tmp_path.iterdir()) == []


def test_wrong_passphrase_is_a_clear_error_without_key_material(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    keys.ensure_key(path, PASS)
    with pytest.raises(KeyFileError) as err:
        keys.load_key(path, "not the passphrase")
    text = str(err.value)
    assert "wrong passphrase" in text and str(path) in text
    assert "BEGIN" not in text and "not the passphrase" not in text and PASS not in text


def test_unsafe_key_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    keys.ensure_key(path, PASS)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        keys.load_key(path, PASS)
    plain = tmp_path / "plain.key"
    seed = vector("derived/gpumeter-style-log.json")["log_key"]
    plain.write_text(seed["private_key_pem_pkcs8_unencrypted"])
    plain.chmod(0o600)
    with pytest.raises(KeyFileError, match="not encrypted"):
        keys.load_key(plain, PASS)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keys.write_key(path, keys.generate_key(), PASS)
    with pytest.raises(KeyFileError, match="gpumeter init"):
        keys.load_key(tmp_path / "absent.key", PASS)


def test_derived_pem_vector_gives_the_published_vkey(tmp_path: Path) -> None:
    log_key = vector("derived/gpumeter-style-log.json")["log_key"]
    key = serialization.load_pem_private_key(log_key["private_key_pem_pkcs8_unencrypted"].encode(), password=None)
    path = tmp_path / "audit.key"
    keys.write_key(path, key, PASS)  # type: ignore[arg-type]
    signer = keys.load_signer(path, PASS, log_key["key_name"])
    assert signer.vkey == log_key["vkey"]
    spki = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki.decode() == log_key["public_key_pem_spki"]


def test_rotation_dual_signs_and_old_keys_keep_verifying(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    keys.ensure_key(path, PASS)
    first = keys.load_signer(path, PASS, fleet.ORIGIN)
    body = ckpt.Checkpoint(fleet.ORIGIN, 1, merkle.leaf_hash(b"x"))
    old_note = ckpt.sign_checkpoint(body, [first])
    old, new = keys.start_rotation(path, PASS, fleet.ORIGIN)
    assert old.vkey == first.vkey and stat.S_IMODE(keys.pending_path(path).stat().st_mode) == 0o600
    with pytest.raises(KeyFileError, match="pending"):
        keys.start_rotation(path, PASS, fleet.ORIGIN)
    both = ckpt.sign_checkpoint(ckpt.Checkpoint(fleet.ORIGIN, 2, merkle.leaf_hash(b"y")), [old, new])
    retired = keys.finish_rotation(path, old, new, at=fleet.T0)
    assert retired.exists() and stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert keys.load_signer(path, PASS, fleet.ORIGIN).vkey == new.vkey
    ring = keys.load_keyring(path)
    assert [r.retired is not None for r in ring.records] == [True, False] and ring.current is not None
    verifiers = ring.verifiers(fleet.ORIGIN)
    # the ring verifies the old checkpoint (old key only) and the dual-signed one (either key)
    assert ckpt.open_checkpoint(old_note, verifiers, origin=fleet.ORIGIN).log_keys == (old.verifier,)
    signed = ckpt.open_checkpoint(both, verifiers, origin=fleet.ORIGIN)
    assert set(signed.log_keys) == {old.verifier, new.verifier}
    ckpt.open_checkpoint(both, [new.verifier], origin=fleet.ORIGIN)
    with pytest.raises(VerificationError):
        ckpt.open_checkpoint(old_note, [new.verifier], origin=fleet.ORIGIN)
    assert note.parse_vkey(new.vkey).name == fleet.ORIGIN
