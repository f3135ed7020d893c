"""AWS Signature Version 2: the EC2 Query form and the S3 (HMAC-SHA1) forms.

EC2 Query (``SignatureVersion=2``) string to sign::

    <METHOD>\\n<host, lower-case, :port if not default>\\n<path>\\n<sorted, RFC 3986 encoded params>

S3 string to sign (header ``Authorization: AWS <key>:<sig>`` or query
``AWSAccessKeyId``/``Signature``/``Expires``)::

    <METHOD>\\n<Content-MD5>\\n<Content-Type>\\n<Date or Expires>\\n<x-amz-* headers><resource>

where the resource is ``/bucket`` (virtual-hosted requests) + the path as sent
+ the sorted sub-resources (``?acl``, ``?partNumber=1&uploadId=...``, ...).
Both are signed by HMAC and sent base64-encoded.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from urllib.parse import unquote

from eucalypt.auth.canonical import uri_encode
from eucalypt.auth.clock import parse_http_date, parse_iso8601, skewed
from eucalypt.auth.credentials import CredentialStore
from eucalypt.auth.errors import AuthError, AuthFailure
from eucalypt.auth.request import HttpRequest, decode_pairs, split_query
from eucalypt.auth.result import AuthResult
from eucalypt.auth.sigv4 import lookup, malformed

EC2_ALGORITHMS: Mapping[str, str] = {"HmacSHA256": "sha256", "HmacSHA1": "sha1"}
S3_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory",
        "lifecycle", "location", "logging", "metrics", "notification", "object-lock",
        "partNumber", "policy", "replication", "requestPayment", "response-cache-control",
        "response-content-disposition", "response-content-encoding",
        "response-content-language", "response-content-type", "response-expires", "restore",
        "select", "select-type", "storageClass", "tagging", "torrent", "uploadId", "uploads",
        "versionId", "versioning", "versions", "website",
    }
)  # fmt: skip
_DEFAULT_PORTS = (":80", ":443")


def hmac_b64(secret: str, message: str, digest: str) -> str:
    """Base64 of the HMAC (``digest`` is a hashlib name) of a UTF-8 message."""
    mac = hmac.new(secret.encode("utf-8"), message.encode("utf-8", "surrogateescape"), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))


def ec2_string_to_sign(method: str, host: str, path: str, params: Sequence[tuple[str, str]]) -> str:
    """The EC2 SigV2 string to sign; ``Signature`` is left out of ``params``."""
    pairs = sorted((uri_encode(k), uri_encode(v), k) for k, v in params if k != "Signature")
    query = "&".join(f"{k}={v}" for k, v, _ in pairs)
    return f"{method.upper()}\n{host.lower()}\n{path or '/'}\n{query}"


def s3_canonical_resource(
    path: str, raw_query: str, bucket: str | None = None, *, bare_empty: bool = False
) -> str:
    """``/bucket`` (when virtual-hosted) + path as sent + sorted sub-resources.

    Sub-resource values are decoded; ``?acl=`` is kept as ``acl=`` as sent, or
    written ``acl`` when ``bare_empty`` is true.
    """
    resource = (f"/{bucket}" + (path or "/")) if bucket else (path or "/")
    subs = sorted(
        ((key, value, eq) for key, value, eq in split_query(raw_query) if key in S3_SUBRESOURCES),
        key=lambda item: item[0],
    )
    if not subs:
        return resource
    parts = [f"{k}={unquote(v)}" if eq and (v or not bare_empty) else k for k, v, eq in subs]
    return resource + "?" + "&".join(parts)


def s3_string_to_sign(
    method: str,
    headers: Mapping[str, str],
    resource: str,
    *,
    date_line: str,
    extra_amz: Mapping[str, str] | None = None,
) -> str:
    """The S3 SigV2 string to sign; ``headers`` has lower-case names."""
    amz: dict[str, str] = {k: v.strip() for k, v in headers.items() if k.startswith("x-amz-")}
    for key, value in (extra_amz or {}).items():
        amz.setdefault(key.lower(), value.strip())
    amz_block = "".join(f"{k}:{amz[k]}\n" for k in sorted(amz))
    return (
        f"{method.upper()}\n{headers.get('content-md5', '').strip()}\n"
        f"{headers.get('content-type', '').strip()}\n{date_line}\n{amz_block}{resource}"
    )


def _single(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in params:
        if key in found:
            raise malformed(f"The parameter {key} is given more than once.")
        found[key] = value
    return found


def _host_candidates(req: HttpRequest) -> list[str]:
    host = (req.headers.get("host") or "").strip().lower()
    if not host:
        raise malformed("A SigV2 request needs a Host header.")
    hosts = [host]
    for port in _DEFAULT_PORTS:
        if host.endswith(port):
            hosts.append(host[: -len(port)])
    return hosts


def _bad_signature() -> AuthError:
    return AuthError(
        AuthFailure.BAD_SIGNATURE,
        "The request signature we calculated does not match the signature you provided; "
        "check your secret access key and signing method.",
    )


async def verify_ec2_v2(
    req: HttpRequest,
    store: CredentialStore,
    params: Sequence[tuple[str, str]],
    *,
    now: datetime,
    max_skew: timedelta,
) -> AuthResult:
    """Verify an EC2 Query SigV2 request whose parameters (query + form body) are ``params``."""
    found = _single(params)
    missing = [p for p in ("AWSAccessKeyId", "Signature", "SignatureMethod") if p not in found]
    if missing:
        raise malformed(f"A SigV2 request needs {', '.join(missing)}.")
    if found.get("SignatureVersion") != "2":
        raise malformed("Only SignatureVersion 2 (or SigV4) is supported.")
    digest = EC2_ALGORITHMS.get(found["SignatureMethod"])
    if digest is None:
        raise malformed("SignatureMethod must be HmacSHA256 or HmacSHA1.")
    if ("Timestamp" in found) == ("Expires" in found):
        raise malformed("A SigV2 request needs exactly one of Timestamp and Expires.")
    credential = await lookup(store, found["AWSAccessKeyId"])
    if "Timestamp" in found:
        stamp = parse_iso8601(found["Timestamp"])
        if stamp is None:
            raise malformed("Timestamp must be ISO 8601, e.g. 2024-01-31T12:00:00Z.")
        if skewed(stamp, now, max_skew):
            raise AuthError(
                AuthFailure.SKEWED,
                f"The request Timestamp {found['Timestamp']} is too far from the server time; "
                "correct your clock.",
            )
    else:
        expires = parse_iso8601(found["Expires"])
        if expires is None:
            raise malformed("Expires must be ISO 8601, e.g. 2024-01-31T12:00:00Z.")
        if now > expires:
            raise AuthError(
                AuthFailure.EXPIRED, f"The request expired at {found['Expires']}; sign it again."
            )
    given = found["Signature"].replace(" ", "+")
    ok = False
    for host in _host_candidates(req):
        sts = ec2_string_to_sign(req.method, host, req.path, params)
        ok |= _same(hmac_b64(credential.secret_key, sts, digest), given)
    if not ok:
        raise _bad_signature()
    return AuthResult(credential, "v2", None, None, None, None)


def parse_s3_header(value: str) -> tuple[str, str]:
    """``AWS <access key>:<signature>`` → (access key, signature)."""
    _, _, rest = value.strip().partition(" ")
    access_key, colon, sig = rest.strip().partition(":")
    if not colon or not access_key or not sig:
        raise malformed("The Authorization header must be 'AWS <access key>:<signature>'.")
    return access_key, sig.strip()


def _resource_candidates(req: HttpRequest, bucket: str | None) -> list[str]:
    """The canonical resources a client may have signed for this request.

    botocore signs a path-style bucket request as ``/bucket/`` while sending
    ``/bucket`` (S3 accepts both), so a bare one-segment path is tried with
    the slash too.
    """
    paths = [req.path]
    if bucket is None and req.path.count("/") == 1 and len(req.path) > 1:
        paths.append(req.path + "/")
    out: list[str] = []
    for path in paths:
        for bare in (False, True):
            resource = s3_canonical_resource(path, req.raw_query, bucket, bare_empty=bare)
            if resource not in out:
                out.append(resource)
    return out


async def verify_s3_v2(
    req: HttpRequest,
    store: CredentialStore,
    *,
    now: datetime,
    max_skew: timedelta,
    bucket: str | None,
) -> AuthResult:
    """Verify an S3 SigV2 request, header form or query (presigned) form."""
    header = req.headers.get("authorization")
    extra_amz: dict[str, str] = {}
    headers = dict(req.headers)
    if header is not None:
        access_key, given = parse_s3_header(header)
        scheme = "v2"
        stamp_text = headers.get("x-amz-date") or headers.get("date")
        stamp = parse_http_date(stamp_text) if stamp_text else None
        if stamp is None:
            raise malformed("An S3 SigV2 request needs a valid Date or x-amz-date header.")
        if "x-amz-date" in headers:
            date_lines = ["", headers.get("date", "").strip()]
        else:
            date_lines = [headers["date"].strip()]
    else:
        found = _single(
            [
                (k, v)
                for k, v in decode_pairs(req.raw_query)
                if k in ("AWSAccessKeyId", "Signature", "Expires")
            ]
        )
        if len(found) != 3:
            raise malformed("An S3 presigned URL needs AWSAccessKeyId, Signature and Expires.")
        access_key, given, scheme = found["AWSAccessKeyId"], found["Signature"], "v2-presigned"
        if not found["Expires"].isdigit():
            raise malformed("Expires must be seconds since the epoch.")
        date_lines = [found["Expires"]]
        for key, value in decode_pairs(req.raw_query):
            lowered = key.lower()
            if lowered.startswith("x-amz-"):
                extra_amz[lowered] = value
            elif lowered in ("content-type", "content-md5"):
                headers.setdefault(lowered, value)
        stamp = None
    credential = await lookup(store, access_key)
    if stamp is not None and skewed(stamp, now, max_skew):
        raise AuthError(
            AuthFailure.SKEWED,
            "The difference between the request time and the server time is too large; "
            "correct your clock.",
        )
    if stamp is None and now.timestamp() > int(date_lines[0]):
        raise AuthError(AuthFailure.EXPIRED, "The presigned URL has expired; generate a new one.")
    given = given.replace(" ", "+")
    ok = False
    for resource in _resource_candidates(req, bucket):
        for date_line in dict.fromkeys(date_lines):
            sts = s3_string_to_sign(
                req.method, headers, resource, date_line=date_line, extra_amz=extra_amz
            )
            ok |= _same(hmac_b64(credential.secret_key, sts, "sha1"), given)
    if not ok:
        raise _bad_signature()
    return AuthResult(credential, scheme, None, None, None, None)
