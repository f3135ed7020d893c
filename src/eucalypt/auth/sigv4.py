"""Verification of AWS Signature Version 4: ``Authorization`` header and presigned query forms.

The order of checks is: parse (``MALFORMED``), look up the key
(``UNKNOWN_KEY``/``INACTIVE_KEY``), the clock (``SKEWED``/``EXPIRED``), the
signature (``BAD_SIGNATURE``), then the body hash (``PAYLOAD_MISMATCH``).

Every ``x-amz-*`` header the request carries must be signed (except
``x-amz-date`` and ``x-amz-content-sha256``, whose values enter the string to
sign anyway), so an unsigned ``x-amz-acl`` or ``x-amz-copy-source`` cannot be
slipped into a signed request.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from eucalypt.auth import canonical as c
from eucalypt.auth.chunked import ChunkSigningContext
from eucalypt.auth.clock import format_amz_date, parse_amz_date, parse_http_date, skewed
from eucalypt.auth.credentials import Credential, CredentialStore
from eucalypt.auth.errors import AuthError, AuthFailure
from eucalypt.auth.keycache import SigningKeyCache
from eucalypt.auth.request import HttpRequest, decode_pairs
from eucalypt.auth.result import AuthResult

PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
QUERY_MARKERS = frozenset({"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"})
_BOUND_HEADERS = frozenset({"x-amz-date", "x-amz-content-sha256"})
_TOKENS = frozenset(
    {
        c.UNSIGNED_PAYLOAD,
        c.STREAMING_PAYLOAD,
        c.STREAMING_PAYLOAD_TRAILER,
        c.STREAMING_UNSIGNED_TRAILER,
    }
)
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class V4Auth:
    """The parsed SigV4 authentication of one request."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    signed_at: datetime
    presigned: bool
    expires: int | None = None

    @property
    def scope(self) -> str:
        return c.scope_of(self.date, self.region, self.service)


def malformed(message: str) -> AuthError:
    return AuthError(AuthFailure.MALFORMED, message)


def _parse_credential(value: str) -> tuple[str, str, str, str]:
    parts = value.split("/")
    if len(parts) < 5 or parts[-1] != c.TERMINATOR or not parts[0]:
        raise malformed(
            "The credential must be <access key>/<YYYYMMDD>/<region>/<service>/aws4_request."
        )
    access_key = "/".join(parts[:-4])
    date, region, service = parts[-4], parts[-3], parts[-2]
    if len(date) != 8 or not date.isdigit() or not region or not service:
        raise malformed(f"The credential scope {'/'.join(parts[-4:])!r} is not valid.")
    return access_key, date, region, service


def _parse_signed_headers(value: str) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not value or any(not n or n != n.strip().lower() for n in names):
        raise malformed("SignedHeaders must be lower-case header names separated by ';'.")
    if len(set(names)) != len(names):
        raise malformed("SignedHeaders names a header twice.")
    if "host" not in names:
        raise malformed("The host header must be signed (add it to SignedHeaders).")
    return names


def _parse_signature(value: str) -> str:
    if len(value) != 64 or not set(value) <= _HEX:
        raise malformed("The signature must be 64 hex digits.")
    return value.lower()


def parse_header_auth(req: HttpRequest, value: str) -> V4Auth:
    """Parse ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != c.ALGORITHM:
        raise malformed(f"Unsupported authorization algorithm {algorithm!r}; use {c.ALGORITHM}.")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, field_value = part.strip().partition("=")
        if not eq or name in fields:
            raise malformed(
                "The Authorization header is malformed; expected "
                "'Credential=..., SignedHeaders=..., Signature=...'."
            )
        fields[name] = field_value.strip()
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if n not in fields]
    if missing:
        raise malformed(f"The Authorization header lacks {', '.join(missing)}.")
    access_key, date, region, service = _parse_credential(fields["Credential"])
    amz_header = req.headers.get("x-amz-date")
    if amz_header is not None:
        signed_at = parse_amz_date(amz_header.strip())
        amz_date = amz_header.strip()
        if signed_at is None:
            raise malformed("x-amz-date must be YYYYMMDDTHHMMSSZ.")
    else:
        date_header = req.headers.get("date")
        signed_at = parse_http_date(date_header) if date_header else None
        if signed_at is None:
            raise malformed("A SigV4 request needs a valid x-amz-date (or Date) header.")
        amz_date = format_amz_date(signed_at)
    if amz_date[:8] != date:
        raise malformed(f"The credential date {date} is not the request date {amz_date[:8]}.")
    return V4Auth(
        access_key=access_key,
        date=date,
        region=region,
        service=service,
        signed_headers=_parse_signed_headers(fields["SignedHeaders"]),
        signature=_parse_signature(fields["Signature"]),
        amz_date=amz_date,
        signed_at=signed_at,
        presigned=False,
    )


def parse_query_auth(req: HttpRequest) -> V4Auth:
    """Parse the ``X-Amz-*`` parameters of a presigned URL."""
    found: dict[str, str] = {}
    for key, value in decode_pairs(req.raw_query):
        if key in PRESIGN_PARAMS:
            if key in found:
                raise malformed(f"The query repeats {key}.")
            found[key] = value
    missing = [p for p in PRESIGN_PARAMS if p not in found]
    if missing:
        raise malformed(f"A presigned URL needs {', '.join(missing)}.")
    if found["X-Amz-Algorithm"] != c.ALGORITHM:
        raise malformed(f"Unsupported X-Amz-Algorithm; use {c.ALGORITHM}.")
    access_key, date, region, service = _parse_credential(found["X-Amz-Credential"])
    signed_at = parse_amz_date(found["X-Amz-Date"])
    if signed_at is None:
        raise malformed("X-Amz-Date must be YYYYMMDDTHHMMSSZ.")
    if found["X-Amz-Date"][:8] != date:
        raise malformed("The X-Amz-Credential date is not the X-Amz-Date date.")
    expires_text = found["X-Amz-Expires"]
    if not expires_text.isdigit() or int(expires_text) > c.MAX_PRESIGN_EXPIRES:
        raise malformed(f"X-Amz-Expires must be a number of seconds up to {c.MAX_PRESIGN_EXPIRES}.")
    return V4Auth(
        access_key=access_key,
        date=date,
        region=region,
        service=service,
        signed_headers=_parse_signed_headers(found["X-Amz-SignedHeaders"]),
        signature=_parse_signature(found["X-Amz-Signature"]),
        amz_date=found["X-Amz-Date"],
        signed_at=signed_at,
        presigned=True,
        expires=int(expires_text),
    )


async def lookup(store: CredentialStore, access_key: str) -> Credential:
    """The active credential of ``access_key``, or ``UNKNOWN_KEY``/``INACTIVE_KEY``."""
    credential = await store.lookup(access_key)
    if credential is None:
        raise AuthError(
            AuthFailure.UNKNOWN_KEY,
            "The access key ID you provided does not exist in our records; check the key.",
        )
    if not credential.active:
        raise AuthError(
            AuthFailure.INACTIVE_KEY,
            "The access key ID you provided is inactive; activate it or use another key.",
        )
    return credential


def check_clock(auth: V4Auth, now: datetime, max_skew: timedelta) -> None:
    """``SKEWED`` if signed too far from ``now``; ``EXPIRED`` past a presigned URL's lifetime."""
    if auth.presigned:
        assert auth.expires is not None
        if auth.signed_at - now > max_skew:
            raise AuthError(
                AuthFailure.SKEWED,
                f"The presigned URL is not valid before {auth.amz_date}; check your clock.",
            )
        if now > auth.signed_at + timedelta(seconds=auth.expires):
            raise AuthError(
                AuthFailure.EXPIRED,
                f"The presigned URL expired {auth.expires} s after {auth.amz_date}; "
                "generate a new one.",
            )
    elif skewed(auth.signed_at, now, max_skew):
        raise AuthError(
            AuthFailure.SKEWED,
            f"The difference between the request time {auth.amz_date} and the server time "
            f"{format_amz_date(now)} is too large; correct your clock.",
        )


def _check_headers(req: HttpRequest, auth: V4Auth) -> None:
    absent = [n for n in auth.signed_headers if n not in req.headers]
    if absent:
        raise malformed(f"Signed header(s) {', '.join(absent)} are missing from the request.")
    unsigned = sorted(
        n
        for n in req.headers
        if n.startswith("x-amz-") and n not in auth.signed_headers and n not in _BOUND_HEADERS
    )
    if unsigned:
        raise malformed(
            f"There were headers present in the request which were not signed: "
            f"{', '.join(unsigned)}; sign every x-amz-* header."
        )


def _payload_candidates(req: HttpRequest, auth: V4Auth) -> list[str]:
    header = req.headers.get("x-amz-content-sha256")
    if header is not None:
        value = header.strip()
        if value in _TOKENS or (len(value) == 64 and set(value) <= _HEX):
            return [value]
        raise malformed(
            f"Unsupported x-amz-content-sha256 {value[:64]!r}; send the hex SHA-256 of the body, "
            f"{c.UNSIGNED_PAYLOAD} or {c.STREAMING_PAYLOAD}."
        )
    body_hash = c.sha256_hex(req.body or b"")
    if not auth.presigned:
        return [body_hash]
    if auth.service == c.S3_SERVICE:
        return [c.UNSIGNED_PAYLOAD]
    return [body_hash, c.UNSIGNED_PAYLOAD]


def _uri_candidates(req: HttpRequest, auth: V4Auth) -> list[str]:
    if auth.service != c.S3_SERVICE:
        return [c.canonical_uri(req.path, s3=False)]
    first = c.canonical_uri(req.path, s3=True)
    second = c.s3_reencoded_uri(req.path)
    return [first] if first == second else [first, second]


async def verify_v4(
    req: HttpRequest,
    store: CredentialStore,
    auth: V4Auth,
    *,
    now: datetime,
    max_skew: timedelta,
    services: Collection[str] | None = None,
    signing_keys: SigningKeyCache | None = None,
) -> AuthResult:
    """Verify a parsed SigV4 request; see the module docstring for the order of checks.

    ``signing_keys``, when given, caches the derived signing key across requests.
    """
    if services is not None and auth.service not in services:
        raise malformed(
            f"The credential scope names service {auth.service!r}; "
            f"this endpoint serves {', '.join(sorted(services))}."
        )
    _check_headers(req, auth)
    credential = await lookup(store, auth.access_key)
    check_clock(auth, now, max_skew)
    if signing_keys is not None:
        key = signing_keys.key(credential.secret_key, auth.date, auth.region, auth.service)
    else:
        key = c.signing_key(credential.secret_key, auth.date, auth.region, auth.service)
    query = c.canonical_query(req.raw_query, exclude=("X-Amz-Signature",) if auth.presigned else ())
    matched: str | None = None
    for uri in _uri_candidates(req, auth):
        for payload in _payload_candidates(req, auth):
            creq = c.canonical_request(
                req.method, uri, query, req.headers, auth.signed_headers, payload
            )
            expected = c.signature(key, c.string_to_sign(auth.amz_date, auth.scope, creq))
            if hmac.compare_digest(expected, auth.signature) and matched is None:
                matched = payload
    if matched is None:
        raise AuthError(
            AuthFailure.BAD_SIGNATURE,
            "The request signature we calculated does not match the signature you provided; "
            "check your secret access key and signing method.",
        )
    verified = False
    if c.is_sha256_hex(matched.lower()) and req.body is not None:
        if not hmac.compare_digest(c.sha256_hex(req.body), matched.lower()):
            raise AuthError(
                AuthFailure.PAYLOAD_MISMATCH,
                "The body does not match the x-amz-content-sha256 header; "
                "send the SHA-256 of the body actually sent.",
            )
        verified = True
    chunk_context = None
    if not auth.presigned and matched in (c.STREAMING_PAYLOAD, c.STREAMING_PAYLOAD_TRAILER):
        chunk_context = ChunkSigningContext(
            seed_signature=auth.signature,
            signing_key=key,
            scope=auth.scope,
            amz_date=auth.amz_date,
            trailer=matched == c.STREAMING_PAYLOAD_TRAILER,
        )
    return AuthResult(
        credential=credential,
        scheme="v4-presigned" if auth.presigned else "v4",
        payload_hash=matched,
        region=auth.region,
        service=auth.service,
        chunk_context=chunk_context,
        payload_verified=verified,
    )
