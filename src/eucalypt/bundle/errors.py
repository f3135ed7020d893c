"""Why a bundle was refused. Each error carries a short ``code`` that travels over the wire.

Walrus renders these as its error envelope (``Code``/``Message``) and the CLC
copies ``code: message`` into the image's ``StateReason``; the CLI prints the
message. Codes are stable strings, messages are for people.
"""

from __future__ import annotations

from typing import ClassVar


class BundleError(Exception):
    """Base: a bundle that cannot be built, verified or decrypted."""

    code: ClassVar[str] = "InvalidBundle"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class ManifestError(BundleError):
    """The manifest is not a well-formed EC2 bundle manifest."""

    code = "InvalidManifest"


class SignatureError(BundleError):
    """The manifest's signature does not verify with a certificate the cloud trusts."""

    code = "InvalidManifestSignature"


class BundleKeyError(BundleError):
    """The bundle's AES key cannot be decrypted with this key (another cloud's bundle?)."""

    code = "BundleKeyMismatch"


class DigestError(BundleError):
    """A part, or the image inside, does not match the digest the manifest signed."""

    code = "BundleDigestMismatch"


class PartMissing(BundleError):
    """A part the manifest lists is not there."""

    code = "BundlePartMissing"


class CorruptBundle(BundleError):
    """The decrypted stream is not the gzipped tar it should be (wrong key or corrupt data)."""

    code = "CorruptBundle"
