"""Requests signed by botocore's own signers verify; tampered ones do not."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import (
    HmacV1Auth,
    HmacV1QueryAuth,
    S3SigV4Auth,
    S3SigV4QueryAuth,
    SigV2Auth,
    SigV4Auth,
    SigV4QueryAuth,
)
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from eucalypt.auth import (
    AuthFailure,
    AwsChunkedDecoder,
    HttpRequest,
    authenticate,
    payload_verifier,
)
from eucalypt.auth import canonical as c

from .helpers import (
    ACCESS_KEY,
    BOTO_CREDENTIALS,
    ENDPOINT,
    INACTIVE_KEY,
    SECRET,
    STORE,
    fails,
    from_botocore,
    run,
)

EC2_FORM = {"Action": "DescribeInstances", "Version": "2016-11-15", "InstanceId.1": "i-1 2+3"}
FORM_TYPE = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def _ec2_v4(credentials: Credentials = BOTO_CREDENTIALS) -> HttpRequest:
    request = AWSRequest(method="POST", url=f"{ENDPOINT}/", data=EC2_FORM, headers=FORM_TYPE)
    SigV4Auth(credentials, "ec2", "us-east-1").add_auth(request)
    return from_botocore(request)


def _s3_put_v4(body: bytes = b"hello, walrus") -> HttpRequest:
    request = AWSRequest(
        method="PUT",
        url=f"{ENDPOINT}/bucket/dir/a%20b%2Bc~d.txt",
        data=body,
        headers={"Content-Type": "text/plain", "x-amz-meta-colour": "blue"},
    )
    S3SigV4Auth(BOTO_CREDENTIALS, "s3", "us-east-1").add_auth(request)
    return from_botocore(request)


def _replace(req: HttpRequest, **changes: object) -> HttpRequest:
    return dataclasses.replace(req, **changes)  # type: ignore[arg-type]


def _with_header(req: HttpRequest, name: str, value: str) -> HttpRequest:
    return _replace(req, headers={**req.headers, name: value})


# --- SigV4, EC2 Query (form body, no x-amz-content-sha256) ---------------------------------------


def test_ec2_sigv4_form_post_verifies() -> None:
    req = _ec2_v4()
    assert "x-amz-content-sha256" not in req.headers
    result = run(authenticate(req, STORE))
    assert (result.scheme, result.service, result.region) == ("v4", "ec2", "us-east-1")
    assert result.credential.user_name == "alice"
    assert result.payload_hash == c.sha256_hex(req.body or b"")
    assert result.payload_verified


def test_ec2_sigv4_tampering_fails() -> None:
    req = _ec2_v4()
    assert req.body is not None
    tampered = [
        _replace(req, method="PUT"),
        _replace(req, path="/other"),
        _replace(req, raw_query="Action=RunInstances"),
        _replace(req, body=req.body.replace(b"DescribeInstances", b"TerminateInstances")),
        _with_header(req, "content-type", "text/plain"),
        _with_header(req, "host", "evil.example.com"),
    ]
    for bad in tampered:
        fails(authenticate(bad, STORE), AuthFailure.BAD_SIGNATURE)


def test_ec2_sigv4_wrong_secret_unknown_and_inactive_keys() -> None:
    fails(authenticate(_ec2_v4(Credentials(ACCESS_KEY, "wrong")), STORE), AuthFailure.BAD_SIGNATURE)
    unknown = _ec2_v4(Credentials("AKIDNOBODY", SECRET))
    fails(authenticate(unknown, STORE), AuthFailure.UNKNOWN_KEY)
    inactive = _ec2_v4(Credentials(INACTIVE_KEY, "inactive-secret"))
    fails(authenticate(inactive, STORE), AuthFailure.INACTIVE_KEY)


def test_ec2_sigv4_clock_skew() -> None:
    req = _ec2_v4()
    now = datetime.now(UTC)
    run(authenticate(req, STORE, now=now + timedelta(minutes=14)))
    fails(authenticate(req, STORE, now=now + timedelta(minutes=16)), AuthFailure.SKEWED)
    fails(authenticate(req, STORE, now=now - timedelta(minutes=16)), AuthFailure.SKEWED)
    run(authenticate(req, STORE, now=now + timedelta(minutes=16), max_skew=timedelta(hours=1)))


def test_ec2_sigv4_service_filter() -> None:
    req = _ec2_v4()
    run(authenticate(req, STORE, services={"ec2"}))
    fails(authenticate(req, STORE, services={"s3"}), AuthFailure.MALFORMED)


def test_sigv4_query_auth_non_s3() -> None:
    request = AWSRequest(method="GET", url=f"{ENDPOINT}/", params={"Action": "DescribeRegions"})
    SigV4QueryAuth(BOTO_CREDENTIALS, "ec2", "us-east-1", expires=60).add_auth(request)
    req = from_botocore(request)
    assert "X-Amz-Signature=" in req.raw_query
    assert run(authenticate(req, STORE)).scheme == "v4-presigned"
    later = datetime.now(UTC) + timedelta(seconds=120)
    fails(authenticate(req, STORE, now=later), AuthFailure.EXPIRED)


# --- SigV4, S3 -----------------------------------------------------------------------------------


def test_s3_sigv4_put_verifies_with_raw_path() -> None:
    req = _s3_put_v4()
    assert req.path == "/bucket/dir/a%20b%2Bc~d.txt"
    result = run(authenticate(req, STORE))
    assert result.service == "s3"
    assert result.payload_hash == c.sha256_hex(b"hello, walrus")
    assert result.payload_verified


def test_s3_sigv4_streamed_body_is_left_to_the_caller() -> None:
    req = _replace(_s3_put_v4(), body=None)
    result = run(authenticate(req, STORE))
    assert not result.payload_verified
    assert result.payload_hash == c.sha256_hex(b"hello, walrus")


def test_s3_sigv4_tampering() -> None:
    req = _s3_put_v4()
    fails(authenticate(_replace(req, body=b"hello, walrut"), STORE), AuthFailure.PAYLOAD_MISMATCH)
    fails(
        authenticate(_replace(req, path="/bucket/dir/a%20b%2Bc~e.txt"), STORE),
        AuthFailure.BAD_SIGNATURE,
    )
    fails(
        authenticate(_with_header(req, "x-amz-meta-colour", "red"), STORE),
        AuthFailure.BAD_SIGNATURE,
    )
    fails(authenticate(_with_header(req, "x-amz-acl", "public-read"), STORE), AuthFailure.MALFORMED)
    other_hash = c.sha256_hex(b"something else")
    fails(
        authenticate(_with_header(req, "x-amz-content-sha256", other_hash), STORE),
        AuthFailure.BAD_SIGNATURE,
    )


def test_s3_sigv4_query_auth() -> None:
    request = AWSRequest(method="GET", url=f"{ENDPOINT}/bucket/k%C3%A9y", params={})
    S3SigV4QueryAuth(BOTO_CREDENTIALS, "s3", "us-east-1", expires=300).add_auth(request)
    req = from_botocore(request, with_body=False)
    result = run(authenticate(req, STORE))
    assert (result.scheme, result.payload_hash) == ("v4-presigned", c.UNSIGNED_PAYLOAD)
    fails(authenticate(_replace(req, method="DELETE"), STORE), AuthFailure.BAD_SIGNATURE)


def _s3_client(signature_version: str) -> object:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(signature_version=signature_version, s3={"addressing_style": "path"}),
    )


def _presigned(url: str) -> HttpRequest:
    parts = urlsplit(url)
    return HttpRequest.create("GET", parts.path, parts.query, {"Host": parts.netloc})


def test_boto3_generate_presigned_url_v4() -> None:
    client = _s3_client("s3v4")
    url = client.generate_presigned_url(  # type: ignore[attr-defined]
        "get_object",
        Params={
            "Bucket": "photos",
            "Key": "2024/a b+c=d&e.jpg",
            "ResponseContentType": "image/jpeg",
        },
        ExpiresIn=300,
    )
    req = _presigned(url)
    result = run(authenticate(req, STORE))
    assert result.scheme == "v4-presigned"
    later = datetime.now(UTC) + timedelta(seconds=301)
    fails(authenticate(req, STORE, now=later), AuthFailure.EXPIRED)
    swapped = _replace(req, raw_query=req.raw_query.replace("image%2Fjpeg", "text%2Fhtml"))
    fails(authenticate(swapped, STORE), AuthFailure.BAD_SIGNATURE)
    fails(authenticate(_replace(req, path=req.path + "x"), STORE), AuthFailure.BAD_SIGNATURE)


def test_boto3_generate_presigned_url_v2() -> None:
    client = _s3_client("s3")
    url = client.generate_presigned_url(  # type: ignore[attr-defined]
        "get_object", Params={"Bucket": "photos", "Key": "x/y z.jpg"}, ExpiresIn=300
    )
    req = _presigned(url)
    assert "AWSAccessKeyId=" in req.raw_query and "Expires=" in req.raw_query
    assert run(authenticate(req, STORE)).scheme == "v2-presigned"
    later = datetime.now(UTC) + timedelta(seconds=301)
    fails(authenticate(req, STORE, now=later), AuthFailure.EXPIRED)
    fails(authenticate(_replace(req, path="/photos/x/other.jpg"), STORE), AuthFailure.BAD_SIGNATURE)


# --- SigV2 ---------------------------------------------------------------------------------------


def test_s3_hmacv1_header_with_subresources() -> None:
    request = AWSRequest(
        method="PUT",
        url=f"{ENDPOINT}/bucket/key%20one?partNumber=2&uploadId=abc%2Fdef&ignored=1",
        data=b"part",
        headers={
            "Content-MD5": "aGVsbG8=",
            "Content-Type": "application/octet-stream",
            "x-amz-meta-a": "  spaced  ",
        },
    )
    HmacV1Auth(BOTO_CREDENTIALS).add_auth(request)
    req = from_botocore(request)
    assert req.headers["authorization"].startswith(f"AWS {ACCESS_KEY}:")
    assert run(authenticate(req, STORE)).scheme == "v2"
    # a non-sub-resource parameter is not signed under SigV2; a sub-resource is
    run(
        authenticate(
            _replace(req, raw_query=req.raw_query.replace("ignored=1", "ignored=2")), STORE
        )
    )
    fails(
        authenticate(
            _replace(req, raw_query=req.raw_query.replace("partNumber=2", "partNumber=3")), STORE
        ),
        AuthFailure.BAD_SIGNATURE,
    )
    fails(
        authenticate(_with_header(req, "content-md5", "d29ybGQ="), STORE), AuthFailure.BAD_SIGNATURE
    )
    fails(
        authenticate(_with_header(req, "x-amz-meta-a", "other"), STORE), AuthFailure.BAD_SIGNATURE
    )
    fails(authenticate(_replace(req, method="POST"), STORE), AuthFailure.BAD_SIGNATURE)


def test_s3_hmacv1_virtual_hosted() -> None:
    request = AWSRequest(method="GET", url="http://photos.s3.local:8773/cat.jpg?acl")
    request.auth_path = "/photos/cat.jpg"
    HmacV1Auth(BOTO_CREDENTIALS).add_auth(request)
    req = from_botocore(request, with_body=False)
    assert run(authenticate(req, STORE, s3_bucket_from_host="photos")).scheme == "v2"
    fails(authenticate(req, STORE), AuthFailure.BAD_SIGNATURE)
    fails(authenticate(req, STORE, s3_bucket_from_host="other"), AuthFailure.BAD_SIGNATURE)


def test_s3_hmacv1_old_date_is_skewed() -> None:
    request = AWSRequest(method="GET", url=f"{ENDPOINT}/bucket/key")
    HmacV1Auth(BOTO_CREDENTIALS).add_auth(request)
    req = from_botocore(request, with_body=False)
    fails(
        authenticate(req, STORE, now=datetime.now(UTC) + timedelta(minutes=20)), AuthFailure.SKEWED
    )
    stale = formatdate(datetime.now(UTC).timestamp() - 3600, usegmt=True)
    assert req.headers["date"] != stale
    fails(authenticate(_with_header(req, "date", stale), STORE), AuthFailure.SKEWED)


def test_s3_hmacv1_query_auth() -> None:
    request = AWSRequest(
        method="GET",
        url=f"{ENDPOINT}/bucket/key?versionId=3",
        headers={"x-amz-request-payer": "requester"},
    )
    HmacV1QueryAuth(BOTO_CREDENTIALS, expires=120).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    req = HttpRequest.create("GET", parts.path, parts.query, {"Host": parts.netloc})
    assert "x-amz-request-payer=requester" in req.raw_query
    assert run(authenticate(req, STORE)).scheme == "v2-presigned"
    fails(
        authenticate(req, STORE, now=datetime.now(UTC) + timedelta(seconds=200)),
        AuthFailure.EXPIRED,
    )
    fails(
        authenticate(
            _replace(req, raw_query=req.raw_query.replace("versionId=3", "versionId=4")), STORE
        ),
        AuthFailure.BAD_SIGNATURE,
    )


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_ec2_sigv2(method: str) -> None:
    if method == "POST":
        request = AWSRequest(
            method="POST", url=f"{ENDPOINT}/", data=dict(EC2_FORM), headers=FORM_TYPE
        )
    else:
        request = AWSRequest(method="GET", url=f"{ENDPOINT}/", params=dict(EC2_FORM))
    SigV2Auth(BOTO_CREDENTIALS).add_auth(request)
    req = from_botocore(request)
    result = run(authenticate(req, STORE))
    assert (result.scheme, result.credential.access_key) == ("v2", ACCESS_KEY)
    fails(
        authenticate(req, STORE, now=datetime.now(UTC) + timedelta(minutes=16)), AuthFailure.SKEWED
    )
    fails(
        authenticate(_with_header(req, "host", "127.0.0.1:9999"), STORE), AuthFailure.BAD_SIGNATURE
    )
    if method == "POST":
        assert req.body is not None
        bad_body = req.body.replace(b"DescribeInstances", b"TerminateInstances")
        fails(authenticate(_replace(req, body=bad_body), STORE), AuthFailure.BAD_SIGNATURE)
    else:
        bad_query = req.raw_query.replace("DescribeInstances", "TerminateInstances")
        fails(authenticate(_replace(req, raw_query=bad_query), STORE), AuthFailure.BAD_SIGNATURE)
    unknown = AWSRequest(method="GET", url=f"{ENDPOINT}/", params=dict(EC2_FORM))
    SigV2Auth(Credentials("AKIDNOBODY", SECRET)).add_auth(unknown)
    fails(authenticate(from_botocore(unknown), STORE), AuthFailure.UNKNOWN_KEY)


# --- aws-chunked with botocore's unsigned trailer wrapper ----------------------------------------


def test_botocore_unsigned_trailer_body_decodes() -> None:
    payload = bytes(range(256)) * 40
    wrapper = AwsChunkedWrapper(
        io.BytesIO(payload),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=1000,
    )
    body = wrapper.read()
    decoder = AwsChunkedDecoder(None, decoded_length=len(payload))
    out = b"".join(decoder.feed(body[i : i + 13]) for i in range(0, len(body), 13))
    decoder.finish()
    assert out == payload
    checksum = Crc32Checksum()
    checksum.update(payload)
    assert decoder.trailers == {"x-amz-checksum-crc32": checksum.b64digest()}


class _EmptyBody:
    def stream(self, **_: object) -> Iterator[bytes]:
        yield b""


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_boto3_put_object_as_sent_verifies(scheme: str) -> None:
    """What boto3 really sends for PutObject: a signed body over http, aws-chunked over https."""
    captured: list[AWSPreparedRequest] = []

    def before_send(request: AWSPreparedRequest, **_: object) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {"ETag": '"0"'}, _EmptyBody())

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=f"{scheme}://127.0.0.1:8773",
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(s3={"addressing_style": "path"}),
    )
    client.meta.events.register("before-send", before_send)
    client.put_object(Bucket="b", Key="dir/k 1", Body=b"hello world")
    sent = captured[-1]
    body = sent.body if isinstance(sent.body, bytes) else sent.body.read()
    req = from_botocore(sent, with_body=False)
    result = run(authenticate(req, STORE, services={"s3"}))
    assert result.service == "s3"
    if req.headers.get("content-encoding") == "aws-chunked":
        assert result.payload_hash == c.STREAMING_UNSIGNED_TRAILER
        decoder = AwsChunkedDecoder(None, decoded_length=11)
        assert decoder.feed(body) == b"hello world"
        decoder.finish()
        assert "x-amz-checksum-crc32" in decoder.trailers
    else:
        assert result.payload_hash == c.sha256_hex(b"hello world")
        verifier = payload_verifier(result.payload_hash)
        verifier.update(body)
        verifier.verify()
