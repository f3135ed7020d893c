"""``Content-Encoding: aws-chunked`` bodies: decoding with chunk-signature checks, and encoding.

Wire format (one frame per chunk, sizes in hex; CRLF line ends)::

    <size>;chunk-signature=<sig> CRLF <data> CRLF   signed: STREAMING-AWS4-HMAC-SHA256-PAYLOAD
    <size> CRLF <data> CRLF                         unsigned: STREAMING-UNSIGNED-PAYLOAD-TRAILER
    0[;chunk-signature=<sig>] CRLF                  the final chunk, then optional
    <name>:<value> CRLF ...  CRLF                   trailers, then a blank line

Each chunk signature is an HMAC, with the request's signing key, of the lines::

    AWS4-HMAC-SHA256-PAYLOAD / <amz date> / <scope> / <previous signature> /
    <sha256("")> / <sha256(chunk)>

chained from the seed signature (the request's own signature). With
``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`` the trailers carry
``x-amz-trailer-signature``, an HMAC of the lines::

    AWS4-HMAC-SHA256-TRAILER / <amz date> / <scope> / <final chunk signature> / <sha256(trailers)>

(joined with ``\\n``) where ``trailers`` is ``name:value\\n`` for each other trailer line, in order.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from eucalypt.auth.canonical import EMPTY_SHA256, sha256_hex
from eucalypt.auth.errors import AuthError, AuthFailure

CHUNK_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
TRAILER_ALGORITHM = "AWS4-HMAC-SHA256-TRAILER"
TRAILER_SIGNATURE = "x-amz-trailer-signature"
DEFAULT_MAX_CHUNK = 16 * 1024 * 1024
_MAX_LINE = 4096
_MAX_TRAILER_LINES = 32
_SIG_EXT = b"chunk-signature="
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")

_HEADER, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


@dataclass(frozen=True)
class ChunkSigningContext:
    """What the chunk signatures of one streaming upload chain from.

    ``seed_signature`` is the request's SigV4 signature, ``signing_key`` the
    derived key for ``scope`` (``YYYYMMDD/region/service/aws4_request``),
    ``amz_date`` the request's ``x-amz-date``. ``trailer`` is true for
    ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`` (signed trailing headers).
    """

    seed_signature: str
    signing_key: bytes = field(repr=False)
    scope: str
    amz_date: str
    trailer: bool = False


def chunk_signature(ctx: ChunkSigningContext, previous: str, chunk_sha256: str) -> str:
    """The signature of one chunk whose data hashes to ``chunk_sha256``."""
    sts = "\n".join(
        [CHUNK_ALGORITHM, ctx.amz_date, ctx.scope, previous, EMPTY_SHA256, chunk_sha256]
    )
    return hmac.new(ctx.signing_key, sts.encode("ascii"), hashlib.sha256).hexdigest()


def trailer_signature(ctx: ChunkSigningContext, previous: str, trailers: bytes) -> str:
    """The signature of the canonical trailer block (``name:value\\n`` lines)."""
    sts = "\n".join([TRAILER_ALGORITHM, ctx.amz_date, ctx.scope, previous, sha256_hex(trailers)])
    return hmac.new(ctx.signing_key, sts.encode("ascii"), hashlib.sha256).hexdigest()


def _bad(message: str) -> AuthError:
    return AuthError(AuthFailure.BAD_CHUNK, message + " Re-send the upload.")


class AwsChunkedDecoder:
    """Incremental decoder for aws-chunked bodies, signed (``ctx``) or unsigned (``ctx=None``).

    ``feed(data)`` returns the payload bytes decoded so far. In the signed
    variant a chunk's bytes are returned only once its signature has been
    checked, so everything returned is authenticated; memory is bounded by
    one chunk (at most ``max_chunk_size``, else ``BAD_CHUNK``). In the unsigned
    variant bytes are returned as they arrive. ``finish()`` raises
    ``AuthError(BAD_CHUNK)`` when the final 0-length chunk (or, with signed
    trailers, the trailer signature) is missing, or when the decoded length
    differs from ``decoded_length`` (``x-amz-decoded-content-length``) if given.
    Any chunk-signature or framing error raises from ``feed`` and the decoder
    stays failed. Trailing headers end up in :attr:`trailers` (lower-case names).
    """

    def __init__(
        self,
        ctx: ChunkSigningContext | None,
        *,
        decoded_length: int | None = None,
        max_chunk_size: int = DEFAULT_MAX_CHUNK,
    ) -> None:
        self._ctx = ctx
        self._previous = ctx.seed_signature if ctx is not None else ""
        self._expected_length = decoded_length
        self._max_chunk = max_chunk_size
        self._state = _HEADER
        self._line = bytearray()
        self._pending = bytearray()
        self._hasher = hashlib.sha256()
        self._remaining = 0
        self._chunk_sig = ""
        self._end_seen = 0
        self._decoded = 0
        self._trailer_lines: list[tuple[str, str]] = []
        self._trailer_sig: str | None = None
        self._skipped_blank = False
        self._failed: AuthError | None = None

    @property
    def decoded_length(self) -> int:
        """Payload bytes decoded so far."""
        return self._decoded

    @property
    def trailers(self) -> dict[str, str]:
        """Trailing headers (``x-amz-checksum-*``, ...) received after the final chunk."""
        return dict(self._trailer_lines)

    def feed(self, data: bytes) -> bytes:
        """Consume more of the encoded body; return the payload bytes now available."""
        if self._failed is not None:
            raise self._failed
        try:
            return self._feed(bytes(data))
        except AuthError as exc:
            self._failed = exc
            raise

    def finish(self) -> None:
        """Declare the end of the body; raise ``BAD_CHUNK`` if it ended early or wrongly."""
        if self._failed is not None:
            raise self._failed
        try:
            self._finish()
        except AuthError as exc:
            self._failed = exc
            raise

    def _finish(self) -> None:
        if self._state != _DONE:
            lenient = (
                self._state == _TRAILER
                and not self._line
                and not self._trailer_lines
                and not (self._ctx is not None and self._ctx.trailer)
            )
            if not lenient:
                raise _bad("The aws-chunked body ended before its final 0-length chunk.")
            self._state = _DONE
        if self._expected_length is not None and self._decoded != self._expected_length:
            raise _bad(
                f"The aws-chunked body decoded to {self._decoded} bytes but "
                f"x-amz-decoded-content-length is {self._expected_length}."
            )

    def _feed(self, data: bytes) -> bytes:
        out = bytearray()
        pos, end = 0, len(data)
        while pos < end:
            if self._state == _DATA:
                take = min(self._remaining, end - pos)
                piece = data[pos : pos + take]
                pos += take
                self._remaining -= take
                self._decoded += take
                self._hasher.update(piece)
                if self._ctx is None:
                    out += piece
                else:
                    self._pending += piece
                if self._remaining == 0:
                    self._end_chunk(out)
            elif self._state == _DATA_END:
                if data[pos] != b"\r\n"[self._end_seen]:
                    raise _bad("An aws-chunked chunk is not followed by CRLF.")
                pos += 1
                self._end_seen += 1
                if self._end_seen == 2:
                    self._state = _HEADER
            elif self._state in (_HEADER, _TRAILER):
                newline = data.find(b"\n", pos)
                stop = end if newline < 0 else newline + 1
                self._line += data[pos:stop]
                pos = stop
                if len(self._line) > _MAX_LINE:
                    raise _bad("An aws-chunked header or trailer line is too long.")
                if newline >= 0:
                    line = self._take_line()
                    if self._state == _HEADER:
                        self._chunk_header(line)
                    else:
                        self._trailer_line(line)
            else:
                raise _bad("The aws-chunked body has data after its final chunk.")
        return bytes(out)

    def _take_line(self) -> bytes:
        line = bytes(self._line)
        self._line.clear()
        if not line.endswith(b"\r\n"):
            raise _bad("An aws-chunked line does not end with CRLF.")
        return line[:-2]

    def _chunk_header(self, line: bytes) -> None:
        size_text, *extensions = line.split(b";")
        size_text = size_text.strip()
        if not size_text or len(size_text) > 16 or not set(size_text) <= _HEX_DIGITS:
            raise _bad("An aws-chunked chunk header has no valid hex size.")
        size = int(size_text, 16)
        self._chunk_sig = ""
        for ext in extensions:
            ext = ext.strip()
            if ext.startswith(_SIG_EXT):
                self._chunk_sig = ext[len(_SIG_EXT) :].decode("ascii", "replace")
        if self._ctx is not None and not self._chunk_sig:
            raise _bad("An aws-chunked chunk has no chunk-signature.")
        if size == 0:
            if self._ctx is not None:
                self._check_chunk(EMPTY_SHA256)
            self._state = _TRAILER
            return
        if self._ctx is not None and size > self._max_chunk:
            raise _bad(f"An aws-chunked chunk of {size} bytes exceeds {self._max_chunk}.")
        if self._expected_length is not None and self._decoded + size > self._expected_length:
            raise _bad("The aws-chunked body is longer than x-amz-decoded-content-length.")
        self._remaining = size
        self._hasher = hashlib.sha256()
        self._state = _DATA

    def _end_chunk(self, out: bytearray) -> None:
        if self._ctx is not None:
            self._check_chunk(self._hasher.hexdigest())
            out += self._pending
            self._pending.clear()
        self._end_seen = 0
        self._state = _DATA_END

    def _check_chunk(self, chunk_hash: str) -> None:
        assert self._ctx is not None
        expected = chunk_signature(self._ctx, self._previous, chunk_hash)
        if not hmac.compare_digest(expected, self._chunk_sig):
            raise _bad("An aws-chunked chunk signature does not match its data.")
        self._previous = self._chunk_sig

    def _trailer_line(self, line: bytes) -> None:
        signed_trailer = self._ctx is not None and self._ctx.trailer
        if not line:
            if signed_trailer and not self._trailer_lines and not self._skipped_blank:
                self._skipped_blank = True  # some clients put CRLF before the trailers
                return
            if signed_trailer:
                self._check_trailer()
            self._state = _DONE
            return
        if len(self._trailer_lines) >= _MAX_TRAILER_LINES:
            raise _bad("The aws-chunked body has too many trailing headers.")
        name, colon, value = line.decode("utf-8", "surrogateescape").partition(":")
        if not colon or not name.strip():
            raise _bad("An aws-chunked trailing header is not 'name:value'.")
        key = name.strip().lower()
        if key == TRAILER_SIGNATURE:
            self._trailer_sig = value.strip()
        else:
            self._trailer_lines.append((key, value.strip()))

    def _check_trailer(self) -> None:
        assert self._ctx is not None
        if self._trailer_sig is None:
            raise _bad("The aws-chunked trailers carry no x-amz-trailer-signature.")
        block = "".join(f"{k}:{v}\n" for k, v in self._trailer_lines)
        expected = trailer_signature(
            self._ctx, self._previous, block.encode("utf-8", "surrogateescape")
        )
        if not hmac.compare_digest(expected, self._trailer_sig):
            raise _bad("The aws-chunked trailer signature does not match the trailers.")


async def decode_aws_chunked(
    stream: AsyncIterator[bytes],
    ctx: ChunkSigningContext | None,
    *,
    decoded_length: int | None = None,
) -> AsyncIterator[bytes]:
    """Decode an aws-chunked byte stream; raises ``AuthError(BAD_CHUNK)`` at the first fault.

    The iterator ends normally only when the whole body was well formed and,
    if signed, every chunk signature matched.
    """
    decoder = AwsChunkedDecoder(ctx, decoded_length=decoded_length)
    async for data in stream:
        out = decoder.feed(data)
        if out:
            yield out
    decoder.finish()


class AwsChunkedEncoder:
    """Builds an aws-chunked body, signing each chunk when given a context.

    Call :meth:`chunk` for each non-empty piece of payload, then
    :meth:`finish` once, with optional trailing headers (signed with
    ``x-amz-trailer-signature`` when ``ctx.trailer`` is set).
    """

    def __init__(self, ctx: ChunkSigningContext | None) -> None:
        self._ctx = ctx
        self._previous = ctx.seed_signature if ctx is not None else ""

    def chunk(self, data: bytes) -> bytes:
        """One encoded chunk carrying ``data`` (must not be empty)."""
        if not data:
            raise ValueError("aws-chunked data chunks must not be empty; use finish()")
        return self._frame(data) + data + b"\r\n"

    def finish(self, trailers: Mapping[str, str] | None = None) -> bytes:
        """The final 0-length chunk, the trailers and the closing blank line."""
        out = self._frame(b"")
        lines = [(k.lower(), v) for k, v in (trailers or {}).items()]
        if self._ctx is not None and self._ctx.trailer:
            block = "".join(f"{k}:{v}\n" for k, v in lines)
            sig = trailer_signature(self._ctx, self._previous, block.encode("utf-8"))
            lines.append((TRAILER_SIGNATURE, sig))
        for key, value in lines:
            out += f"{key}:{value}\r\n".encode()
        return out + b"\r\n"

    def _frame(self, data: bytes) -> bytes:
        size = f"{len(data):x}".encode("ascii")
        if self._ctx is None:
            return size + b"\r\n"
        sig = chunk_signature(self._ctx, self._previous, sha256_hex(data))
        self._previous = sig
        return size + b";" + _SIG_EXT + sig.encode("ascii") + b"\r\n"


def signed_chunked_length(decoded_length: int, chunk_size: int) -> int:
    """The encoded length of a signed aws-chunked body cut into ``chunk_size`` chunks."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")

    def frame(size: int) -> int:
        header = len(f"{size:x}") + 1 + len(_SIG_EXT) + 64 + 2
        return header + size + 2

    full, rest = divmod(decoded_length, chunk_size)
    total = full * frame(chunk_size) + (frame(rest) if rest else 0)
    return total + frame(0)
