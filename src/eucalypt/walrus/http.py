"""The HTTP layer under the S3 handlers: parsed requests and responses (raw ASGI).

A :class:`S3Request` is built once per request by ``app.py``: it knows the
bucket and key (path-style or virtual-hosted), the decoded query and the
lower-cased headers; its body is read through ``body.py`` so that nothing
ever holds a whole object in memory. A :class:`Response` is either a small
byte body or an async iterator of chunks with a known length.
"""

from __future__ import annotations

import base64
import random
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_to_bytes

from eucalypt.walrus import errors

if TYPE_CHECKING:
    from eucalypt.walrus.security import Principal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_KEY_BYTES = 1024


def new_request_id() -> str:
    # An id to correlate logs, not a secret: no need for the (slower) OS entropy source.
    return f"{random.getrandbits(64):016X}"


def new_host_id() -> bytes:
    """An ``x-amz-id-2`` value (opaque, like S3's; also not a secret)."""
    return base64.b64encode(random.randbytes(24))


def http_date(ts: datetime) -> str:
    """RFC 7231 date for headers: ``Wed, 12 Oct 2009 17:50:00 GMT``."""
    return format_datetime(ts.astimezone(UTC), usegmt=True)


def parse_http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Response:
    """A response: ``body`` bytes, or ``stream`` of ``length`` bytes."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    length: int | None = None
    # Called once the response is sent (or abandoned): closes open blobs.
    cleanup: Callable[[], Awaitable[None]] | None = None
    # The same bytes as ``stream``, as (file descriptor, offset, count) ranges, for a
    # server that sends files itself (zero-copy); None when they are not all in files.
    files: list[tuple[int, int, int]] | None = None

    def header(self, name: str, value: str) -> Response:
        self.headers.append((name, value))
        return self


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(status=status, headers=[("content-type", "application/xml")], body=body)


def empty_response(status: int = 200) -> Response:
    return Response(status=status)


def decode_path(raw: str) -> str:
    """Percent-decode a path segment into UTF-8 text, or ``InvalidURI``."""
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.InvalidURI() from exc


@dataclass
class S3Request:
    method: str
    raw_path: str
    raw_query: str
    headers: dict[str, str]
    query: dict[str, str]
    bucket: str | None
    key: str | None
    host_bucket: str | None
    request_id: str
    receive: Receive
    client: str = ""
    principal: Principal | None = None
    # The signed payload declaration (x-amz-content-sha256 or presigned value).
    payload_hash: str | None = None
    chunk_context: Any = None
    body_started: bool = False
    body_done: bool = False
    # The server's zero-copy body reader, if it has one (eucalypt.walrus.server):
    # ``await receive_into(view)`` fills the start of ``view``; 0 at the end of the body.
    receive_into: Callable[[memoryview], Awaitable[int]] | None = None

    @property
    def target(self) -> str:
        if self.bucket is None:
            return "service"
        return "bucket" if not self.key else "object"

    @property
    def resource(self) -> str:
        if self.bucket is None:
            return "/"
        return f"/{self.bucket}/{self.key}" if self.key else f"/{self.bucket}"

    def require_key(self) -> str:
        assert self.key is not None
        return self.key

    def require_bucket(self) -> str:
        assert self.bucket is not None
        return self.bucket


def bucket_from_host(host: str, domain: str) -> str | None:
    """``photos`` for ``Host: photos.s3.example:8776`` with domain ``s3.example``."""
    if not domain or host.startswith("["):  # IPv6 literals are never virtual hosts
        return None
    name = host.rsplit(":", 1)[0].lower().rstrip(".")
    if name.endswith("." + domain):
        return name[: -len(domain) - 1]
    return None


def build_request(scope: Scope, receive: Receive, domain: str, request_id: str) -> S3Request:
    """Parse the ASGI scope: host-based or path-based bucket, key, query, headers."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    raw_path_b: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    raw_path = raw_path_b.decode("latin-1")
    if "?" in raw_path:  # some servers keep the query in raw_path
        raw_path = raw_path.split("?", 1)[0]
    raw_query = scope.get("query_string", b"").decode("latin-1")
    query: dict[str, str] = {}
    for k, v in parse_qsl(raw_query, keep_blank_values=True):
        query.setdefault(k, v)
    host_bucket = bucket_from_host(headers.get("host", ""), domain)
    path = decode_path(raw_path)
    if not path.startswith("/"):
        raise errors.InvalidURI()
    bucket: str | None
    key: str | None
    if host_bucket is not None:
        bucket, key = host_bucket, path[1:] or None
    else:
        rest = path[1:]
        if not rest:
            bucket, key = None, None
        else:
            bucket, _, key_part = rest.partition("/")
            key = key_part or None
    if key is not None:
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise errors.KeyTooLongError(Size=str(len(key.encode("utf-8"))), MaxSizeAllowed="1024")
        if "\x00" in key:
            raise errors.InvalidArgument("Object key must not contain NUL characters")
    client = scope.get("client")
    return S3Request(
        method=scope["method"].upper(),
        raw_path=raw_path,
        raw_query=raw_query,
        headers=headers,
        query=query,
        bucket=bucket,
        key=key,
        host_bucket=host_bucket,
        request_id=request_id,
        receive=receive,
        client=f"{client[0]}:{client[1]}" if client else "",
        receive_into=(scope.get("extensions") or {}).get("eucalypt.receive_into"),
    )
