"""Incremental check of a streamed body against a signed SHA-256 (``x-amz-content-sha256``)."""

from __future__ import annotations

import hashlib
import hmac

from eucalypt.auth.canonical import is_sha256_hex
from eucalypt.auth.errors import AuthError, AuthFailure


class PayloadVerifier:
    """Hashes a body as it streams by; :meth:`verify` compares with the signed digest.

    Feed every byte of the body to :meth:`update`, then call :meth:`verify`,
    which raises ``AuthError(PAYLOAD_MISMATCH)`` if the body differs. Nothing
    read before ``verify`` returns may be treated as authenticated.
    """

    def __init__(self, expected_sha256_hex: str) -> None:
        expected = expected_sha256_hex.strip().lower()
        if not is_sha256_hex(expected):
            raise ValueError("expected_sha256_hex must be a 64-digit hex SHA-256")
        self._expected = expected
        self._hasher = hashlib.sha256()
        self._length = 0

    @property
    def length(self) -> int:
        """Bytes hashed so far."""
        return self._length

    def update(self, chunk: bytes) -> None:
        """Hash the next piece of the body."""
        self._hasher.update(chunk)
        self._length += len(chunk)

    def hexdigest(self) -> str:
        """The SHA-256 of what was fed so far."""
        return self._hasher.hexdigest()

    def verify(self) -> None:
        """Raise ``AuthError(PAYLOAD_MISMATCH)`` unless the body hashed to the expected digest."""
        if not hmac.compare_digest(self._hasher.hexdigest(), self._expected):
            raise AuthError(
                AuthFailure.PAYLOAD_MISMATCH,
                "The body does not match the x-amz-content-sha256 header; "
                "re-send the request with the SHA-256 of the body actually sent.",
            )


def payload_verifier(expected_sha256_hex: str) -> PayloadVerifier:
    """A :class:`PayloadVerifier` for a body that must hash to ``expected_sha256_hex``."""
    return PayloadVerifier(expected_sha256_hex)
