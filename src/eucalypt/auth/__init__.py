"""eucalypt.auth: verification and signing of AWS Signature Version 4 and Version 2.

Servers build an :class:`HttpRequest` from what they received and call
:func:`authenticate`, which returns an :class:`AuthResult` or raises
:class:`AuthError` (its :class:`AuthFailure` reason maps to each protocol's
error code). Streamed bodies are then checked with :func:`payload_verifier`
(hex ``x-amz-content-sha256``) or decoded by :class:`AwsChunkedDecoder`
(``aws-chunked`` uploads). A server may keep a :class:`SigningKeyCache` and
pass it to :func:`authenticate`. Clients sign with :func:`sign_v4`,
:func:`presign_v4`, :func:`sign_v2_query`, :func:`sign_s3_v2` or
:class:`HttpxSigV4Auth`. The package imports no web framework.
"""

from eucalypt.auth.chunked import (
    AwsChunkedDecoder,
    AwsChunkedEncoder,
    ChunkSigningContext,
    decode_aws_chunked,
    signed_chunked_length,
)
from eucalypt.auth.credentials import (
    ChainCredentialStore,
    Credential,
    CredentialStore,
    StaticCredentialStore,
)
from eucalypt.auth.errors import AuthError, AuthFailure
from eucalypt.auth.keycache import SigningKeyCache
from eucalypt.auth.payload import PayloadVerifier, payload_verifier
from eucalypt.auth.request import HttpRequest
from eucalypt.auth.result import AuthResult
from eucalypt.auth.sign import (
    HttpxSigV4Auth,
    presign_v4,
    sign_s3_v2,
    sign_v2_query,
    sign_v4,
    sign_v4_streaming,
)
from eucalypt.auth.verify import authenticate, has_auth

__all__ = [
    "AuthError",
    "AuthFailure",
    "AuthResult",
    "AwsChunkedDecoder",
    "AwsChunkedEncoder",
    "ChainCredentialStore",
    "ChunkSigningContext",
    "Credential",
    "CredentialStore",
    "HttpRequest",
    "HttpxSigV4Auth",
    "PayloadVerifier",
    "SigningKeyCache",
    "StaticCredentialStore",
    "authenticate",
    "decode_aws_chunked",
    "has_auth",
    "payload_verifier",
    "presign_v4",
    "sign_s3_v2",
    "sign_v2_query",
    "sign_v4",
    "sign_v4_streaming",
    "signed_chunked_length",
]
