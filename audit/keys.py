"""The log's Ed25519 signing key on disk, its public key ring, and rotation.

* The private key is PKCS#8 PEM encrypted with the caller's passphrase
  (``BestAvailableEncryption``), created with mode 0600 from the first byte (``os.open``
  with ``O_EXCL``; never chmod after writing). Loading refuses files others can read,
  unencrypted keys and wrong passphrases, without echoing any key material.
* The *key ring* (``<key>.keyring.json`` beside the key, public) lists every public key
  the log has used, oldest first, with when it was added and retired. Old keys keep
  verifying old checkpoints; ``gpumeter audit check`` trusts the ring, not the database.
* Rotation writes the new key beside the old (``<key>.new``), lets the caller log a
  ``key_event`` and sign one checkpoint with both keys, then :func:`finish_rotation` moves
  the old key to ``<key>.retired-<key ID>`` and the new one into place.

Only the CLI reads ``GPUMETER_AUDIT_PASSPHRASE``; everything here takes the passphrase
as an argument.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.canonical import format_time
from audit.errors import KeyFileError
from audit.note import SIG_ED25519, Signer, Verifier, b64decode, b64encode
from gpumeter.files import atomic_write
from gpumeter.findings import Finding, failed, passed

PASSPHRASE_ENV = "GPUMETER_AUDIT_PASSPHRASE"  # noqa: S105 - the name of the variable, not a secret
MAX_KEY_FILE = 64 * 1024
_SIGNING_KEY = "audit signing key"  # how errors name the file


def _passphrase(passphrase: str | bytes | None, path: Path) -> bytes:
    if passphrase is None or len(passphrase) == 0:
        raise KeyFileError(f"a passphrase is needed for the audit signing key (set {PASSPHRASE_ENV})", member=str(path))
    return passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def create_private_file(path: Path, data: bytes, *, what: str = "key file") -> None:
    """Write ``data`` to a new file created with mode 0600 from the first byte (never chmod
    after writing), in a 0700 folder; refuses to overwrite or follow a symlink."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)  # a folder that holds a private key is private, even one that existed
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"a {what} already exists here; refusing to overwrite it", member=str(path)) from exc
    except OSError as exc:
        raise KeyFileError(f"cannot create the {what}: {exc.strerror}", member=str(path)) from exc
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def read_private_file(path: Path, *, what: str = "signing key", missing: str = "run `gpumeter init`") -> bytes:
    """The bytes of a private key file that only its owner may read (at most 64 KiB)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError as exc:
        raise KeyFileError(f"no {what} here; {missing}", member=str(path)) from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read the {what}: {exc.strerror}", member=str(path)) from exc
    with os.fdopen(fd, "rb") as src:
        mode = os.fstat(src.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{what} is accessible to other users (mode {stat.S_IMODE(mode):04o}); chmod 600 it",
                member=str(path),
            )
        data = src.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{what} file is too large to be a key", member=str(path))
    return data


def write_key(path: Path, key: Ed25519PrivateKey, passphrase: str | bytes | None) -> None:
    """Write ``key`` as encrypted PKCS#8 PEM to a new file created with mode 0600."""
    secret = _passphrase(passphrase, path)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret),
    )
    create_private_file(path, pem)


def load_key(path: Path, passphrase: str | bytes | None) -> Ed25519PrivateKey:
    """Read and decrypt the signing key; clear errors, never key material."""
    secret = _passphrase(passphrase, path)
    data = read_private_file(path, what=_SIGNING_KEY)
    try:
        key = serialization.load_pem_private_key(data, password=secret)
    except TypeError as exc:  # "Password was given but private key is not encrypted"
        raise KeyFileError("signing key is not encrypted; re-create it with a passphrase", member=str(path)) from exc
    except ValueError as exc:
        raise KeyFileError(
            "cannot decrypt the signing key: wrong passphrase or damaged file", member=str(path)
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError("signing key is not an Ed25519 key", member=str(path))
    return key


def check_key(path: Path, passphrase: str | None) -> Finding:
    """``gpumeter check``: the signing key is there, private, and (given the passphrase) opens.

    Read-only, with the same rules as :func:`load_key`; without a passphrase the key is
    not decrypted, only its file is checked.
    """
    name = "audit.signing_key"
    if not (path.exists() or path.is_symlink()):
        return failed(
            name,
            f"no audit signing key at {path}",
            f"set {PASSPHRASE_ENV} and run `gpumeter init` to create it",
            path=str(path),
        )
    try:
        if passphrase:
            load_key(path, passphrase)
        else:
            read_private_file(path, what=_SIGNING_KEY)
    except KeyFileError as exc:
        return failed(name, exc.explain(), "fix the key file as the message says", path=str(path))
    mode = f"{stat.S_IMODE(path.stat().st_mode):04o}"
    opened = f"opens with {PASSPHRASE_ENV}" if passphrase else f"not opened ({PASSPHRASE_ENV} is not set)"
    return passed(name, f"{path} is present, mode {mode}, {opened}", path=str(path), mode=mode, opened=bool(passphrase))


def load_signer(path: Path, passphrase: str | bytes | None, name: str) -> Signer:
    """The log signer: the key at ``path`` under key name ``name`` (the ``[audit] origin``)."""
    return Signer(name, load_key(path, passphrase))


def fingerprint(public_key: bytes) -> str:
    return Verifier("x", SIG_ED25519, public_key).fingerprint


# ----------------------------------------------------------------------------- key ring


@dataclass(frozen=True)
class KeyRecord:
    public_key: bytes
    added: str  # RFC 3339 UTC
    retired: str | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def verifier(self, name: str) -> Verifier:
        return Verifier(name, SIG_ED25519, self.public_key)


@dataclass(frozen=True)
class KeyRing:
    """Every public key the log has signed with, oldest first; the last unretired is current."""

    records: tuple[KeyRecord, ...] = ()

    def verifiers(self, name: str) -> list[Verifier]:
        return [r.verifier(name) for r in self.records]

    @property
    def current(self) -> KeyRecord | None:
        live = [r for r in self.records if r.retired is None]
        return live[-1] if live else None

    def with_key(self, public_key: bytes, at: datetime) -> KeyRing:
        if any(r.public_key == public_key for r in self.records):
            return self
        return KeyRing((*self.records, KeyRecord(public_key, format_time(at))))

    def retire(self, public_key: bytes, at: datetime) -> KeyRing:
        return KeyRing(
            tuple(
                replace(r, retired=format_time(at)) if r.public_key == public_key and r.retired is None else r
                for r in self.records
            )
        )


def keyring_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".keyring.json")


def load_keyring(key_path: Path) -> KeyRing:
    """The ring beside the key; empty when there is none yet."""
    path = keyring_path(key_path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return KeyRing()
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read the key ring: {exc}", member=str(path)) from exc
    try:
        records = tuple(
            KeyRecord(b64decode(r["ed25519"], what="public key"), str(r["added"]), r.get("retired"))
            for r in doc["keys"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyFileError("the key ring is malformed", member=str(path)) from exc
    if any(len(r.public_key) != 32 for r in records):
        raise KeyFileError("the key ring holds a public key that is not 32 bytes", member=str(path))
    return KeyRing(records)


def save_keyring(key_path: Path, ring: KeyRing) -> None:
    """Replace the ring atomically (write a temp file, then rename)."""
    path = keyring_path(key_path)
    doc: dict[str, Any] = {
        "about": "public Ed25519 keys of the gpumeter audit log, oldest first",
        "keys": [
            {"ed25519": b64encode(r.public_key), "fingerprint": r.fingerprint, "added": r.added, "retired": r.retired}
            for r in ring.records
        ],
    }
    atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))


def pin_mention(key_path: Path, origin: str) -> str | None:
    """The sentence documents a customer keeps (invoices) carry so that the log key is pinned
    from a channel the operator cannot change later; None before the log has a key."""
    current = load_keyring(key_path).current
    if current is None:
        return None
    vkey = current.verifier(origin).vkey
    return (
        f"Audit log {origin} is signed with the key of fingerprint {current.fingerprint} "
        f"(verifier key {vkey}); check auditor bundles against it: gpumeter audit verify --key {vkey}"
    )


@dataclass(frozen=True)
class KeyStatus:
    path: Path
    created: bool
    fingerprint: str | None  # None when the key exists but no passphrase was given to read it
    vkey: str | None = None  # when the key name (the ``[audit] origin``) was given

    def __str__(self) -> str:
        return self.vkey or self.fingerprint or str(self.path)


def ensure_key(
    path: Path, passphrase: str | bytes | None, origin: str | None = None, *, at: datetime | None = None
) -> KeyStatus:
    """Create the signing key if absent (``gpumeter init``); creating needs the passphrase.

    An existing key is left alone (read only to complete the key ring when a passphrase is
    given). ``str()`` of the result is the vkey when ``origin`` is given.
    """
    moment = at or datetime.now(UTC)
    path = Path(path)

    def status(created: bool, public: bytes | None) -> KeyStatus:
        fp = fingerprint(public) if public is not None else None
        vk = Verifier(origin, SIG_ED25519, public).vkey if public is not None and origin else None
        return KeyStatus(path, created, fp, vk)

    if path.exists() or path.is_symlink():
        ring = load_keyring(path)
        if passphrase is None or len(passphrase) == 0:
            return status(False, ring.current.public_key if ring.current else None)
        public = load_key(path, passphrase).public_key().public_bytes_raw()
        if ring.current is None or ring.current.public_key != public:
            save_keyring(path, ring.with_key(public, moment))
        return status(False, public)
    secret = _passphrase(passphrase, path)
    key = generate_key()
    write_key(path, key, secret)
    public = key.public_key().public_bytes_raw()
    save_keyring(path, load_keyring(path).with_key(public, moment))
    return status(True, public)


# ----------------------------------------------------------------------------- rotation


def pending_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".new")


def start_rotation(key_path: Path, passphrase: str | bytes | None, name: str) -> tuple[Signer, Signer]:
    """(old, new) signers; the new key is written to ``<key>.new`` (0600), not yet in place."""
    old = load_signer(key_path, passphrase, name)
    pending = pending_path(key_path)
    if pending.exists():
        raise KeyFileError("a rotation is already pending; finish or remove it first", member=str(pending))
    new_key = generate_key()
    write_key(pending, new_key, passphrase)
    return old, Signer(name, new_key)


def finish_rotation(key_path: Path, old: Signer, new: Signer, *, at: datetime) -> Path:
    """Move the old key aside, put the new one in place, and record both in the ring."""
    retired = key_path.with_name(f"{key_path.name}.retired-{old.verifier.key_id.hex()}")
    os.replace(key_path, retired)
    os.replace(pending_path(key_path), key_path)
    ring = load_keyring(key_path).with_key(old.verifier.public_key, at)
    ring = ring.retire(old.verifier.public_key, at).with_key(new.verifier.public_key, at)
    save_keyring(key_path, ring)
    return retired
