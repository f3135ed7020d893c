"""AWS's published SigV4 vectors: the test suite and the Amazon S3 documentation examples."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from eucalypt.auth import (
    AuthError,
    AuthFailure,
    AwsChunkedDecoder,
    ChunkSigningContext,
    Credential,
    HttpRequest,
    StaticCredentialStore,
    authenticate,
    signed_chunked_length,
)
from eucalypt.auth import canonical as c
from eucalypt.auth.chunked import chunk_signature

from . import vectors as v
from .helpers import fails, parse_raw, run

SUITE_NOW = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
S3_NOW = datetime(2013, 5, 24, 0, 0, tzinfo=UTC)
SUITE_STORE = StaticCredentialStore([Credential(v.SUITE_ACCESS_KEY, v.SUITE_SECRET)])
S3_STORE = StaticCredentialStore([Credential(v.S3_ACCESS_KEY, v.S3_SECRET)])
SUITE_KEY = c.signing_key(v.SUITE_SECRET, "20150830", v.SUITE_REGION, v.SUITE_SERVICE)
S3_KEY = c.signing_key(v.S3_SECRET, "20130524", "us-east-1", "s3")


def _authorization(case: v.SuiteCase) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={v.SUITE_ACCESS_KEY}/{v.SUITE_SCOPE}, "
        f"SignedHeaders={case.signed_headers}, Signature={case.signature}"
    )


def _signed(req: HttpRequest, authorization: str) -> HttpRequest:
    return HttpRequest.create(
        req.method,
        req.path,
        req.raw_query,
        [*req.headers.items(), ("Authorization", authorization)],
        req.body,
    )


@pytest.mark.parametrize("case", v.SUITE, ids=lambda case: case.name)
def test_suite_canonical_request_and_signature(case: v.SuiteCase) -> None:
    req = parse_raw(case.request)
    signed = case.signed_headers.split(";")
    creq = c.canonical_request(
        req.method,
        c.canonical_uri(req.path, s3=False),
        c.canonical_query(req.raw_query),
        req.headers,
        signed,
        c.sha256_hex(req.body or b""),
    )
    assert creq == case.creq
    sts = c.string_to_sign(v.SUITE_DATE, v.SUITE_SCOPE, creq)
    if case.sts_hash:
        assert sts.splitlines()[-1] == case.sts_hash
    assert c.signature(SUITE_KEY, sts) == case.signature


@pytest.mark.parametrize("case", v.SUITE, ids=lambda case: case.name)
def test_suite_request_authenticates(case: v.SuiteCase) -> None:
    req = _signed(parse_raw(case.request), _authorization(case))
    result = run(authenticate(req, SUITE_STORE, now=SUITE_NOW))
    assert result.scheme == "v4"
    assert result.credential.access_key == v.SUITE_ACCESS_KEY
    assert (result.region, result.service) == (v.SUITE_REGION, v.SUITE_SERVICE)
    assert result.payload_hash == c.sha256_hex(req.body or b"")


@pytest.mark.parametrize("case", v.SUITE[:8], ids=lambda case: case.name)
def test_suite_request_with_flipped_signature_fails(case: v.SuiteCase) -> None:
    flipped = case.signature[:-1] + ("0" if case.signature[-1] != "0" else "1")
    bad = v.SuiteCase(
        case.name, case.request, case.creq, case.sts_hash, flipped, case.signed_headers
    )
    req = _signed(parse_raw(case.request), _authorization(bad))
    fails(authenticate(req, SUITE_STORE, now=SUITE_NOW), AuthFailure.BAD_SIGNATURE)


def test_suite_request_is_skewed_an_hour_later() -> None:
    case = v.SUITE[6]
    req = _signed(parse_raw(case.request), _authorization(case))
    later = datetime(2015, 8, 30, 13, 36, tzinfo=UTC)
    fails(authenticate(req, SUITE_STORE, now=later), AuthFailure.SKEWED)


@pytest.mark.parametrize("case", v.PRESIGNED, ids=lambda case: case.name)
def test_suite_presigned_requests(case: v.PresignedCase) -> None:
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": v.SUITE_DATE}
    req = HttpRequest.create("GET", case.path, case.query, headers)
    result = run(authenticate(req, SUITE_STORE, now=SUITE_NOW))
    assert result.scheme == "v4-presigned"
    after_expiry = datetime(2015, 8, 30, 13, 36, 1, tzinfo=UTC)
    fails(authenticate(req, SUITE_STORE, now=after_expiry), AuthFailure.EXPIRED)
    tampered = HttpRequest.create("GET", case.path, case.query + "&extra=1", headers)
    fails(authenticate(tampered, SUITE_STORE, now=SUITE_NOW), AuthFailure.BAD_SIGNATURE)


def test_suite_unnormalized_path_uses_s3_rule() -> None:
    headers = {"host": "example.amazonaws.com", "x-amz-date": v.SUITE_DATE}
    creq = c.canonical_request(
        "GET",
        c.canonical_uri(v.UNNORMALIZED_PATH, s3=True),
        "",
        headers,
        ["host", "x-amz-date"],
        v.EMPTY,
    )
    assert creq.split("\n")[1] == "//example//"
    sts = c.string_to_sign(v.SUITE_DATE, v.SUITE_SCOPE, creq)
    assert c.signature(SUITE_KEY, sts) == v.UNNORMALIZED_SIGNATURE


def _s3_request(example: v.S3Example) -> HttpRequest:
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={v.S3_ACCESS_KEY}/{v.S3_SCOPE},"
        f"SignedHeaders={example.signed_headers},Signature={example.signature}"
    )
    headers = [("Host", v.S3_HOST), *example.headers, ("Authorization", authorization)]
    return HttpRequest.create(example.method, example.path, example.query, headers, example.body)


@pytest.mark.parametrize("example", v.S3_HEADER_EXAMPLES, ids=lambda e: e.name)
def test_s3_documentation_examples(example: v.S3Example) -> None:
    result = run(authenticate(_s3_request(example), S3_STORE, now=S3_NOW))
    assert result.service == "s3"
    assert result.payload_verified is (example.body is not None)


def test_s3_put_example_with_other_body_is_payload_mismatch() -> None:
    example = next(e for e in v.S3_HEADER_EXAMPLES if e.name == "put-object")
    req = _s3_request(example)
    req.body = b"Welcome to Amazon S3!"
    fails(authenticate(req, S3_STORE, now=S3_NOW), AuthFailure.PAYLOAD_MISMATCH)


def test_s3_documentation_presigned_url() -> None:
    req = HttpRequest.create("GET", "/test.txt", v.S3_PRESIGNED_QUERY, {"Host": v.S3_HOST})
    result = run(authenticate(req, S3_STORE, now=S3_NOW))
    assert (result.scheme, result.payload_hash) == ("v4-presigned", c.UNSIGNED_PAYLOAD)
    day_later = datetime(2013, 5, 25, 0, 0, 1, tzinfo=UTC)
    fails(authenticate(req, S3_STORE, now=day_later), AuthFailure.EXPIRED)
    other_object = HttpRequest.create(
        "GET", "/test2.txt", v.S3_PRESIGNED_QUERY, {"Host": v.S3_HOST}
    )
    fails(authenticate(other_object, S3_STORE, now=S3_NOW), AuthFailure.BAD_SIGNATURE)


def _chunked_body(signatures: tuple[str, ...]) -> bytes:
    return (
        f"10000;chunk-signature={signatures[0]}\r\n".encode()
        + b"a" * 65536
        + f"\r\n400;chunk-signature={signatures[1]}\r\n".encode()
        + b"a" * 1024
        + f"\r\n0;chunk-signature={signatures[2]}\r\n".encode()
    )


def _chunked_request() -> HttpRequest:
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={v.S3_ACCESS_KEY}/{v.S3_SCOPE},"
        f"SignedHeaders={v.CHUNKED_SIGNED_HEADERS},Signature={v.CHUNKED_SEED}"
    )
    headers = {
        "Host": v.CHUNKED_HOST,
        "x-amz-date": v.S3_DATE,
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "Authorization": authorization,
        "x-amz-content-sha256": c.STREAMING_PAYLOAD,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(v.CHUNKED_DECODED_LENGTH),
        "Content-Length": str(v.CHUNKED_CONTENT_LENGTH),
    }
    return HttpRequest.create("PUT", v.CHUNKED_PATH, "", headers)


def test_s3_chunked_upload_example_end_to_end() -> None:
    result = run(authenticate(_chunked_request(), S3_STORE, now=S3_NOW))
    ctx = result.chunk_context
    assert ctx is not None
    assert (ctx.seed_signature, ctx.scope, ctx.amz_date) == (v.CHUNKED_SEED, v.S3_SCOPE, v.S3_DATE)
    assert ctx.signing_key == S3_KEY
    body = _chunked_body(v.CHUNKED_SIGNATURES) + b"\r\n"
    assert len(body) == v.CHUNKED_CONTENT_LENGTH
    assert signed_chunked_length(v.CHUNKED_DECODED_LENGTH, 65536) == v.CHUNKED_CONTENT_LENGTH
    decoder = AwsChunkedDecoder(ctx, decoded_length=v.CHUNKED_DECODED_LENGTH)
    out = b"".join(decoder.feed(body[i : i + 7]) for i in range(0, len(body), 7))
    decoder.finish()
    assert out == b"a" * v.CHUNKED_DECODED_LENGTH


def test_s3_chunk_signatures_are_recomputed() -> None:
    ctx = ChunkSigningContext(v.CHUNKED_SEED, S3_KEY, v.S3_SCOPE, v.S3_DATE)
    first = chunk_signature(ctx, v.CHUNKED_SEED, hashlib.sha256(b"a" * 65536).hexdigest())
    second = chunk_signature(ctx, first, hashlib.sha256(b"a" * 1024).hexdigest())
    final = chunk_signature(ctx, second, c.EMPTY_SHA256)
    assert (first, second, final) == v.CHUNKED_SIGNATURES


def test_s3_chunked_example_with_wrong_seed_fails() -> None:
    ctx = ChunkSigningContext("0" * 64, S3_KEY, v.S3_SCOPE, v.S3_DATE)
    decoder = AwsChunkedDecoder(ctx)
    body = _chunked_body(v.CHUNKED_SIGNATURES)
    with pytest.raises(AuthError) as info:
        decoder.feed(body)
    assert info.value.reason is AuthFailure.BAD_CHUNK


def test_s3_signed_trailer_example() -> None:
    ctx = ChunkSigningContext(v.TRAILER_SEED, S3_KEY, v.S3_SCOPE, v.S3_DATE, trailer=True)
    name, value = v.TRAILER_CHECKSUM
    body = (
        _chunked_body(v.TRAILER_CHUNK_SIGNATURES)
        + f"{name}:{value}\r\nx-amz-trailer-signature:{v.TRAILER_SIGNATURE}\r\n\r\n".encode()
    )
    decoder = AwsChunkedDecoder(ctx)
    out = b"".join(decoder.feed(body[i : i + 1000]) for i in range(0, len(body), 1000))
    decoder.finish()
    assert out == b"a" * v.CHUNKED_DECODED_LENGTH
    assert decoder.trailers == {name: value}
    forged = body.replace(value.encode(), b"AAAAAA==")
    decoder = AwsChunkedDecoder(ctx)
    with pytest.raises(AuthError) as info:
        decoder.feed(forged)
    assert info.value.reason is AuthFailure.BAD_CHUNK
