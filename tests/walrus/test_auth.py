"""Authentication forms: SigV4 header, presigned V4 (expiry), aws-chunked (signed and
unsigned-with-trailer), SigV2 header and query, and the failures' S3 error codes."""

from __future__ import annotations

import base64
import re
import time
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import pytest

from eucalypt.auth import AwsChunkedEncoder, Credential, presign_v4, sign_v4, sign_v4_streaming
from tests.walrus.conftest import ALICE, REGION, WalrusServer, boto_config
from tests.walrus.helpers import random_bytes, s3_error


def test_presigned_v4_get_and_put(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p"},
                                        ExpiresIn=60)
    assert httpx.put(put_url, content=b"presigned body").status_code == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"},
                                        ExpiresIn=60)
    assert httpx.get(get_url).content == b"presigned body"
    # Tampering with the URL breaks the signature.
    resp = httpx.get(get_url.replace("/p?", "/q?"))
    assert resp.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in resp.text


def test_presigned_v4_expiry(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="e", Body=b"x")
    url = presign_v4("GET", f"{walrus.url}/{bucket}/e", ALICE, region=REGION, service="s3",
                     expires=1, now=datetime.now(UTC) - timedelta(seconds=30))
    resp = httpx.get(url)
    assert resp.status_code == 403
    assert "<Code>AccessDenied</Code>" in resp.text and "expired" in resp.text


def test_sigv2_header(walrus: WalrusServer, bucket: str) -> None:
    v2 = walrus.client(ALICE, signature_version="s3")
    v2.put_object(Bucket=bucket, Key="v2 key/é", Body=b"v2", Metadata={"m": "1"})
    assert v2.get_object(Bucket=bucket, Key="v2 key/é")["Body"].read() == b"v2"
    assert [o["Key"] for o in v2.list_objects(Bucket=bucket, Prefix="v2")["Contents"]] == \
        ["v2 key/é"]
    assert v2.get_object_acl(Bucket=bucket, Key="v2 key/é")["Grants"]
    bad = boto3.client("s3", endpoint_url=walrus.url, region_name=REGION,
                       aws_access_key_id=ALICE.access_key, aws_secret_access_key="wrong",
                       config=boto_config(signature_version="s3"))
    assert s3_error(bad.get_object, Bucket=bucket, Key="v2 key/é") == \
        ("SignatureDoesNotMatch", 403)


def test_sigv2_query_presigned(walrus: WalrusServer, bucket: str, s3: Any) -> None:
    s3.put_object(Bucket=bucket, Key="q2", Body=b"query v2")
    v2 = walrus.client(ALICE, signature_version="s3")
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "q2"},
                                    ExpiresIn=60)
    assert "Signature=" in url and "AWSAccessKeyId=" in url
    assert httpx.get(url).content == b"query v2"
    expired = re.sub(r"Expires=\d+", f"Expires={int(time.time()) - 10}", url)
    resp = httpx.get(expired)
    assert resp.status_code == 403 and "<Code>AccessDenied</Code>" in resp.text


def test_signed_aws_chunked_upload(walrus: WalrusServer, bucket: str, s3: Any) -> None:
    data = random_bytes(200_000)
    chunk = 64 * 1024
    url = f"{walrus.url}/{bucket}/chunked"
    headers, enc = sign_v4_streaming("PUT", url, {"content-type": "text/x-chunked"}, ALICE,
                                     region=REGION, service="s3", decoded_length=len(data),
                                     chunk_size=chunk)
    body = b"".join(enc.chunk(data[i:i + chunk]) for i in range(0, len(data), chunk))
    body += enc.finish()
    resp = httpx.put(url, content=body, headers={"content-type": "text/x-chunked", **headers})
    assert resp.status_code == 200, resp.text
    got = s3.get_object(Bucket=bucket, Key="chunked")
    assert got["Body"].read() == data
    assert got["ContentType"] == "text/x-chunked" and "ContentEncoding" not in got
    # One flipped byte in a chunk breaks its signature: nothing is stored.
    corrupt = bytearray(body)
    corrupt[len(body) // 2] ^= 1
    resp = httpx.put(url + "2", content=bytes(corrupt), headers=sign_v4_streaming(
        "PUT", url + "2", {}, ALICE, region=REGION, service="s3", decoded_length=len(data),
        chunk_size=chunk)[0])
    assert resp.status_code == 403 or resp.status_code == 400
    assert s3_error(s3.head_object, Bucket=bucket, Key="chunked2")[1] == 404
    assert not walrus.temp_files()


def test_unsigned_chunked_with_trailer(walrus: WalrusServer, bucket: str, s3: Any) -> None:
    data = random_bytes(100_000)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    enc = AwsChunkedEncoder(None)
    body = enc.chunk(data[:60_000]) + enc.chunk(data[60_000:]) + \
        enc.finish({"x-amz-checksum-crc32": crc})
    url = f"{walrus.url}/{bucket}/trailer"
    extra = {"content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
             "x-amz-decoded-content-length": str(len(data))}
    headers = sign_v4("PUT", url, extra, None, ALICE, region=REGION, service="s3",
                      payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    resp = httpx.put(url, content=body, headers={**extra, **headers})
    assert resp.status_code == 200, resp.text
    assert s3.get_object(Bucket=bucket, Key="trailer")["Body"].read() == data
    # A wrong trailer checksum is BadDigest and stores nothing.
    enc = AwsChunkedEncoder(None)
    body = enc.chunk(data) + enc.finish({"x-amz-checksum-crc32": "AAAAAA=="})
    headers = sign_v4("PUT", url + "x", extra, None, ALICE, region=REGION, service="s3",
                      payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    resp = httpx.put(url + "x", content=body, headers={**extra, **headers})
    assert resp.status_code == 400 and "<Code>BadDigest</Code>" in resp.text


def test_failures(walrus: WalrusServer, bucket: str) -> None:
    unknown = walrus.client(Credential("AKIANOBODY0000000000", "x" * 40))
    assert s3_error(unknown.list_objects_v2, Bucket=bucket) == ("InvalidAccessKeyId", 403)
    wrong = boto3.client("s3", endpoint_url=walrus.url, region_name=REGION,
                         aws_access_key_id=ALICE.access_key, aws_secret_access_key="nope",
                         config=boto_config())
    assert s3_error(wrong.list_objects_v2, Bucket=bucket) == ("SignatureDoesNotMatch", 403)
    url = f"{walrus.url}/{bucket}"
    old = datetime.now(UTC) - timedelta(hours=1)
    resp = httpx.get(url, headers=sign_v4("GET", url, {}, None, ALICE, region=REGION,
                                          service="s3", now=old))
    assert resp.status_code == 403 and "<Code>RequestTimeTooSkewed</Code>" in resp.text
    resp = httpx.get(url, headers={"authorization": "AWS4-HMAC-SHA256 garbage"})
    assert resp.status_code == 400 and "<Code>AuthorizationHeaderMalformed</Code>" in resp.text


def test_inactive_key(walrus: WalrusServer) -> None:
    # The static store in the fixture has no inactive key; check the mapping directly.
    from eucalypt.auth import AuthError, AuthFailure
    from eucalypt.walrus.security import s3_error_for

    assert s3_error_for(AuthError(AuthFailure.INACTIVE_KEY, "off")).code == "InvalidAccessKeyId"
    assert s3_error_for(AuthError(AuthFailure.PAYLOAD_MISMATCH, "x")).code == \
        "XAmzContentSHA256Mismatch"


@pytest.mark.parametrize("amz_date", ["Bad Date", "", "Tue, 07 Jul 1950 21:53:04 GMT"])
def test_sigv2_needs_a_valid_request_time(walrus: WalrusServer, bucket: str,
                                          amz_date: str) -> None:
    """x-amz-date, when sent, is the request time (even empty): an invalid one, or one before
    1970, is 403 AccessDenied (the signature itself covers the bad value and is valid)."""
    v2 = boto3.client("s3", endpoint_url=walrus.url, region_name=REGION,
                      aws_access_key_id=ALICE.access_key,
                      aws_secret_access_key=ALICE.secret_key,
                      config=boto_config(signature_version="s3"))

    def add(**kwargs: Any) -> None:
        kwargs["params"]["headers"]["x-amz-date"] = amz_date

    v2.meta.events.register("before-call.s3.PutObject", add)
    assert s3_error(v2.put_object, Bucket=bucket, Key="k", Body=b"x") == ("AccessDenied", 403)
