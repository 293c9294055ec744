"""C2SP signed notes (``signed-note`` v1.0.0): byte-exact parse and format, keys, signatures.

A note is UTF-8 text (one or more lines, each ending ``\\n``), a blank line, and one or
more signature lines ``— <key name> <base64(key ID ‖ signature)>\\n`` — the dash is U+2014.
The signed message is the text including its final newline. Key IDs are the first four
bytes of ``SHA-256(name ‖ 0x0A ‖ type ‖ public key)``; a verifier key string (*vkey*) is
``<name>+<hex8 key ID>+<base64(type ‖ public key)>``, split on the first two ``+`` only
because base64 may itself contain ``+``.

Two signature types are understood: ``0x01`` Ed25519 (logs) and ``0x04`` timestamped
Ed25519 cosignatures (``tlog-cosignature``, witnesses). Base64 must be canonical (no
stray padding bits), so that a one-character edit of a signature line always changes the
decoded bytes.

Acceptance (C2SP signed-note, as Go's sumdb/note applies it): signatures whose (name, key
ID) is unknown are ignored; a known one must verify or the whole note is rejected; two
configured verifiers with the same (name, key ID) are ambiguous; at least one known
signature must verify; identical signature lines count once; more than 100 signature lines
is malformed. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.errors import KeyFileError, VerificationError

SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 1 << 20
DASH = "\u2014 "
_HEX8 = re.compile(r"^[0-9a-f]{8}$")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_MAX_TIMESTAMP = (1 << 63) - 1


def b64decode(text: str, *, what: str = "base64") -> bytes:
    """Standard base64 with padding, rejecting anything but the one canonical spelling."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise VerificationError(f"{what} is not valid standard base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise VerificationError(f"{what} is not canonical base64")
    return raw


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def valid_name(name: str) -> bool:
    """A key name: non-empty, no Unicode whitespace, no ``+``, no control characters."""
    return bool(name) and "+" not in name and not any(c.isspace() or ord(c) < 0x20 for c in name)


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """The C2SP key ID: ``SHA-256(name ‖ 0x0A ‖ type ‖ key)[:4]``."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def vkey_string(name: str, sig_type: int, public_key: bytes) -> str:
    return f"{name}+{key_id(name, sig_type, public_key).hex()}+{b64encode(bytes([sig_type]) + public_key)}"


# ------------------------------------------------------------------------------- format


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, 4-byte key ID, and the type-specific signature bytes."""

    name: str
    key_id: bytes
    data: bytes

    def line(self) -> str:
        return f"{DASH}{self.name} {b64encode(self.key_id + self.data)}\n"

    @property
    def key_hex(self) -> str:
        return self.key_id.hex()


@dataclass(frozen=True)
class Note:
    """A parsed note: its text (ending in ``\\n``) and its signatures, in file order."""

    text: str
    signatures: tuple[Signature, ...]

    def format(self) -> str:
        return format_note(self.text, self.signatures)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise VerificationError("malformed note: text must end with a newline")
    _check_controls(text)


def _check_controls(text: str) -> None:
    bad = _CONTROL.search(text)
    if bad is not None:
        raise VerificationError(f"malformed note: control character U+{ord(bad.group()):04X}")


def format_note(text: str, signatures: Sequence[Signature]) -> str:
    """The note's exact text: body, blank line, signature lines."""
    _check_text(text)
    if not signatures:
        raise VerificationError("a note needs at least one signature")
    return text + "\n" + "".join(sig.line() for sig in signatures)


def decode_note(data: bytes | str) -> str:
    """Note bytes as text: valid UTF-8, bounded, no control characters but newline."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise VerificationError("malformed note: not valid UTF-8") from exc
    else:
        raw = data
    if len(raw) > MAX_NOTE_BYTES:
        raise VerificationError(f"note is larger than {MAX_NOTE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VerificationError(f"malformed note: not valid UTF-8 at byte {exc.start}") from exc
    _check_controls(text)
    return text


def parse_note(data: bytes | str) -> Note:
    """Split a note into text and signature lines; raises on any malformation."""
    text = decode_note(data)
    split = text.rfind("\n\n")
    if split < 0:
        raise VerificationError("malformed note: no blank line before the signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block or not block.endswith("\n"):
        raise VerificationError("malformed note: no signature lines, or the last lacks its newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError(f"malformed note: more than {MAX_SIGNATURES} signature lines")
    sigs: list[Signature] = []
    for line in lines:
        if not line.startswith(DASH):
            raise VerificationError("malformed note: a signature line must start with an em dash and a space")
        name, sep, encoded = line[len(DASH) :].partition(" ")
        if not sep or not valid_name(name):
            raise VerificationError("malformed note: bad key name in a signature line", value=name)
        raw = b64decode(encoded, what=f"signature of {name}")
        if len(raw) < 5:
            raise VerificationError(f"malformed note: signature of {name} is too short")
        sigs.append(Signature(name, raw[:4], raw[4:]))
    return Note(body, tuple(sigs))


# --------------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class Verifier:
    """A public key that can check signatures of one (name, key ID)."""

    name: str
    sig_type: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public_key)

    @property
    def vkey(self) -> str:
        return vkey_string(self.name, self.sig_type, self.public_key)

    @property
    def fingerprint(self) -> str:
        """``SHA256:<hex>`` of the raw 32-byte public key (what the CLI shows)."""
        return "SHA256:" + hashlib.sha256(self.public_key).hexdigest()

    @property
    def is_log_key(self) -> bool:
        return self.sig_type == SIG_ED25519

    def message(self, text: str, data: bytes) -> tuple[bytes, bytes] | None:
        """(signed message, Ed25519 signature) for ``data``, or None if it cannot be one."""
        body = text.encode("utf-8")
        if self.sig_type == SIG_ED25519:
            return (body, data) if len(data) == 64 else None
        if len(data) != 8 + 64:
            return None
        (stamp,) = struct.unpack(">Q", data[:8])
        if stamp > _MAX_TIMESTAMP:
            return None
        return b"cosignature/v1\ntime %d\n" % stamp + body, data[8:]

    def verify(self, text: str, data: bytes) -> bool:
        parts = self.message(text, data)
        if parts is None:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(parts[1], parts[0])
        except (InvalidSignature, ValueError):
            return False
        return True

    def cosigned_at(self, data: bytes) -> int | None:
        """The POSIX time a cosignature carries (None for a plain log signature)."""
        if self.sig_type != SIG_COSIGNATURE_V1 or len(data) < 8:
            return None
        stamp: int = struct.unpack(">Q", data[:8])[0]
        return stamp


def parse_vkey(vkey: str) -> Verifier:
    """A verifier key string; raises :class:`KeyFileError` on anything malformed."""
    parts = vkey.strip("\n").split("+", 2) if isinstance(vkey, str) else []
    if len(parts) != 3:
        raise KeyFileError("verifier key must be <name>+<hex8>+<base64>")
    name, hex8, encoded = parts
    if not valid_name(name):
        raise KeyFileError("verifier key has a bad key name")
    if not _HEX8.match(hex8):
        raise KeyFileError("verifier key ID must be 8 lower-case hex digits")
    try:
        raw = b64decode(encoded, what="verifier key")
    except VerificationError as exc:
        raise KeyFileError(exc.message) from exc
    if len(raw) != 33 or raw[0] not in (SIG_ED25519, SIG_COSIGNATURE_V1):
        raise KeyFileError("verifier key must be type 0x01 or 0x04 with a 32-byte Ed25519 key")
    verifier = Verifier(name, raw[0], raw[1:])
    if verifier.key_id.hex() != hex8:
        raise KeyFileError("verifier key ID does not match the key")
    return verifier


class Signer:
    """An Ed25519 private key under a key name; signs note texts (type 0x01)."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey, sig_type: int = SIG_ED25519) -> None:
        if not valid_name(name):
            raise KeyFileError("bad key name for a signer", value=name)
        self.name = name
        self.sig_type = sig_type
        self._key = private_key
        self.verifier = Verifier(name, sig_type, private_key.public_key().public_bytes_raw())

    def __repr__(self) -> str:  # never show key material
        return f"Signer({self.verifier.vkey!r})"

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    def sign(self, text: str, *, timestamp: int | None = None) -> Signature:
        _check_text(text)
        body = text.encode("utf-8")
        if self.sig_type == SIG_COSIGNATURE_V1:
            if timestamp is None or not 0 < timestamp <= _MAX_TIMESTAMP:
                raise VerificationError("a cosignature needs a positive timestamp")
            prefix = struct.pack(">Q", timestamp)
            return Signature(self.name, self.verifier.key_id, prefix + self._key.sign(self.message(body, timestamp)))
        return Signature(self.name, self.verifier.key_id, self._key.sign(body))

    @staticmethod
    def message(body: bytes, timestamp: int) -> bytes:
        return b"cosignature/v1\ntime %d\n" % timestamp + body


def parse_signer_key(text: str) -> Signer:
    """A Go ``PRIVATE+KEY+<name>+<hex8>+<base64(0x01 ‖ seed)>`` string (test material only)."""
    parts = text.split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise KeyFileError("signer key must be PRIVATE+KEY+<name>+<hex8>+<base64>")
    name, hex8, encoded = parts[2:]
    if not valid_name(name) or not _HEX8.match(hex8):
        raise KeyFileError("signer key has a bad name or key ID")
    try:
        raw = b64decode(encoded, what="signer key")
    except VerificationError as exc:
        raise KeyFileError(exc.message) from exc
    if len(raw) != 33 or raw[0] != SIG_ED25519:
        raise KeyFileError("signer key must be type 0x01 with a 32-byte seed")
    signer = Signer(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
    if signer.verifier.key_id.hex() != hex8:
        raise KeyFileError("signer key ID does not match the key")
    return signer


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign ``text`` with every signer; returns the whole note."""
    return format_note(text, [s.sign(text) for s in signers])


# --------------------------------------------------------------------------------- open


@dataclass(frozen=True)
class OpenedNote:
    """A note whose known signatures all verified."""

    text: str
    verified: tuple[tuple[Signature, Verifier], ...]
    unverified: tuple[Signature, ...]

    @property
    def verifiers(self) -> tuple[Verifier, ...]:
        return tuple(v for _, v in self.verified)


def _none_verifiable(note: Note, verifiers: Sequence[Verifier]) -> str:
    """Why no signature verified: which keys signed, and which were given (name+key ID each)."""
    signed = sorted({f"{s.name}+{s.key_hex}" for s in note.signatures})
    given = sorted({f"{v.name}+{v.key_id.hex()}" for v in verifiers})
    return (
        f"note has no verifiable signatures: it is signed by {', '.join(signed) or 'no key'}, "
        f"and the keys given are {', '.join(given) or 'none'}"
    )


def open_note(data: bytes | str, verifiers: Sequence[Verifier]) -> OpenedNote:
    """Parse a note and check its signatures by the acceptance rules in the module doc."""
    note = parse_note(data)
    verified: list[tuple[Signature, Verifier]] = []
    unverified: list[Signature] = []
    seen: set[Signature] = set()
    for sig in note.signatures:
        matches = [v for v in verifiers if v.name == sig.name and v.key_id == sig.key_id]
        if sig in seen:
            continue
        seen.add(sig)
        if not matches:
            unverified.append(sig)
            continue
        if len(matches) > 1:
            raise VerificationError(f"ambiguous key {sig.name}+{sig.key_hex}")
        if not matches[0].verify(note.text, sig.data):
            raise VerificationError(f"invalid signature for key {sig.name}+{sig.key_hex}")
        verified.append((sig, matches[0]))
    if not verified:
        raise VerificationError(_none_verifiable(note, verifiers))
    return OpenedNote(note.text, tuple(verified), tuple(unverified))
