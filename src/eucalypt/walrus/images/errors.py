"""The image service's errors: bundle refusals as S3 error envelopes.

Each :class:`~eucalypt.bundle.errors.BundleError` keeps its code (``Code``
in the XML) and message; the HTTP status says whose fault it is.
"""

from __future__ import annotations

from eucalypt.bundle.errors import (
    BundleError,
    BundleKeyError,
    CorruptBundle,
    DigestError,
    ManifestError,
    PartMissing,
    SignatureError,
)
from eucalypt.walrus.errors import S3Error


class ImageRefused(S3Error):
    """The bundle cannot be served (the message says why)."""

    code = "InvalidBundle"
    message = "The image bundle cannot be verified or decrypted."
    status = 400


def _refusal(name: str, code: str, status: int) -> type[ImageRefused]:
    return type(name, (ImageRefused,), {"code": code, "status": status})


_STATUS: dict[type[BundleError], int] = {
    ManifestError: 400,
    SignatureError: 403,
    BundleKeyError: 400,
    DigestError: 400,
    CorruptBundle: 400,
    PartMissing: 404,
}
_CLASSES: dict[str, type[ImageRefused]] = {
    cls.code: _refusal(cls.__name__ + "Refused", cls.code, status)
    for cls, status in _STATUS.items()
}


def refused(code: str, message: str) -> ImageRefused:
    """The S3 error for a bundle refusal with ``code`` (as recorded or raised)."""
    cls = _CLASSES.get(code, ImageRefused)
    return cls(message)


def from_bundle_error(exc: BundleError) -> ImageRefused:
    return refused(exc.code, exc.message)
