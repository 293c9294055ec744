"""Trusted time for checkpoints: RFC 3161 time-stamp tokens from a TSA.

With ``[audit] tsa_url`` set, each signed checkpoint's note text is time-stamped: a
``TimeStampReq`` with the SHA-256 imprint of the note text (as signed, with its signature
lines), a random nonce and ``certReq`` true, POSTed as ``application/timestamp-query``.
The token proves the checkpoint existed at the time the TSA asserts (a *qualified* TSA's
token carries the eIDAS Art. 41(2) presumption); it says nothing about order between tokens.

Stored form. The answer is checked (status granted, our imprint, our nonce) and kept as a
minimal ``TimeStampResp``: the status ``granted`` with no text, and the TSA's token
verbatim. The token itself must follow a strict profile (:func:`_strict_profile`): one
signer identified by issuer and serial number, SignedData version 3, SignerInfo version 1,
no CRLs and no unsigned attributes, and a signature algorithm that matches the digest —
fields the CMS signature does not cover, which a lenient parser would let change. So a
one-byte change of the stored token, or of the note, is refused.

:func:`verify_timestamp` is pure: the token, the note text and a pinned PEM (the TSA's
root certificate, optionally its own certificate and intermediates) give the genTime or
raise :class:`~audit.errors.VerificationError`. It uses ``rfc3161-client`` (chain to the
pinned root at genTime, critical ``id-kp-timeStamping`` EKU, imprint). The EU Trusted List
status of a TSA is not checked here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import requests
import rfc3161_client
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder, VerifierBuilder, decode_timestamp_response

from audit import posting
from audit.errors import VerificationError
from gpumeter import store

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
MAX_TOKEN_BYTES = 64 * 1024
TIMEOUT_S = 20.0
_SHA256 = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_GRANTED = bytes.fromhex("3003020100")  # PKIStatusInfo { status granted }
_SHA256_DER = bytes.fromhex("608648016503040201")  # 2.16.840.1.101.3.4.2.1
# signatureAlgorithm OIDs (DER content bytes) allowed with a SHA-256 digest, by key type
_SIG_ALGS = {
    "ec": {bytes.fromhex("2a8648ce3d040302"), bytes.fromhex("2a8648ce3d0201")},  # ecdsa-with-SHA256, ecPublicKey
    "rsa": {bytes.fromhex("2a864886f70d01010b"), bytes.fromhex("2a864886f70d010101")},  # sha256WithRSA, rsaEncryption
    "ed25519": {bytes.fromhex("2b6570")},
}


# ------------------------------------------------------------------------- strict DER


@dataclass(frozen=True)
class _Element:
    tag: int
    start: int  # first byte of the tag
    body: int  # first byte of the content
    end: int

    def content(self, data: bytes) -> bytes:
        return data[self.body : self.end]


def _element(data: bytes, pos: int, end: int) -> _Element:
    """The DER element at ``pos``; definite, minimal lengths only."""
    if pos + 2 > end:
        raise VerificationError("time-stamp token is truncated")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise VerificationError("time-stamp token uses a high tag number")
    body = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or body + count > end or data[body] == 0:
            raise VerificationError("time-stamp token is not DER (length encoding)")
        length = int.from_bytes(data[body : body + count], "big")
        if length < 0x80:
            raise VerificationError("time-stamp token is not DER (length encoding)")
        body += count
    if body + length > end:
        raise VerificationError("time-stamp token is truncated")
    return _Element(tag, pos, body, body + length)


def _children(data: bytes, parent: _Element) -> list[_Element]:
    out: list[_Element] = []
    pos = parent.body
    while pos < parent.end:
        out.append(_element(data, pos, parent.end))
        pos = out[-1].end
    return out


def _top(data: bytes) -> list[_Element]:
    whole = _element(data, 0, len(data))
    if whole.tag != 0x30 or whole.end != len(data):
        raise VerificationError("not a DER TimeStampResp")
    return _children(data, whole)


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def canonical_response(tsr: bytes) -> bytes:
    """The stored form of a TSA's answer: status ``granted`` without text, the token verbatim."""
    if len(tsr) > MAX_TOKEN_BYTES:
        raise VerificationError(f"time-stamp answer is larger than {MAX_TOKEN_BYTES} bytes")
    parts = _top(tsr)
    if not parts or parts[0].tag != 0x30:
        raise VerificationError("not a DER TimeStampResp")
    status = _children(tsr, parts[0])
    if not status or status[0].tag != 0x02 or status[0].content(tsr) != b"\x00":
        raise VerificationError("the TSA did not grant a time stamp")
    if len(parts) != 2:
        raise VerificationError("the TSA's answer holds no time-stamp token")
    body = _GRANTED + tsr[parts[1].start : parts[1].end]
    return b"\x30" + _length(len(body)) + body


def _key_kind(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    return "ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else ""


def _strict_profile(tsr: bytes, leaf: x509.Certificate) -> None:
    """Refuse what the CMS signature does not cover and a lenient reader would accept."""
    parts = _top(tsr)
    if len(parts) != 2 or tsr[parts[0].start : parts[0].end] != _GRANTED:
        raise VerificationError("a stored time-stamp response says 'granted' and nothing else")
    content_info = _children(tsr, parts[1])
    if len(content_info) != 2 or content_info[1].tag != 0xA0:
        raise VerificationError("time-stamp token is not a ContentInfo")
    wrapped = _children(tsr, content_info[1])
    if len(wrapped) != 1 or wrapped[0].tag != 0x30:
        raise VerificationError("time-stamp token holds no SignedData")
    fields = _children(tsr, wrapped[0])
    if [f.tag for f in fields] not in ([0x02, 0x31, 0x30, 0xA0, 0x31], [0x02, 0x31, 0x30, 0x31]):
        raise VerificationError("time-stamp SignedData has unexpected fields (CRLs?)")
    if fields[0].content(tsr) != b"\x03":
        raise VerificationError("time-stamp SignedData version must be 3")
    infos = _children(tsr, fields[-1])
    if len(infos) != 1:
        raise VerificationError("time-stamp token must have exactly one signer")
    signer = _children(tsr, infos[0])
    if [f.tag for f in signer] != [0x02, 0x30, 0x30, 0xA0, 0x30, 0x04]:
        raise VerificationError("time-stamp signer has unexpected fields (unsigned attributes?)")
    if signer[0].content(tsr) != b"\x01":
        raise VerificationError("time-stamp SignerInfo version must be 1")
    digest = _children(tsr, signer[2])
    if not digest or digest[0].content(tsr) != _SHA256_DER:
        raise VerificationError("time-stamp signer must use SHA-256")
    algorithm = _children(tsr, signer[4])
    if not algorithm or algorithm[0].content(tsr) not in _SIG_ALGS.get(_key_kind(leaf), set()):
        raise VerificationError("time-stamp signature algorithm does not match the TSA's key and SHA-256")


# --------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class Pinned:
    """The certificates a time stamp is checked against, from one PEM file."""

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    tsa: x509.Certificate | None


def _is_tsa(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.TIME_STAMPING in eku


def load_pinned(pem: str | bytes) -> Pinned:
    """Self-signed certificates are roots, one with the time-stamping EKU is the TSA's own."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("ascii") if isinstance(pem, str) else pem)
    except (ValueError, UnicodeEncodeError) as exc:
        raise VerificationError("the pinned TSA certificate is not PEM") from exc
    roots = tuple(c for c in certs if c.subject == c.issuer)
    tsa = [c for c in certs if c not in roots and _is_tsa(c)]
    if not roots:
        raise VerificationError("the pinned TSA certificates must include the TSA's root certificate")
    if len(tsa) > 1:
        raise VerificationError("the pinned TSA certificates name more than one TSA certificate")
    rest = tuple(c for c in certs if c not in roots and c not in tsa)
    return Pinned(roots, rest, tsa[0] if tsa else None)


def _decode(tsr: bytes) -> rfc3161_client.TimeStampResponse:
    if len(tsr) > MAX_TOKEN_BYTES:
        raise VerificationError(f"time-stamp response is larger than {MAX_TOKEN_BYTES} bytes")
    try:
        return decode_timestamp_response(tsr)
    except (ValueError, TypeError, OverflowError) as exc:
        raise VerificationError("not a valid DER time-stamp response") from exc


def _signer_certificate(response: rfc3161_client.TimeStampResponse, pinned: Pinned) -> x509.Certificate:
    infos = list(response.signed_data.signer_infos)
    if len(infos) != 1:
        raise VerificationError("time-stamp token must have exactly one signer")
    for der in response.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == infos[0].issuer and cert.serial_number == infos[0].serial_number:
            return cert
    if pinned.tsa is None:
        raise VerificationError("the time-stamp token carries no TSA certificate and none is pinned")
    return pinned.tsa


def verify_timestamp(tsr: bytes, note_text: str, tsa_cert_pem: str | bytes) -> datetime:
    """The genTime a stored token proves for ``note_text``, checked against the pinned PEM."""
    pinned = load_pinned(tsa_cert_pem)
    builder = VerifierBuilder()
    for root in pinned.roots:
        builder = builder.add_root_certificate(root)
    for cert in pinned.intermediates:
        builder = builder.add_intermediate_certificate(cert)
    if pinned.tsa is not None:
        builder = builder.tsa_certificate(pinned.tsa)
    response = _decode(tsr)
    try:  # the library parses lazily: a malformed field raises ValueError when first read
        if response.tst_info.message_imprint.hash_algorithm != _SHA256:
            raise VerificationError("the time stamp's imprint is not SHA-256")
        builder.build().verify_message(response, note_text.encode("utf-8"))
        leaf = _signer_certificate(response, pinned)
        gen_time = response.tst_info.gen_time
    except rfc3161_client.VerificationError as exc:
        raise VerificationError(f"time stamp does not verify: {exc}") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise VerificationError("time-stamp token is malformed") from exc
    _strict_profile(tsr, leaf)
    return _utc(gen_time)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------- fetching


@dataclass(frozen=True)
class Stamp:
    checkpoint_id: int
    tsa_url: str
    tsr: bytes  # the stored form (canonical_response)
    gen_time: datetime


def fetch_timestamp(
    url: str,
    note_text: str,
    *,
    tsa_cert_pem: str | bytes | None = None,
    session: requests.Session | None = None,
) -> tuple[bytes, datetime]:
    """Ask the TSA at ``url`` to time-stamp ``note_text``; (stored token, genTime).

    The answer must grant a token over our SHA-256 imprint with our nonce; with a pinned
    certificate it must also verify in full (:func:`verify_timestamp`)."""
    data = note_text.encode("utf-8")
    request = (
        TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    http = session or requests.Session()
    headers = {"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE}
    try:
        status, _, answer = posting.post(
            http, url, request.as_bytes(), headers, limit=MAX_TOKEN_BYTES, total_s=TIMEOUT_S
        )
    except requests.Timeout as exc:
        raise VerificationError(f"the TSA at {url} timed out") from exc
    except requests.RequestException as exc:
        raise VerificationError(f"the TSA at {url} is unreachable ({type(exc).__name__})") from exc
    finally:
        if session is None:
            http.close()
    if status != 200:
        raise VerificationError(f"the TSA at {url} answered HTTP {status}")
    stored = canonical_response(answer)
    try:
        info = _decode(stored).tst_info
        imprint = (info.message_imprint.hash_algorithm, info.message_imprint.message)
        nonce, gen_time = info.nonce, info.gen_time
    except (ValueError, TypeError, OverflowError) as exc:
        raise VerificationError("the TSA's time-stamp token is malformed") from exc
    if imprint != (_SHA256, hashlib.sha256(data).digest()):
        raise VerificationError("the TSA time-stamped another imprint than the checkpoint's")
    if nonce != request.nonce:
        raise VerificationError("the TSA's answer does not carry our nonce (a replayed token?)")
    if tsa_cert_pem is not None:
        return stored, verify_timestamp(stored, note_text, tsa_cert_pem)
    return stored, _utc(gen_time)


def stamp_checkpoint(
    con: duckdb.DuckDBPyConnection,
    checkpoint_id: int,
    note_text: str,
    url: str,
    *,
    tsa_cert: Path | None = None,
    now: datetime | None = None,
) -> Stamp:
    """Time-stamp a stored checkpoint's note and keep the token (raises when the TSA fails)."""
    pem = tsa_cert.read_bytes() if tsa_cert is not None else None
    tsr, gen_time = fetch_timestamp(url, note_text, tsa_cert_pem=pem)
    store.run(
        con,
        "audit_insert_timestamp",
        {
            "checkpoint_id": checkpoint_id,
            "tsa_url": url,
            "tsr": tsr,
            "gen_time": gen_time,
            "received_at": now or datetime.now(UTC),
        },
    )
    return Stamp(checkpoint_id, url, tsr, gen_time)


def timestamp_of(con: duckdb.DuckDBPyConnection, checkpoint_id: int) -> Stamp | None:
    """The stored token of a checkpoint (what a bundle carries as ``checkpoint.tsr``)."""
    row = store.run(con, "audit_timestamp_of", {"checkpoint_id": checkpoint_id}).fetchone()
    if row is None:
        return None
    return Stamp(checkpoint_id, str(row[0]), bytes(row[1]), row[2])
