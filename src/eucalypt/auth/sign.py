"""Client-side signing: SigV4 (headers, presigned URLs, aws-chunked uploads) and SigV2.

Used by the internal RPC client (:class:`HttpxSigV4Auth`) and by tests. The
canonical forms are those of :mod:`eucalypt.auth.canonical`, so whatever is
signed here verifies with :func:`eucalypt.auth.authenticate`.

URLs are taken as they will be sent: the path percent-encoded (characters
that may not stand raw in a path are encoded here, existing ``%XX`` kept).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from eucalypt.auth import canonical as c
from eucalypt.auth.chunked import AwsChunkedEncoder, ChunkSigningContext, signed_chunked_length
from eucalypt.auth.clock import format_amz_date, format_iso8601, utc
from eucalypt.auth.credentials import Credential
from eucalypt.auth.sigv2 import (
    EC2_ALGORITHMS,
    ec2_string_to_sign,
    hmac_b64,
    s3_canonical_resource,
    s3_string_to_sign,
)

# Hop-by-hop and volatile headers that are never signed.
UNSIGNED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_from_url(parts: SplitResult) -> str:
    """The Host header a client sends for a URL: lower-case, port only when not the default."""
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{parts.port}"
    return host


@dataclass(frozen=True)
class _Signed:
    headers: dict[str, str]
    signature: str
    key: bytes
    scope: str
    amz_date: str


def _sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    credential: Credential,
    *,
    region: str,
    service: str,
    now: datetime | None,
    payload_hash: str,
) -> _Signed:
    moment = utc(now)
    parts = urlsplit(url)
    amz_date = format_amz_date(moment)
    present = {k.lower(): v for k, v in headers.items() if k.lower() != "authorization"}
    added: dict[str, str] = {}
    if "host" not in present:
        added["host"] = host_from_url(parts)
    added["x-amz-date"] = amz_date
    added["x-amz-content-sha256"] = payload_hash
    everything = {**present, **added}
    signed = sorted(n for n in everything if n not in UNSIGNED_HEADERS)
    uri = c.canonical_uri(c.wire_path(parts.path), s3=service == c.S3_SERVICE)
    creq = c.canonical_request(
        method, uri, c.canonical_query(parts.query), everything, signed, payload_hash
    )
    key = c.signing_key(credential.secret_key, amz_date[:8], region, service)
    scope = c.scope_of(amz_date[:8], region, service)
    sig = c.signature(key, c.string_to_sign(amz_date, scope, creq))
    added["authorization"] = (
        f"{c.ALGORITHM} Credential={credential.access_key}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={sig}"
    )
    return _Signed(added, sig, key, scope, amz_date)


def sign_v4(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    credential: Credential,
    *,
    region: str,
    service: str,
    now: datetime | None = None,
    unsigned_payload: bool = False,
    payload_hash: str | None = None,
) -> dict[str, str]:
    """Returns the headers to add (authorization, x-amz-date, x-amz-content-sha256, host if absent).

    Every header in ``headers`` except hop-by-hop ones (and ``user-agent``) is
    signed. The payload hash is ``payload_hash`` if given, else
    ``UNSIGNED-PAYLOAD`` when ``unsigned_payload``, else ``sha256(body or b"")``.
    """
    if payload_hash is None:
        payload_hash = c.UNSIGNED_PAYLOAD if unsigned_payload else c.sha256_hex(body or b"")
    return _sign(
        method,
        url,
        headers,
        credential,
        region=region,
        service=service,
        now=now,
        payload_hash=payload_hash,
    ).headers


def sign_v4_streaming(
    method: str,
    url: str,
    headers: Mapping[str, str],
    credential: Credential,
    *,
    region: str,
    service: str,
    decoded_length: int,
    chunk_size: int,
    now: datetime | None = None,
) -> tuple[dict[str, str], AwsChunkedEncoder]:
    """Sign a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` upload cut into ``chunk_size`` chunks.

    Returns the headers to add (including ``content-encoding``,
    ``content-length`` and ``x-amz-decoded-content-length``) and the encoder
    that frames and signs the chunks; feed it pieces of exactly
    ``chunk_size`` bytes (the last may be shorter) so the length holds.
    """
    extra = {
        "content-encoding": "aws-chunked",
        "content-length": str(signed_chunked_length(decoded_length, chunk_size)),
        "x-amz-decoded-content-length": str(decoded_length),
    }
    present = {k.lower(): v for k, v in headers.items()}
    signed = _sign(
        method,
        url,
        {**present, **extra},
        credential,
        region=region,
        service=service,
        now=now,
        payload_hash=c.STREAMING_PAYLOAD,
    )
    ctx = ChunkSigningContext(
        seed_signature=signed.signature,
        signing_key=signed.key,
        scope=signed.scope,
        amz_date=signed.amz_date,
    )
    return {**extra, **signed.headers}, AwsChunkedEncoder(ctx)


def presign_v4(
    method: str,
    url: str,
    credential: Credential,
    *,
    region: str,
    service: str,
    expires: int,
    now: datetime | None = None,
) -> str:
    """A presigned URL (signed header: ``host``; payload ``UNSIGNED-PAYLOAD``)."""
    if not 1 <= expires <= c.MAX_PRESIGN_EXPIRES:
        raise ValueError(f"expires must be 1..{c.MAX_PRESIGN_EXPIRES} seconds")
    parts = urlsplit(url)
    amz_date = format_amz_date(utc(now))
    scope = c.scope_of(amz_date[:8], region, service)
    auth_query = c.encode_query(
        [
            ("X-Amz-Algorithm", c.ALGORITHM),
            ("X-Amz-Credential", f"{credential.access_key}/{scope}"),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", "host"),
        ]
    )
    query = f"{parts.query}&{auth_query}" if parts.query else auth_query
    path = c.wire_path(parts.path)
    creq = c.canonical_request(
        method,
        c.canonical_uri(path, s3=service == c.S3_SERVICE),
        c.canonical_query(query),
        {"host": host_from_url(parts)},
        ["host"],
        c.UNSIGNED_PAYLOAD,
    )
    key = c.signing_key(credential.secret_key, amz_date[:8], region, service)
    sig = c.signature(key, c.string_to_sign(amz_date, scope, creq))
    return urlunsplit((parts.scheme, parts.netloc, path, f"{query}&X-Amz-Signature={sig}", ""))


def sign_v2_query(
    method: str,
    host: str,
    path: str,
    params: Mapping[str, str],
    credential: Credential,
    *,
    now: datetime | None = None,
    algorithm: str = "HmacSHA256",
) -> dict[str, str]:
    """EC2 SigV2: returns ``params`` plus AWSAccessKeyId, SignatureVersion, SignatureMethod,
    Timestamp (unless ``Timestamp`` or ``Expires`` is given) and Signature.

    ``host`` is the Host header as sent (with ``:port`` when not the default).
    """
    digest = EC2_ALGORITHMS.get(algorithm)
    if digest is None:
        raise ValueError("algorithm must be HmacSHA256 or HmacSHA1")
    out = {k: v for k, v in params.items() if k != "Signature"}
    out.update(
        AWSAccessKeyId=credential.access_key, SignatureVersion="2", SignatureMethod=algorithm
    )
    if "Timestamp" not in out and "Expires" not in out:
        out["Timestamp"] = format_iso8601(utc(now))
    sts = ec2_string_to_sign(method, host, path, list(out.items()))
    out["Signature"] = hmac_b64(credential.secret_key, sts, digest)
    return out


def sign_s3_v2(
    method: str,
    path_with_subresources: str,
    headers: Mapping[str, str],
    credential: Credential,
) -> str:
    """S3 SigV2 header signing; returns the ``Authorization`` value ``AWS AKID:sig``.

    ``path_with_subresources`` is the canonical path (``/bucket/key``, with the
    bucket even for virtual-hosted requests) optionally followed by the query;
    only S3 sub-resources in it are signed. ``headers`` must hold ``Date`` or
    ``x-amz-date``.
    """
    path, _, query = path_with_subresources.partition("?")
    lowered = {k.lower(): v for k, v in headers.items()}
    if "x-amz-date" in lowered:
        date_line = ""
    elif "date" in lowered:
        date_line = lowered["date"].strip()
    else:
        raise ValueError("S3 SigV2 needs a Date or x-amz-date header")
    sts = s3_string_to_sign(
        method, lowered, s3_canonical_resource(path, query), date_line=date_line
    )
    return f"AWS {credential.access_key}:{hmac_b64(credential.secret_key, sts, 'sha1')}"


class HttpxSigV4Auth(httpx.Auth):
    """Signs each httpx request with :func:`sign_v4` for one service and region."""

    requires_request_body = True

    def __init__(
        self,
        credential: Credential,
        *,
        region: str,
        service: str,
        unsigned_payload: bool = False,
    ) -> None:
        self.credential = credential
        self.region = region
        self.service = service
        self.unsigned_payload = unsigned_payload

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        merged: dict[str, str] = {}
        for name, value in request.headers.multi_items():
            key = name.lower()
            merged[key] = f"{merged[key]},{value.strip()}" if key in merged else value.strip()
        url = request.url
        raw_target = url.raw_path.decode("ascii")
        full = f"{url.scheme}://{url.netloc.decode('ascii')}{raw_target}"
        added = sign_v4(
            request.method,
            full,
            merged,
            request.content,
            self.credential,
            region=self.region,
            service=self.service,
            unsigned_payload=self.unsigned_payload,
        )
        for name, value in added.items():
            request.headers[name] = value
        yield request
