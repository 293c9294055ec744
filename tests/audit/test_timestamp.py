"""RFC 3161 time stamps of checkpoints, against a local TSA (tests/tsa_double.py, a test double)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import tsp
from rfc3161_client import decode_timestamp_response

from audit import keys, timestamp
from audit.errors import VerificationError
from audit.log import AuditLog
from gpumeter import store
from tests.audit.vectors import vector
from tests.tsa_double import make_authority, rejection, running

NOTE = vector("derived/gpumeter-style-log.json")["checkpoint_with_cosignature"]
AT = datetime(2026, 10, 31, 23, 0, 5, tzinfo=UTC)


def test_round_trip_gives_the_tsa_time_and_binds_the_note() -> None:
    with running() as tsa:
        tsa.clock = lambda: AT
        stored, gen_time = timestamp.fetch_timestamp(tsa.url, NOTE, tsa_cert_pem=tsa.authority.ca_pem)
        ((request,),) = [tsa.requests]
    assert gen_time == AT
    assert timestamp.verify_timestamp(stored, NOTE, tsa.authority.ca_pem) == AT
    # pinning the root and the TSA's own certificate works too
    assert timestamp.verify_timestamp(stored, NOTE, tsa.authority.ca_pem + tsa.authority.tsa_pem) == AT
    # what was asked: SHA-256 of the note text, a nonce, the TSA's certificate
    info = decode_timestamp_response(stored).tst_info
    assert info.message_imprint.message == hashlib.sha256(NOTE.encode()).digest()
    asked = tsp.TimeStampReq.load(request)
    assert asked["cert_req"].native is True and asked["nonce"].native == info.nonce


@pytest.fixture(scope="module")
def token() -> tuple[bytes, str]:
    with running() as tsa:
        stored, _ = timestamp.fetch_timestamp(tsa.url, NOTE)
    return stored, tsa.authority.ca_pem


def test_every_one_byte_change_of_the_token_is_refused(token: tuple[bytes, str]) -> None:
    stored, pem = token
    timestamp.verify_timestamp(stored, NOTE, pem)
    for i in range(len(stored)):
        changed = bytearray(stored)
        changed[i] ^= 0x01 if i % 2 else 0x80
        with pytest.raises(VerificationError):
            timestamp.verify_timestamp(bytes(changed), NOTE, pem)
    with pytest.raises(VerificationError):
        timestamp.verify_timestamp(stored + b"\x00", NOTE, pem)
    with pytest.raises(VerificationError):
        timestamp.verify_timestamp(stored[:-1], NOTE, pem)


def test_every_one_byte_change_of_the_note_is_refused(token: tuple[bytes, str]) -> None:
    stored, pem = token
    raw = NOTE.encode()
    for i in range(len(raw)):
        changed = bytearray(raw)
        changed[i] ^= 0x01
        with pytest.raises(VerificationError, match="does not verify"):
            timestamp.verify_timestamp(stored, changed.decode("utf-8", "replace"), pem)


def test_another_tsa_or_a_bad_pin_is_refused(token: tuple[bytes, str]) -> None:
    stored, _ = token
    other = make_authority("Other TSA")
    with pytest.raises(VerificationError, match="does not verify"):
        timestamp.verify_timestamp(stored, NOTE, other.ca_pem)
    with pytest.raises(VerificationError, match="must include the TSA's root"):
        timestamp.verify_timestamp(stored, NOTE, other.tsa_pem)
    with pytest.raises(VerificationError, match="not PEM"):
        timestamp.verify_timestamp(stored, NOTE, "not a certificate")
    with pytest.raises(VerificationError, match="not a valid DER"):
        timestamp.verify_timestamp(b"\x30\x03\x02\x01\x00", NOTE, token[1])


def test_a_misbehaving_tsa_gives_one_clear_refusal() -> None:
    with running() as tsa:
        tsa.answer = lambda _body: (500, b"oops")
        with pytest.raises(VerificationError, match="answered HTTP 500"):
            timestamp.fetch_timestamp(tsa.url, NOTE)
        tsa.answer = lambda _body: (200, rejection("no"))
        with pytest.raises(VerificationError, match="did not grant"):
            timestamp.fetch_timestamp(tsa.url, NOTE)
        tsa.answer = lambda _body: (200, b"\x30\x80garbage")
        with pytest.raises(VerificationError, match="not DER"):
            timestamp.fetch_timestamp(tsa.url, NOTE)
        # a token for other data, and a replayed token (someone else's nonce)
        tsa.answer = None
        elsewhere, _ = timestamp.fetch_timestamp(tsa.url, "another note\n")
        tsa.answer = lambda _body: (200, elsewhere)
        with pytest.raises(VerificationError, match="another imprint"):
            timestamp.fetch_timestamp(tsa.url, "another note\n".replace("another", "a third"))
        with pytest.raises(VerificationError, match="nonce"):
            timestamp.fetch_timestamp(tsa.url, "another note\n")
    with pytest.raises(VerificationError, match="unreachable"):
        timestamp.fetch_timestamp(tsa.url, NOTE)


def test_checkpoints_are_time_stamped_and_the_token_is_kept(tmp_path: Path) -> None:
    passphrase, origin = "a long test passphrase", "gpumeter.example.eu/stamped"
    with running() as tsa:
        tsa.clock = lambda: AT
        (tmp_path / "tsa.pem").write_text(tsa.authority.ca_pem)
        (tmp_path / "gpumeter.toml").write_text(
            f'[audit]\norigin = "{origin}"\nsigning_key = "keys/audit.key"\n'
            f'tsa_url = "{tsa.url}"\ntsa_cert = "tsa.pem"\n'
        )
        keys.ensure_key(tmp_path / "keys" / "audit.key", passphrase, origin)
        con = store.connect(tmp_path / "var" / "gpumeter.duckdb")
        store.migrate(con)
        con.close()
        gpumeter = str(Path(sys.executable).with_name("gpumeter"))
        env = {"GPUMETER_AUDIT_PASSPHRASE": passphrase, "PATH": "/usr/bin:/bin"}
        run = subprocess.run(
            [gpumeter, "audit", "checkpoint"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr
        assert f"time-stamped by {tsa.url} at 2026-10-31T23:00:05+00:00" in run.stderr
        (request,) = tsa.requests
        tsa.answer = lambda _body: (503, b"down")
        failed = subprocess.run(
            [gpumeter, "audit", "checkpoint"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
    assert failed.returncode == 1 and "time stamp: the TSA at" in failed.stderr and "answered HTTP 503" in failed.stderr
    con = store.connect(tmp_path / "var" / "gpumeter.duckdb", read_only=True)
    first, second = AuditLog(con).checkpoints()
    stamp = timestamp.timestamp_of(con, first.id)
    assert timestamp.timestamp_of(con, second.id) is None  # the checkpoint is kept, without a token
    con.close()
    assert stamp is not None and stamp.gen_time == AT
    assert timestamp.verify_timestamp(stamp.tsr, first.note, tsa.authority.ca_pem) == AT
    assert run.stdout == first.note
    asked = tsp.TimeStampReq.load(request)  # what the CLI asked: SHA-256 of the note, a nonce, the certificate
    assert asked["message_imprint"]["hashed_message"].native == hashlib.sha256(first.note.encode()).digest()
    assert asked["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert asked["cert_req"].native is True and asked["nonce"].native is not None
