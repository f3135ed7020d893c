"""Why a request failed authentication.

Every failure in :mod:`eucalypt.auth` is an :class:`AuthError` whose
:attr:`~AuthError.reason` is one :class:`AuthFailure`. The wire protocols map
the reason to their own error codes (EC2 ``AuthFailure``, S3
``SignatureDoesNotMatch``, ...); the message is for the caller's human and says
what to do next. Messages never contain secrets or the expected signature.
"""

from __future__ import annotations

import enum


class AuthFailure(enum.Enum):
    """The kinds of authentication failure.

    ``MISSING``           no auth information at all (callers decide about anonymous access)
    ``MALFORMED``         unparseable Authorization / parameters, a required header not signed,
                          bad credential scope, unsupported algorithm or signature version
    ``UNKNOWN_KEY``       the access key id is not in the credential store
    ``INACTIVE_KEY``      the key exists but is deactivated
    ``BAD_SIGNATURE``     the signature does not match
    ``SKEWED``            the request time is too far from the server clock
    ``EXPIRED``           a presigned URL (X-Amz-Expires) or SigV2 ``Expires`` has passed
    ``PAYLOAD_MISMATCH``  the body does not hash to ``x-amz-content-sha256``
    ``BAD_CHUNK``         an aws-chunked chunk signature is wrong or the framing is broken
    """

    MISSING = "missing"
    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    INACTIVE_KEY = "inactive_key"
    BAD_SIGNATURE = "bad_signature"
    SKEWED = "skewed"
    EXPIRED = "expired"
    PAYLOAD_MISMATCH = "payload_mismatch"
    BAD_CHUNK = "bad_chunk"


class AuthError(Exception):
    """Why a request failed authentication.

    Each wire protocol maps :attr:`reason` to its own error code; :attr:`message`
    is human readable and says what to do next.
    """

    def __init__(self, reason: AuthFailure, message: str) -> None:
        super().__init__(message)
        self.reason: AuthFailure = reason
        self.message: str = message

    def __repr__(self) -> str:
        return f"AuthError({self.reason.name}, {self.message!r})"
