"""TEST DOUBLE: a local RFC 3161 time-stamping authority on 127.0.0.1.

A qualified TSA cannot be reached from the tests, so this stands in for one at a single
seam: the HTTP endpoint ``[audit] tsa_url`` names. It is a real responder, not a mock: a
self-made CA issues a TSA certificate with the critical ``id-kp-timeStamping`` extended
key usage, and each ``application/timestamp-query`` POST is answered with a DER
``TimeStampResp`` whose token is a CMS SignedData over a ``TSTInfo`` (the request's
imprint and nonce, a serial number, genTime), signed (ECDSA P-256, SHA-256) with
content-type, message-digest and ESS signing-certificate-v2 attributes, as RFC 3161 and
RFC 5816 say. Built with ``cryptography`` (keys, certificates, signatures) and
``asn1crypto`` (the DER structures).

``answer`` lets a test make it misbehave (HTTP 500, a rejection, garbage).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testing.servers import in_thread

POLICY_OID = "1.3.6.1.4.1.99999.1.1"  # a private-arc OID for this double's policy


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")])


@dataclass
class Authority:
    """A CA and the TSA certificate it issued (PEM forms for pinning)."""

    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    tsa_key: ec.EllipticCurvePrivateKey
    tsa_cert: x509.Certificate

    @property
    def ca_pem(self) -> str:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def tsa_pem(self) -> str:
        return self.tsa_cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def make_authority(name: str = "Test TSA", *, now: datetime | None = None) -> Authority:
    now = now or datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} Root CA"))
        .issuer_name(_name(f"{name} Root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=5 * 365))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=5 * 365))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Authority(ca_key, ca_cert, tsa_key, tsa_cert)


def _granted(authority: Authority, request: tsp.TimeStampReq, serial: int, gen_time: datetime) -> bytes:
    info = tsp.TSTInfo(
        {
            "version": "v1",
            "policy": POLICY_OID,
            "message_imprint": request["message_imprint"],
            "serial_number": serial,
            "gen_time": gen_time,
            "accuracy": {"seconds": 1},
            "nonce": request["nonce"].native if request["nonce"].native is not None else None,
        }
    )
    if request["nonce"].native is None:
        del info["nonce"]
    content = info.dump()
    cert = asn1_x509.Certificate.load(authority.tsa_cert.public_bytes(serialization.Encoding.DER))
    signed_attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
            {
                "type": "signing_certificate_v2",
                "values": [{"certs": [{"cert_hash": hashlib.sha256(cert.dump()).digest()}]}],
            },
        ]
    )
    signature = authority.tsa_key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
    signer = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {"issuer_and_serial_number": {"issuer": cert.issuer, "serial_number": cert.serial_number}}
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            "signature": signature,
        }
    )
    certs = [cert] if request["cert_req"].native else []
    signed = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(content)},
            "certificates": certs,
            "signer_infos": [signer],
        }
    )
    token = cms.ContentInfo({"content_type": "signed_data", "content": signed})
    return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()


def rejection(text: str = "bad request") -> bytes:
    """A TimeStampResp that refuses (it has no token; asn1crypto insists on one, so the
    outer SEQUENCE is written here)."""
    status = tsp.PKIStatusInfo({"status": "rejection", "status_string": [text]}).dump()
    return b"\x30" + bytes([len(status)]) + status


@dataclass
class TsaDouble:
    """The running responder: its URL, its authority, and what it has answered."""

    authority: Authority
    url: str = ""
    requests: list[bytes] = field(default_factory=list)
    answer: Callable[[bytes], tuple[int, bytes]] | None = None  # override: (status, body)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC).replace(microsecond=0)
    _serials: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def respond(self, body: bytes) -> tuple[int, bytes]:
        self.requests.append(body)
        if self.answer is not None:
            return self.answer(body)
        try:
            request = tsp.TimeStampReq.load(body)
            request.native  # noqa: B018 - parses every field now, so garbage is refused here
        except ValueError:
            return 200, rejection("not a TimeStampReq")
        return 200, _granted(self.authority, request, next(self._serials), self.clock())


@contextmanager
def running(authority: Authority | None = None) -> Iterator[TsaDouble]:
    """A TSA double listening on 127.0.0.1 (a free port) until the block ends."""
    double = TsaDouble(authority or make_authority())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 16))
            if self.headers.get("Content-Type") != "application/timestamp-query":
                status, data = 415, b"want application/timestamp-query"
            else:
                status, data = double.respond(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    double.url = f"http://127.0.0.1:{server.server_address[1]}/tsa"
    with in_thread(server):
        yield double
