"""The SigV4 canonical forms, shared by the verifier and the signer.

Everything here is pure string work, following AWS's SigV4 rules:

* canonical URI: for S3 the path exactly as sent; for every other service
  (``ec2``, ``eucalypt``, ...) the path with dot segments and empty segments
  removed and then URI-encoded once more ("double encoding");
* canonical query: each parameter decoded, re-encoded with RFC 3986 rules
  (everything but ``A-Za-z0-9-_.~`` as ``%XX``), sorted by encoded key then
  encoded value;
* canonical headers: ``name:value`` with values trimmed and inner runs of
  whitespace collapsed to one space;
* signing key: the HMAC chain ``AWS4<secret>`` → date → region → service →
  ``aws4_request``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Mapping, Sequence
from urllib.parse import quote, unquote

from eucalypt.auth.request import decode_component, split_query, wire_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
S3_SERVICE = "s3"

# Characters that may stand unencoded in a path on the wire (RFC 3986 pchar, "/" and "%").
_WIRE_PATH_SAFE = "/%!$&'()*+,;=:@~"
_HEX = frozenset("0123456789abcdef")


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """True for a 64-character lower-case hex string."""
    return len(value) == 64 and all(c in _HEX for c in value)


def hmac_sha256(key: bytes, message: str) -> bytes:
    """HMAC-SHA256 of a UTF-8 message."""
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key for one day (``YYYYMMDD``), region and service."""
    key = hmac_sha256(("AWS4" + secret).encode("utf-8"), date)
    key = hmac_sha256(key, region)
    key = hmac_sha256(key, service)
    return hmac_sha256(key, TERMINATOR)


def scope_of(date: str, region: str, service: str) -> str:
    """The credential scope ``YYYYMMDD/region/service/aws4_request``."""
    return f"{date}/{region}/{service}/{TERMINATOR}"


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """RFC 3986 encoding of UTF-8 text: only ``A-Za-z0-9-_.~`` (and ``/`` if asked) stay."""
    return quote(wire_bytes(text), safe="/" if keep_slash else "")


def wire_path(path: str) -> str:
    """Percent-encode what may not stand raw in a path; existing ``%XX`` escapes are kept."""
    return quote(wire_bytes(path), safe=_WIRE_PATH_SAFE) or "/"


def normalize_path(path: str) -> str:
    """Remove ``.``/``..`` and empty segments (RFC 3986 5.2.4 plus AWS's slash collapsing)."""
    if not path:
        return "/"
    out: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    lead = "/" if path.startswith("/") else ""
    trail = "/" if path.endswith("/") and out else ""
    return lead + "/".join(out) + trail


def canonical_uri(path: str, *, s3: bool) -> str:
    """The canonical URI of a raw (as sent) path: as is for S3, else normalised and re-encoded."""
    if not path:
        return "/"
    if s3:
        return path
    return uri_encode(normalize_path(path), keep_slash=True)


def s3_reencoded_uri(path: str) -> str:
    """A raw S3 path with every segment decoded and RFC 3986 encoded again.

    Equals the path as sent for clients that encode like the AWS SDKs; it is
    the fallback for clients that leave some reserved characters raw.
    """
    if not path:
        return "/"
    return "/".join(
        uri_encode(unquote(segment, encoding="utf-8", errors="surrogateescape"))
        for segment in path.split("/")
    )


def canonical_query(raw_query: str, *, exclude: Collection[str] = ()) -> str:
    """The canonical query string of a raw query; parameters named in ``exclude`` are left out."""
    pairs: list[tuple[str, str]] = []
    for raw_key, raw_value, _ in split_query(raw_query):
        key = decode_component(raw_key)
        if key in exclude:
            continue
        pairs.append((uri_encode(key), uri_encode(decode_component(raw_value))))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def encode_query(pairs: Sequence[tuple[str, str]]) -> str:
    """A query string of ``pairs`` in the given order, RFC 3986 encoded."""
    return "&".join(f"{uri_encode(k)}={uri_encode(v)}" for k, v in pairs)


def trim_value(value: str) -> str:
    """A header value trimmed, with inner runs of whitespace collapsed to one space."""
    return " ".join(value.split())


def canonical_headers(headers: Mapping[str, str], names: Sequence[str]) -> str:
    """``name:value\\n`` for each signed header name, in the order given (lower-case, sorted)."""
    return "".join(f"{name}:{trim_value(headers.get(name, ''))}\n" for name in names)


def canonical_request(
    method: str,
    uri: str,
    query: str,
    headers: Mapping[str, str],
    signed: Sequence[str],
    payload_hash: str,
) -> str:
    """The SigV4 canonical request."""
    return "\n".join(
        [
            method.upper(),
            uri,
            query,
            canonical_headers(headers, signed),
            ";".join(signed),
            payload_hash,
        ]
    )


def string_to_sign(amz_date: str, scope: str, creq: str) -> str:
    """The SigV4 string to sign for a canonical request."""
    digest = sha256_hex(creq.encode("utf-8", "surrogateescape"))
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signature(key: bytes, sts: str) -> str:
    """Hex HMAC-SHA256 of a string to sign with a signing key."""
    return hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
