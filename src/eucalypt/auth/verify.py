"""Authenticate a request signed with SigV4 or SigV2, whatever form it takes.

Recognised forms, in order of precedence:

* ``Authorization: AWS4-HMAC-SHA256 ...``  → SigV4, scheme ``v4``
* ``Authorization: AWS <key>:<sig>``        → S3 SigV2, scheme ``v2``
* ``X-Amz-Algorithm``/``X-Amz-Credential``/``X-Amz-Signature`` in the query → ``v4-presigned``
* ``SignatureVersion`` in the query or in a form POST body → EC2 Query SigV2, ``v2``
* ``AWSAccessKeyId`` + ``Signature`` in the query → S3 presigned SigV2, ``v2-presigned``

A request mixing a header signature with query signature parameters, or
with an unknown ``Authorization`` scheme, is ``MALFORMED``; one with none of
these is ``MISSING`` (callers decide whether anonymous access is allowed).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from eucalypt.auth.chunked import AwsChunkedDecoder, ChunkSigningContext, decode_aws_chunked
from eucalypt.auth.clock import utc
from eucalypt.auth.credentials import CredentialStore
from eucalypt.auth.errors import AuthError, AuthFailure
from eucalypt.auth.keycache import SigningKeyCache
from eucalypt.auth.payload import PayloadVerifier, payload_verifier
from eucalypt.auth.request import HttpRequest, decode_pairs
from eucalypt.auth.result import AuthResult
from eucalypt.auth.sigv2 import verify_ec2_v2, verify_s3_v2
from eucalypt.auth.sigv4 import (
    QUERY_MARKERS,
    malformed,
    parse_header_auth,
    parse_query_auth,
    verify_v4,
)

__all__ = [
    "AuthResult",
    "AwsChunkedDecoder",
    "ChunkSigningContext",
    "PayloadVerifier",
    "authenticate",
    "decode_aws_chunked",
    "has_auth",
    "payload_verifier",
]

DEFAULT_MAX_SKEW = timedelta(minutes=15)
_V2_MARKERS = frozenset({"AWSAccessKeyId", "Signature", "SignatureVersion"})


def _query_keys(req: HttpRequest) -> set[str]:
    return {key for key, _ in decode_pairs(req.raw_query)}


def has_auth(req: HttpRequest) -> bool:
    """True when the request carries any V2 or V4 auth (header or query)."""
    if req.headers.get("authorization"):
        return True
    keys = _query_keys(req)
    if keys & QUERY_MARKERS or keys & _V2_MARKERS:
        return True
    return any(key in _V2_MARKERS or key in QUERY_MARKERS for key, _ in req.form_pairs())


async def authenticate(
    req: HttpRequest,
    store: CredentialStore,
    *,
    now: datetime | None = None,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    s3_bucket_from_host: str | None = None,
    services: Collection[str] | None = None,
    signing_keys: SigningKeyCache | None = None,
) -> AuthResult:
    """Verify a SigV4 (header or presigned query) or SigV2 request; raise :class:`AuthError`.

    SigV2 covers the EC2 Query form (``SignatureVersion=2``, ``HmacSHA256`` or
    ``HmacSHA1``; parameters in the query string or in an
    ``application/x-www-form-urlencoded`` POST body given in ``req.body``), the
    S3 ``Authorization: AWS AKID:sig`` header form and the S3 query form
    (``AWSAccessKeyId``/``Signature``/``Expires``). ``s3_bucket_from_host``
    is the bucket of a virtual-hosted S3 request (taken from the Host
    header), which S3 SigV2 signs as part of the resource.

    For SigV4 with a hex ``x-amz-content-sha256`` and ``req.body`` present the
    body hash is checked (``PAYLOAD_MISMATCH``); without the header the signed
    payload hash is ``sha256(req.body or b'')``. ``services``, when given, lists
    the SigV4 credential-scope services this endpoint accepts (others are
    ``MALFORMED``); callers that do not pass it should check ``result.service``.

    ``now`` defaults to the current time; header-signed requests more than
    ``max_skew`` away from it are ``SKEWED``. ``signing_keys`` (a server-owned
    :class:`SigningKeyCache`) saves deriving the SigV4 signing key per request.
    """
    moment = utc(now)
    header = (req.headers.get("authorization") or "").strip()
    query_keys = _query_keys(req)
    if header:
        if query_keys & QUERY_MARKERS or {"AWSAccessKeyId", "Signature"} <= query_keys:
            raise malformed(
                "Only one auth mechanism allowed: an Authorization header "
                "or query-string signature parameters, not both."
            )
        scheme = header.split(" ", 1)[0]
        if scheme == "AWS4-HMAC-SHA256":
            auth = parse_header_auth(req, header)
            return await verify_v4(
                req,
                store,
                auth,
                now=moment,
                max_skew=max_skew,
                services=services,
                signing_keys=signing_keys,
            )
        if scheme == "AWS":
            return await verify_s3_v2(
                req, store, now=moment, max_skew=max_skew, bucket=s3_bucket_from_host
            )
        raise malformed(
            f"Unsupported authorization scheme {scheme[:40]!r}; sign with AWS4-HMAC-SHA256."
        )
    if query_keys & QUERY_MARKERS:
        auth = parse_query_auth(req)
        return await verify_v4(
            req,
            store,
            auth,
            now=moment,
            max_skew=max_skew,
            services=services,
            signing_keys=signing_keys,
        )
    form = req.form_pairs() if req.method == "POST" else []
    if "SignatureVersion" in query_keys or any(k == "SignatureVersion" for k, _ in form):
        params = decode_pairs(req.raw_query) + form
        return await verify_ec2_v2(req, store, params, now=moment, max_skew=max_skew)
    if "AWSAccessKeyId" in query_keys and "Signature" in query_keys:
        return await verify_s3_v2(
            req, store, now=moment, max_skew=max_skew, bucket=s3_bucket_from_host
        )
    if any(k in ("AWSAccessKeyId", "Signature") for k, _ in form):
        raise malformed("A SigV2 request needs SignatureVersion=2.")
    raise AuthError(
        AuthFailure.MISSING,
        "The request carries no signature; sign it with AWS Signature Version 4.",
    )
