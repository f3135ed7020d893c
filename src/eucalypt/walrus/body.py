"""Request bodies: streamed into the blob store, decoded and verified on the way.

A :class:`BodyPlan` says how to read a request's body: aws-chunked framing
(signed or unsigned, via ``eucalypt.auth``), the SHA-256 the request signed,
the declared length, Content-MD5 and any ``x-amz-checksum-*``. Object bodies
go through ``upload.py`` (streamed into the blob store, never held whole);
small XML bodies (DeleteObjects, CompleteMultipartUpload, ACLs) are read
whole here, up to a limit, through the same decoding and verification.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from eucalypt.auth import AuthError, AwsChunkedDecoder, payload_verifier
from eucalypt.walrus import errors
from eucalypt.walrus.http import S3Request
from eucalypt.walrus.security import s3_error_for

SIGNED_STREAMING = frozenset({
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
})
UNSIGNED_STREAMING = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
HEX = frozenset("0123456789abcdef")


class ClientDisconnected(Exception):
    """The client went away before sending the whole body."""


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _checksum_factories() -> dict[str, Callable[[], Any]]:
    return {
        "x-amz-checksum-crc32": _Crc32,
        "x-amz-checksum-sha1": hashlib.sha1,
        "x-amz-checksum-sha256": hashlib.sha256,
    }


def _framing(req: S3Request) -> tuple[bool, Any, Any]:
    """(aws-chunked?, chunk signing context, SHA-256 verifier) from the signed payload hash."""
    declared = req.payload_hash or req.headers.get("x-amz-content-sha256")
    if declared is None or declared == "UNSIGNED-PAYLOAD":
        return False, None, None
    if declared in SIGNED_STREAMING:
        if req.chunk_context is None:
            raise errors.AccessDenied("Signed streaming bodies need a signed request")
        return True, req.chunk_context, None
    if declared == UNSIGNED_STREAMING:
        return True, None, None
    if len(declared) == 64 and set(declared.lower()) <= HEX:
        return False, None, payload_verifier(declared.lower())
    raise errors.InvalidArgument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD "
        "or a valid sha256 value.")


def _declared_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError as exc:
        raise errors.InvalidArgument("Invalid Content-Length") from exc
    if length < 0:
        raise errors.InvalidArgument("Invalid Content-Length")
    return length


def _content_md5(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        md5 = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.InvalidDigest() from exc
    if len(md5) != 16:
        raise errors.InvalidDigest()
    return md5


@dataclass
class BodyPlan:
    """How to read one request body: framing, signature check, declared length, digests.

    ``decoder`` is an :class:`AwsChunkedDecoder` for aws-chunked bodies;
    ``verifier`` checks a hex ``x-amz-content-sha256``; ``checksum`` computes
    the ``x-amz-checksum-*`` named in a header or (``trailer``) in the
    aws-chunked trailer.
    """

    decoder: Any
    verifier: Any
    length: int | None
    content_md5: bytes | None
    checksum_name: str | None
    checksum: Any
    trailer: bool

    @classmethod
    def for_request(cls, req: S3Request) -> BodyPlan:
        h = req.headers
        chunked, ctx, verifier = _framing(req)
        length = _declared_length(h.get("x-amz-decoded-content-length" if chunked
                                        else "content-length"))
        decoder = None
        if chunked:
            if length is None:
                raise errors.MissingContentLength()
            decoder = AwsChunkedDecoder(ctx, decoded_length=length)
        factories = _checksum_factories()
        trailer_name = h.get("x-amz-trailer", "").strip().lower()
        trailer = chunked and trailer_name in factories
        name = trailer_name if trailer else next((n for n in factories if n in h), None)
        checksum = factories[name]() if name else None
        return cls(decoder, verifier, length, _content_md5(h.get("content-md5")), name,
                   checksum, trailer)

    def decode(self, raw: bytes | bytearray) -> bytes | bytearray:
        """The payload bytes in one raw chunk (aws-chunked framing removed and checked)."""
        return self.decoder.feed(bytes(raw)) if self.decoder is not None else raw

    def verify(self, raw: bytes | bytearray, data: bytes | bytearray) -> None:
        """Feed the signed-payload SHA-256 (raw bytes) and the x-amz-checksum (payload)."""
        if self.verifier is not None:
            self.verifier.update(raw)
        if self.checksum is not None:
            self.checksum.update(data)

    def feed(self, raw: bytes | bytearray) -> bytes | bytearray:
        """Decode and verify one raw chunk; returns the payload bytes it carried."""
        data = self.decode(raw)
        self.verify(raw, data)
        return data

    def finish(self, size: int) -> None:
        """Check framing, signatures, length and trailer checksum at the end of the body.

        The MD5 is checked apart (:meth:`check_md5`): uploads compute it beside the rest.
        """
        trailers: dict[str, str] = {}
        if self.decoder is not None:
            self.decoder.finish()
            trailers = dict(getattr(self.decoder, "trailers", None) or {})
        if self.verifier is not None:
            self.verifier.verify()
        if self.length is not None and size != self.length:
            raise errors.IncompleteBody()
        if self.trailer and self.checksum_name and self.checksum is not None:
            expected = trailers.get(self.checksum_name)
            got = base64.b64encode(self.checksum.digest()).decode()
            if expected is not None and got != expected.strip():
                raise errors.InvalidChecksum()

    def check_md5(self, md5: bytes) -> None:
        """BadDigest unless the body's MD5 matches the ``Content-MD5`` (if one was sent)."""
        if self.content_md5 is not None and md5 != self.content_md5:
            raise errors.BadDigest()

    def check_header_checksum(self, headers: dict[str, str]) -> None:
        if self.checksum_name and self.checksum is not None and not self.trailer:
            got = base64.b64encode(self.checksum.digest()).decode()
            if got != headers.get(self.checksum_name, "").strip():
                raise errors.InvalidChecksum()


async def chunks(req: S3Request) -> AsyncIterator[bytes]:
    """The raw body chunks as they arrive; ``ClientDisconnected`` if the client leaves."""
    req.body_started = True
    while True:
        message = await req.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            req.body_done = True
            return


async def receive_into(req: S3Request, view: memoryview) -> int:
    """Fill the start of ``view`` with body bytes, straight from the socket (the server's
    ``receive_into``); 0 at the end of the body, ``ClientDisconnected`` if the client left.
    Only for requests whose ``receive_into`` is set."""
    assert req.receive_into is not None
    req.body_started = True
    try:
        n = await req.receive_into(view)
    except EOFError as exc:
        raise ClientDisconnected() from exc
    if n == 0:
        req.body_done = True
    return n


async def read_small_body(req: S3Request, limit: int = 4 << 20) -> bytes:
    """Read and verify a small (XML) body whole; larger than ``limit`` is an error."""
    plan = BodyPlan.for_request(req)
    if plan.length is not None and plan.length > limit:
        raise errors.EntityTooLarge("Request body is too large")
    parts: list[bytes] = []
    total = 0
    try:
        async for chunk in chunks(req):
            data = plan.feed(chunk)
            total += len(data)
            if total > limit:
                raise errors.EntityTooLarge("Request body is too large")
            parts.append(bytes(data))
        body = b"".join(parts)
        plan.finish(total)
        plan.check_md5(hashlib.md5(body).digest())
        plan.check_header_checksum(req.headers)
    except AuthError as exc:
        raise s3_error_for(exc, req) from exc
    return body


def expects_continue(req: S3Request) -> bool:
    """The client waits for ``100 Continue`` before it sends the body; reading the body is
    what sends it, so a request that may be refused is checked before (as S3 does)."""
    return "100-continue" in req.headers.get("expect", "").lower()


async def drain(req: S3Request, limit: int = 8 << 20) -> bool:
    """Discard an unread body (so an error reply keeps the connection usable)."""
    if req.body_done:
        return True
    if req.body_started:
        return False
    declared = req.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return False
    if expects_continue(req):
        return False  # the client will not send unless asked
    seen = 0
    try:
        async for chunk in chunks(req):
            seen += len(chunk)
            if seen > limit:
                return False
    except ClientDisconnected:
        return False
    return True
