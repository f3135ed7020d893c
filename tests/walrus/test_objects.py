"""Objects: put/get/head/delete, metadata, Content-MD5, ranges, conditions, overrides, keys."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import httpx
import pytest

from eucalypt.auth import sign_v4
from tests.walrus.conftest import ALICE, REGION, WalrusServer, boto_config
from tests.walrus.helpers import md5_hex, random_bytes, raw_request, s3_error


def test_put_get_head_delete(s3: Any, bucket: str) -> None:
    data = random_bytes(100_000)
    put = s3.put_object(Bucket=bucket, Key="obj", Body=data)
    assert put["ETag"] == f'"{md5_hex(data)}"'
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data)
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "binary/octet-stream"
    assert abs(got["LastModified"] - datetime.now(UTC)) < timedelta(minutes=1)
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert head["ContentLength"] == len(data) and head["ETag"] == put["ETag"]
    s3.delete_object(Bucket=bucket, Key="obj")
    assert s3_error(s3.get_object, Bucket=bucket, Key="obj") == ("NoSuchKey", 404)
    assert s3_error(s3.head_object, Bucket=bucket, Key="obj") == ("404", 404)
    # Deleting a missing key is not an error in S3.
    assert s3.delete_object(Bucket=bucket, Key="obj")["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_empty_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ETag"] == f'"{md5_hex(b"")}"'


def test_overwrite_replaces_bytes_and_metadata(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", Metadata={"v": "1"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"second!", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"second!"
    assert got["Metadata"] == {}
    assert got["ContentType"] == "text/plain"


def test_metadata_and_content_headers_round_trip(s3: Any, bucket: str) -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    s3.put_object(
        Bucket=bucket, Key="meta", Body=b"<html/>", ContentType="text/html; charset=utf-8",
        ContentEncoding="identity", ContentDisposition='attachment; filename="a.html"',
        CacheControl="max-age=60", ContentLanguage="en", Expires=expires,
        Metadata={"color": "blue", "Mixed-Case": "Value With Spaces"},
    )
    for call in (s3.get_object, s3.head_object):
        r = call(Bucket=bucket, Key="meta")
        assert r["ContentType"] == "text/html; charset=utf-8"
        assert r["ContentEncoding"] == "identity"
        assert r["ContentDisposition"] == 'attachment; filename="a.html"'
        assert r["CacheControl"] == "max-age=60"
        assert r["ContentLanguage"] == "en"
        assert r["Expires"] == expires
        assert r["Metadata"] == {"color": "blue", "mixed-case": "Value With Spaces"}


def test_metadata_too_large(s3: Any, bucket: str) -> None:
    code, status = s3_error(s3.put_object, Bucket=bucket, Key="m", Body=b"x",
                            Metadata={"big": "v" * 3000})
    assert (code, status) == ("MetadataTooLarge", 400)


def test_content_md5(s3: Any, bucket: str) -> None:
    data = b"checked body"
    good = base64.b64encode(hashlib.md5(data).digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5", Body=data, ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert s3_error(s3.put_object, Bucket=bucket, Key="md5-bad", Body=data,
                    ContentMD5=bad) == ("BadDigest", 400)
    assert s3_error(s3.get_object, Bucket=bucket, Key="md5-bad")[0] == "NoSuchKey"
    assert s3_error(s3.put_object, Bucket=bucket, Key="md5-bad", Body=data,
                    ContentMD5="not-base64!") == ("InvalidDigest", 400)


def test_sha256_payload_mismatch(walrus: WalrusServer, bucket: str) -> None:
    url = f"{walrus.url}/{bucket}/tampered"
    headers = sign_v4("PUT", url, {}, b"what was signed", ALICE, region=REGION, service="s3")
    resp = httpx.put(url, content=b"what was sent!!", headers=headers)
    assert resp.status_code == 400
    assert "<Code>XAmzContentSHA256Mismatch</Code>" in resp.text
    assert s3_error(walrus.client().head_object, Bucket=bucket, Key="tampered")[1] == 404


def test_checksum_crc32_header(s3: Any, bucket: str) -> None:
    r = s3.put_object(Bucket=bucket, Key="crc", Body=b"abc", ChecksumAlgorithm="CRC32")
    assert r["ChecksumCRC32"] == "NSRBwg=="
    code, status = s3_error(s3.put_object, Bucket=bucket, Key="crc2", Body=b"abc",
                            ChecksumCRC32="AAAAAA==")
    assert (code, status) == ("BadDigest", 400)


@pytest.mark.parametrize(("spec", "start", "end"), [
    ("bytes=0-9", 0, 9), ("bytes=10-", 10, 999), ("bytes=-5", 995, 999),
    ("bytes=990-5000", 990, 999), ("bytes=500-500", 500, 500),
])
def test_range(s3: Any, bucket: str, spec: str, start: int, end: int) -> None:
    data = random_bytes(1000)
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    got = s3.get_object(Bucket=bucket, Key="r", Range=spec)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {start}-{end}/1000"
    assert got["Body"].read() == data[start:end + 1]


def test_unsatisfiable_range(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"12345")
    assert s3_error(s3.get_object, Bucket=bucket, Key="r", Range="bytes=5-") == \
        ("InvalidRange", 416)
    # Syntactically invalid ranges are ignored: the whole object comes back.
    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=x-y")
    assert got["Body"].read() == b"12345"


def test_conditional_get(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"cond")["ETag"]
    lm = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"cond"
    assert s3_error(s3.get_object, Bucket=bucket, Key="c", IfMatch='"0000"') == \
        ("PreconditionFailed", 412)
    assert s3_error(s3.get_object, Bucket=bucket, Key="c", IfNoneMatch=etag) == \
        ("304", 304)
    assert s3.get_object(Bucket=bucket, Key="c", IfNoneMatch='"0000"')["Body"].read() == b"cond"
    later, earlier = lm + timedelta(hours=1), lm - timedelta(hours=1)
    assert s3_error(s3.get_object, Bucket=bucket, Key="c", IfModifiedSince=later) == \
        ("304", 304)
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=earlier)["Body"].read()
    assert s3_error(s3.get_object, Bucket=bucket, Key="c", IfUnmodifiedSince=earlier) == \
        ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=later)["Body"].read()
    # If-Match wins over a failing If-Unmodified-Since (RFC 7232 order, as S3).
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag,
                         IfUnmodifiedSince=earlier)["Body"].read() == b"cond"
    assert s3_error(s3.head_object, Bucket=bucket, Key="c", IfNoneMatch=etag) == ("304", 304)


def test_response_header_overrides(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket, Key="o", ResponseContentType="application/json",
        ResponseContentDisposition="inline", ResponseCacheControl="no-cache",
        ResponseContentLanguage="de", ResponseContentEncoding="gzip",
        ResponseExpires=datetime(2031, 1, 1, tzinfo=UTC),
    )
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "de"
    assert got["ContentEncoding"] == "gzip"
    assert got["Expires"] == datetime(2031, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("key", [
    "plain", "with space", "unicodé/ключ/键/🦭", "../../etc/passwd", "/leading-slash",
    "a//double", "percent%20sign", "plus+sign", "question?mark", "hash#tag", "tilde~",
    "semi;colon", "..", ".", "ends/with/slash/", "x" * 1024,
])
def test_key_shapes(s3: Any, walrus: WalrusServer, bucket: str, key: str) -> None:
    data = key.encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert key in listed
    # Nothing escaped the data directory: every file Walrus wrote is under its store.
    assert not (walrus.storage_dir.parent / "etc" / "passwd").exists()
    for path in walrus.blob_files():
        assert path.resolve().is_relative_to(walrus.storage_dir.resolve())
        assert len(path.name) == 32


def test_key_too_long(s3: Any, bucket: str) -> None:
    assert s3_error(s3.put_object, Bucket=bucket, Key="k" * 1025, Body=b"x") == \
        ("KeyTooLongError", 400)
    # Multi-byte characters count as their UTF-8 length.
    assert s3_error(s3.put_object, Bucket=bucket, Key="é" * 513, Body=b"x") == \
        ("KeyTooLongError", 400)


def test_nul_in_key_rejected(walrus: WalrusServer, bucket: str) -> None:
    resp = raw_request("PUT", f"{walrus.url}/{bucket}/a%00b", b"x", cred=ALICE)
    assert resp.status_code == 400
    assert "<Code>InvalidArgument</Code>" in resp.text


def test_invalid_utf8_key_rejected(walrus: WalrusServer, bucket: str) -> None:
    resp = raw_request("PUT", f"{walrus.url}/{bucket}/bad%FF%FEkey", b"x", cred=ALICE)
    assert resp.status_code == 400
    assert "<Code>InvalidURI</Code>" in resp.text


def test_no_such_bucket(s3: Any) -> None:
    assert s3_error(s3.put_object, Bucket="no-such-bucket-here", Key="k", Body=b"x") == \
        ("NoSuchBucket", 404)
    assert s3_error(s3.get_object, Bucket="no-such-bucket-here", Key="k") == \
        ("NoSuchBucket", 404)


def test_virtual_hosted_style(walrus: WalrusServer, bucket: str) -> None:
    """boto3 in virtual-hosted style: the bucket travels in the Host header.

    ``<bucket>.s3.localhost`` does not resolve on every machine, so the
    connection goes to 127.0.0.1 with the Host header boto3 signed.
    """
    vh_url = walrus.url.replace("127.0.0.1", "s3.localhost")
    vh = boto3.client("s3", endpoint_url=vh_url, region_name=REGION,
                      aws_access_key_id=ALICE.access_key,
                      aws_secret_access_key=ALICE.secret_key,
                      config=boto_config(addressing_style="virtual"))
    hosts: list[str] = []

    def to_loopback(request: Any, **_: Any) -> None:
        parts = urlsplit(request.url)
        hosts.append(parts.netloc)
        request.headers["Host"] = parts.netloc
        request.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{walrus.port}"))

    vh.meta.events.register("before-send.s3", to_loopback)
    vh.put_object(Bucket=bucket, Key="vh/key.txt", Body=b"virtual")
    assert hosts[-1] == f"{bucket}.s3.localhost:{walrus.port}"
    assert walrus.client().get_object(Bucket=bucket, Key="vh/key.txt")["Body"].read() == \
        b"virtual"
    assert vh.get_object(Bucket=bucket, Key="vh/key.txt")["Body"].read() == b"virtual"
    assert [o["Key"] for o in vh.list_objects_v2(Bucket=bucket)["Contents"]] == ["vh/key.txt"]
    vh.delete_object(Bucket=bucket, Key="vh/key.txt")
    assert "Contents" not in walrus.client().list_objects_v2(Bucket=bucket)


def test_delete_objects(s3: Any, bucket: str) -> None:
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"x")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "d/0"}, {"Key": "d/1"}, {"Key": "d/missing"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["d/0", "d/1", "d/missing"]
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert left == ["d/2", "d/3", "d/4"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/2"}], "Quiet": True})
    assert "Deleted" not in quiet
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["d/3", "d/4"]


def test_copy_object(s3: Any, bucket: str) -> None:
    data = random_bytes(300_000)
    src = s3.put_object(Bucket=bucket, Key="src", Body=data, ContentType="image/png",
                        Metadata={"orig": "yes"})
    r = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == src["ETag"]
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == data
    assert got["ContentType"] == "image/png" and got["Metadata"] == {"orig": "yes"}
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src",
                   MetadataDirective="REPLACE", ContentType="text/plain",
                   Metadata={"new": "1"})
    got = s3.get_object(Bucket=bucket, Key="dst2")
    assert got["ContentType"] == "text/plain" and got["Metadata"] == {"new": "1"}
    assert got["Body"].read() == data


def test_copy_to_itself(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="self", Body=b"x", Metadata={"a": "1"})
    assert s3_error(s3.copy_object, Bucket=bucket, Key="self",
                    CopySource={"Bucket": bucket, "Key": "self"}) == ("InvalidRequest", 400)
    s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"},
                   MetadataDirective="REPLACE", Metadata={"a": "2"})
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Metadata"] == {"a": "2"} and got["Body"].read() == b"x"


def test_copy_conditions(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="s", Body=b"src")["ETag"]
    lm = s3.head_object(Bucket=bucket, Key="s")["LastModified"]
    src = {"Bucket": bucket, "Key": "s"}
    s3.copy_object(Bucket=bucket, Key="d1", CopySource=src, CopySourceIfMatch=etag)
    assert s3_error(s3.copy_object, Bucket=bucket, Key="d2", CopySource=src,
                    CopySourceIfMatch='"nope"') == ("PreconditionFailed", 412)
    assert s3_error(s3.copy_object, Bucket=bucket, Key="d3", CopySource=src,
                    CopySourceIfNoneMatch=etag) == ("PreconditionFailed", 412)
    assert s3_error(s3.copy_object, Bucket=bucket, Key="d4", CopySource=src,
                    CopySourceIfModifiedSince=lm + timedelta(hours=1)) == \
        ("PreconditionFailed", 412)
    assert s3_error(s3.copy_object, Bucket=bucket, Key="d5", CopySource=src,
                    CopySourceIfUnmodifiedSince=lm - timedelta(hours=1)) == \
        ("PreconditionFailed", 412)
    assert s3_error(s3.copy_object, Bucket=bucket, Key="d6",
                    CopySource={"Bucket": bucket, "Key": "missing"}) == ("NoSuchKey", 404)


def test_object_tagging_is_empty(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []


def test_unsupported_encryption_is_refused(s3: Any, bucket: str) -> None:
    assert s3_error(s3.put_object, Bucket=bucket, Key="enc", Body=b"x",
                    ServerSideEncryption="AES256") == ("NotImplemented", 501)


def test_conditional_put(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    """If-Match / If-None-Match on PutObject compare with the version being replaced."""
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"one")["ETag"]

    def put(body: bytes, **headers: str) -> Any:
        return raw_request("PUT", f"{walrus.url}/{bucket}/c", body, headers, cred=ALICE)

    assert put(b"two", **{"If-Match": etag}).status_code == 200
    failed = put(b"three", **{"If-Match": etag})  # the etag is now that of "two"
    assert failed.status_code == 412 and b"<Code>PreconditionFailed</Code>" in failed.content
    assert put(b"four", **{"If-None-Match": "*"}).status_code == 412
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"two"
    missing = raw_request("PUT", f"{walrus.url}/{bucket}/new", b"n", {"If-Match": "*"},
                          cred=ALICE)
    assert missing.status_code == 404 and b"<Code>NoSuchKey</Code>" in missing.content
    created = raw_request("PUT", f"{walrus.url}/{bucket}/new", b"n", {"If-None-Match": "*"},
                          cred=ALICE)
    assert created.status_code == 200
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"n"


@pytest.mark.parametrize("size", [(128 << 10) + 1, 1 << 20, 4 << 20])
def test_whole_body_put(walrus: WalrusServer, s3: Any, bucket: str, size: int) -> None:
    """Bodies read whole into one buffer (over the inline size, up to 4 MiB): the bytes and
    ETag round-trip, and a body failing a check leaves the old version and no file behind."""
    data = random_bytes(size)
    r = s3.put_object(Bucket=bucket, Key="w", Body=data)
    assert r["ETag"] == f'"{md5_hex(data)}"'
    assert s3.get_object(Bucket=bucket, Key="w")["Body"].read() == data
    files = set(walrus.blob_files())
    other = random_bytes(size)
    bad_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert s3_error(s3.put_object, Bucket=bucket, Key="w", Body=other,
                    ContentMD5=bad_md5) == ("BadDigest", 400)
    assert s3_error(s3.put_object, Bucket=bucket, Key="w", Body=other,
                    ChecksumCRC32="AAAAAA==") == ("BadDigest", 400)
    url = f"{walrus.url}/{bucket}/w"
    headers = sign_v4("PUT", url, {}, other[:-1] + b"!", ALICE, region=REGION, service="s3")
    resp = httpx.put(url, content=other, headers=headers)
    assert resp.status_code == 400 and "XAmzContentSHA256Mismatch" in resp.text
    assert s3.get_object(Bucket=bucket, Key="w")["Body"].read() == data
    assert set(walrus.blob_files()) == files and walrus.temp_files() == []
    good_md5 = base64.b64encode(hashlib.md5(other).digest()).decode()
    s3.put_object(Bucket=bucket, Key="w", Body=other, ContentMD5=good_md5)
    assert s3.get_object(Bucket=bucket, Key="w")["Body"].read() == other
