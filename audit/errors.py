"""Errors of the audit package, one tree under :class:`gpumeter.errors.GpumeterError`.

::

    GpumeterError                   (gpumeter.errors)
    └── AuditError                  the audit log cannot do what was asked   exit 1
        ├── EntryError              not a JSON object with ``type`` and an RFC 3339 UTC ``time``
        ├── KeyFileError            signing key absent, unreadable, wrong passphrase, bad vkey
        ├── PolicyError             an unknown set or country code in ``allowed_countries``
        ├── TrustPolicyError        a C2SP tlog-policy file (or the options or configuration
        │                           it is built from) is malformed: names the line
        ├── WitnessError            witnesses did not give the cosignatures the quorum needs
        ├── SovereigntyViolation    a job ran or kept data outside the boundary   exit 3
        ├── UnpinnedKey             a bundle holds, but nothing outside it pins its key   exit 4
        └── VerificationError       a proof, signature, hash or format does not hold   exit 3
            └── BundleError         a bundle member is unsafe or malformed (path, size, count)

Every error may name *where* it happened: ``member`` (a file inside a bundle, shown
like a file name) and ``entry`` (a 0-based log index). The message never contains key
material or passphrases.
"""

from __future__ import annotations

from gpumeter.errors import GpumeterError

EXIT_VIOLATIONS = 3  # gpumeter.commandline.EXIT_VIOLATIONS; repeated here to keep the core free of the CLI
EXIT_UNPINNED = 4  # gpumeter.commandline.EXIT_UNPINNED, likewise


class AuditError(GpumeterError):
    """Base of every error the audit package raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        member: str | None = None,
        entry: int | None = None,
        value: object = None,
    ) -> None:
        super().__init__(message, file=member, value=value)
        self.member = member
        self.entry = entry

    def explain(self) -> str:
        text = super().explain()
        if self.entry is not None and self.member is None and not self.message.startswith(f"entry {self.entry} "):
            text = f"entry {self.entry}: {text}"
        return text


class EntryError(AuditError):
    """An entry is not a JSON object with ``type`` and an RFC 3339 UTC ``time``."""


class KeyFileError(AuditError):
    """A signing key or verifier key cannot be created, read or parsed."""


class PolicyError(AuditError):
    """A sovereignty boundary names an unknown set or country code."""


class TrustPolicyError(AuditError):
    """A trust policy (C2SP ``tlog-policy``) cannot be parsed or built; names file and line."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None, value: object = None):
        super().__init__(message, member=source, value=value)
        self.line = line


class WitnessError(AuditError):
    """Witnesses were asked to cosign a checkpoint and too few did."""


class SovereigntyViolation(AuditError):
    """A job ran, or declared data, outside the boundary in force."""

    exit_code = EXIT_VIOLATIONS


class UnpinnedKey(AuditError):
    """A bundle's checks hold, but only against the key it carries itself: nothing pinned it."""

    exit_code = EXIT_UNPINNED


class VerificationError(AuditError):
    """A proof, signature, hash or format does not hold."""

    exit_code = EXIT_VIOLATIONS


class BundleError(VerificationError):
    """A bundle member is unsafe (path, size, count) or malformed."""
