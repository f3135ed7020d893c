"""What a successful authentication yields (re-exported by :mod:`eucalypt.auth.verify`)."""

from __future__ import annotations

from dataclasses import dataclass

from eucalypt.auth.chunked import ChunkSigningContext
from eucalypt.auth.credentials import Credential


@dataclass
class AuthResult:
    """A verified request.

    ``scheme`` is ``"v4"``, ``"v4-presigned"``, ``"v2"`` or ``"v2-presigned"``.
    ``payload_hash`` (SigV4 only) is the payload hash that was signed: the
    ``x-amz-content-sha256`` value (a hex digest, ``UNSIGNED-PAYLOAD``,
    ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``, ...), ``UNSIGNED-PAYLOAD`` for an S3
    presigned URL, or the SHA-256 of ``req.body`` (``b""`` when absent) for a
    request without the header. ``payload_verified`` is true when ``req.body``
    was given and checked against it; when a hex ``payload_hash`` was not
    verified (a streamed body), the caller must check the body with
    :func:`eucalypt.auth.payload_verifier`. ``region`` and ``service`` come
    from the SigV4 credential scope. ``chunk_context`` is set for
    ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` bodies, which must be read
    through :class:`eucalypt.auth.AwsChunkedDecoder`.
    """

    credential: Credential
    scheme: str
    payload_hash: str | None
    region: str | None
    service: str | None
    chunk_context: ChunkSigningContext | None
    payload_verified: bool = False
