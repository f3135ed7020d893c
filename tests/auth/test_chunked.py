"""The aws-chunked decoder: framing, chunk-signature chaining, truncation and limits."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from eucalypt.auth import (
    AuthError,
    AuthFailure,
    AwsChunkedDecoder,
    AwsChunkedEncoder,
    ChunkSigningContext,
    decode_aws_chunked,
)
from eucalypt.auth import canonical as c

from .helpers import run

KEY = c.signing_key("secret", "20240131", "us-east-1", "s3")
SCOPE = "20240131/us-east-1/s3/aws4_request"
CTX = ChunkSigningContext("ab" * 32, KEY, SCOPE, "20240131T120000Z")
PAYLOAD = os.urandom(2500)


def _frames(payload: bytes, ctx: ChunkSigningContext | None, size: int = 1000) -> list[bytes]:
    encoder = AwsChunkedEncoder(ctx)
    frames = [encoder.chunk(payload[i : i + size]) for i in range(0, len(payload), size)]
    return [*frames, encoder.finish()]


def _decode(body: bytes, ctx: ChunkSigningContext | None, step: int, **kw: int) -> bytes:
    decoder = AwsChunkedDecoder(ctx, **kw)
    out = b"".join(decoder.feed(body[i : i + step]) for i in range(0, len(body), step))
    decoder.finish()
    return out


def _bad_chunk(body: bytes, ctx: ChunkSigningContext | None = CTX, step: int = 7) -> AuthError:
    with pytest.raises(AuthError) as info:
        _decode(body, ctx, step)
    assert info.value.reason is AuthFailure.BAD_CHUNK
    return info.value


@pytest.mark.parametrize("step", [1, 7, 1000, 100_000])
@pytest.mark.parametrize("signed", [True, False])
def test_round_trip_in_any_feed_size(step: int, signed: bool) -> None:
    ctx = CTX if signed else None
    body = b"".join(_frames(PAYLOAD, ctx))
    assert _decode(body, ctx, step, decoded_length=len(PAYLOAD)) == PAYLOAD


def test_signed_bytes_are_released_only_after_the_chunk_verifies() -> None:
    first = _frames(PAYLOAD, CTX)[0]
    decoder = AwsChunkedDecoder(CTX)
    released = [decoder.feed(first[i : i + 1]) for i in range(len(first) - 2)]
    assert b"".join(released[:-1]) == b""
    assert released[-1] == PAYLOAD[:1000]
    unsigned = AwsChunkedDecoder(None)
    header_len = len(b"3e8\r\n")
    assert unsigned.feed(_frames(PAYLOAD, None)[0][: header_len + 10]) == PAYLOAD[:10]


def test_flipped_data_byte_fails() -> None:
    body = bytearray(b"".join(_frames(PAYLOAD, CTX)))
    body[1500] ^= 0x01
    _bad_chunk(bytes(body))


def test_flipped_signature_fails() -> None:
    frames = _frames(PAYLOAD, CTX)
    sig_at = frames[1].index(b"=") + 1
    second = bytearray(frames[1])
    second[sig_at] = ord("0") if second[sig_at] != ord("0") else ord("1")
    _bad_chunk(frames[0] + bytes(second) + b"".join(frames[2:]))


def test_wrong_seed_fails() -> None:
    other = ChunkSigningContext("cd" * 32, KEY, SCOPE, CTX.amz_date)
    _bad_chunk(b"".join(_frames(PAYLOAD, other)))


def test_reordered_or_dropped_chunks_fail() -> None:
    frames = _frames(PAYLOAD, CTX)
    _bad_chunk(frames[1] + frames[0] + b"".join(frames[2:]))
    _bad_chunk(frames[0] + b"".join(frames[2:]))


def test_error_sticks() -> None:
    body = bytearray(b"".join(_frames(PAYLOAD, CTX)))
    body[100] ^= 0x01
    decoder = AwsChunkedDecoder(CTX)
    with pytest.raises(AuthError):
        decoder.feed(bytes(body))
    with pytest.raises(AuthError):
        decoder.feed(b"")
    with pytest.raises(AuthError):
        decoder.finish()


@pytest.mark.parametrize("cut", [0, 1, 500, 1100, -60, -5])
def test_truncated_body_fails_at_finish(cut: int) -> None:
    body = b"".join(_frames(PAYLOAD, CTX))
    truncated = body[:cut] if cut > 0 else body[: len(body) + cut]
    if cut == 0:
        truncated = b""
    decoder = AwsChunkedDecoder(CTX)
    decoder.feed(truncated)
    with pytest.raises(AuthError) as info:
        decoder.finish()
    assert info.value.reason is AuthFailure.BAD_CHUNK


def test_missing_final_crlf_is_tolerated() -> None:
    body = b"".join(_frames(PAYLOAD, CTX))
    assert body.endswith(b"\r\n\r\n")
    assert _decode(body[:-2], CTX, 64) == PAYLOAD


def test_data_after_final_chunk_fails() -> None:
    _bad_chunk(b"".join(_frames(PAYLOAD, CTX)) + b"x")


def test_decoded_length_must_match() -> None:
    body = b"".join(_frames(PAYLOAD, CTX))
    for wrong in (len(PAYLOAD) - 1, len(PAYLOAD) + 1):
        with pytest.raises(AuthError) as info:
            _decode(body, CTX, 100, decoded_length=wrong)
        assert info.value.reason is AuthFailure.BAD_CHUNK


def test_chunk_larger_than_limit_fails_before_buffering() -> None:
    decoder = AwsChunkedDecoder(CTX, max_chunk_size=1024)
    header = b"100000;chunk-signature=" + b"0" * 64 + b"\r\n"
    with pytest.raises(AuthError) as info:
        decoder.feed(header)
    assert info.value.reason is AuthFailure.BAD_CHUNK


@pytest.mark.parametrize(
    "body",
    [
        b"zz;chunk-signature=" + b"0" * 64 + b"\r\n",  # not hex
        b"10\r\n" + b"a" * 16 + b"\r\n",  # signed variant without a signature
        b"10;chunk-signature=" + b"0" * 64 + b"\n",  # bare LF
        b"1" * 5000,  # endless header line
    ],
)
def test_broken_framing_fails(body: bytes) -> None:
    _bad_chunk(body, step=len(body))


def test_unsigned_framing_errors() -> None:
    good = b"".join(_frames(PAYLOAD, None))
    broken = good.replace(b"\r\n3e8", b"XX3e8", 1)
    _bad_chunk(broken, ctx=None)


def test_signed_trailer_round_trip_and_forgery() -> None:
    ctx = ChunkSigningContext("ef" * 32, KEY, SCOPE, CTX.amz_date, trailer=True)
    encoder = AwsChunkedEncoder(ctx)
    body = encoder.chunk(PAYLOAD) + encoder.finish({"x-amz-checksum-sha256": "abc="})
    decoder = AwsChunkedDecoder(ctx)
    assert decoder.feed(body) == PAYLOAD
    decoder.finish()
    assert decoder.trailers == {"x-amz-checksum-sha256": "abc="}
    _bad_chunk(body.replace(b"abc=", b"abd="), ctx=ctx)
    unsigned_trailers = body[: body.index(b"x-amz-trailer-signature")] + b"\r\n"
    _bad_chunk(unsigned_trailers, ctx=ctx)


def test_decode_aws_chunked_stream() -> None:
    body = b"".join(_frames(PAYLOAD, CTX))

    async def pieces(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 333):
            yield data[i : i + 333]

    async def collect(data: bytes) -> bytes:
        return b"".join([part async for part in decode_aws_chunked(pieces(data), CTX)])

    assert run(collect(body)) == PAYLOAD
    with pytest.raises(AuthError) as info:
        run(collect(body[:-100]))
    assert info.value.reason is AuthFailure.BAD_CHUNK
