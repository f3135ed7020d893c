"""Small objects kept inline (bytes in the metadata database, ``walrus/inline.py``).

Every test runs on SQLite and PostgreSQL and asserts on the bytes read back
and on the stored state: which objects became files, which inline rows exist.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import sqlalchemy as sa

from eucalypt.walrus.inline import INLINE_MAX
from tests.walrus.conftest import WalrusServer
from tests.walrus.helpers import MiB, md5_hex


def _inline_state(walrus: WalrusServer) -> tuple[set[str], set[str]]:
    """(ids of inline rows, inline ids that object rows name)."""
    engine = sa.create_engine(walrus.database_url)
    try:
        with engine.connect() as conn:
            rows = set(conn.execute(sa.text("SELECT blob_id FROM walrus_inline_blobs"))
                       .scalars())
            named: set[str] = set()
            for segments in conn.execute(sa.text("SELECT segments FROM walrus_objects")).scalars():
                segs = json.loads(segments) if isinstance(segments, str) else segments
                named.update(s[0] for s in segs if s[0].startswith("inline:"))
    finally:
        engine.dispose()
    return rows, named


def _segments(walrus: WalrusServer, bucket: str, key: str) -> list[list[Any]]:
    engine = sa.create_engine(walrus.database_url)
    try:
        with engine.connect() as conn:
            value = conn.execute(sa.text(
                "SELECT o.segments FROM walrus_objects o JOIN walrus_buckets b "
                "ON b.id = o.bucket_id WHERE b.name = :b AND o.key = :k"),
                {"b": bucket, "k": key}).scalar_one()
    finally:
        engine.dispose()
    return json.loads(value) if isinstance(value, str) else list(value)


def assert_inline_consistent(walrus: WalrusServer) -> None:
    rows, named = _inline_state(walrus)
    assert rows == named  # no inline row leaked, none missing


def test_small_is_inline_large_is_a_file(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    small, edge, large = os.urandom(4096), os.urandom(INLINE_MAX), os.urandom(INLINE_MAX + 1)
    files = len(walrus.blob_files())
    for key, body in (("small", small), ("edge", edge)):
        etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
        assert etag == f'"{md5_hex(body)}"'
        assert _segments(walrus, bucket, key)[0][0].startswith("inline:")
    assert len(walrus.blob_files()) == files  # no file for either
    s3.put_object(Bucket=bucket, Key="large", Body=large)
    assert not _segments(walrus, bucket, "large")[0][0].startswith("inline:")
    assert len(walrus.blob_files()) == files + 1
    for key, body in (("small", small), ("edge", edge), ("large", large)):
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body and got["ETag"] == f'"{md5_hex(body)}"'
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == len(body) and head["ETag"] == f'"{md5_hex(body)}"'
    assert_inline_consistent(walrus)


@pytest.mark.parametrize("spec", ["bytes=0-0", "bytes=100-4095", "bytes=-17", "bytes=4000-",
                                  "bytes=1000-999999"])
def test_inline_range_get(s3: Any, bucket: str, spec: str) -> None:
    body = os.urandom(4096)
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    lo, hi = spec[6:].split("-")
    want = body[-int(hi):] if lo == "" else body[int(lo):(int(hi) + 1 if hi else None)]
    got = s3.get_object(Bucket=bucket, Key="r", Range=spec)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == want and got["ContentLength"] == len(want)


def test_inline_copy_outlives_its_source(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    body, other = os.urandom(5000), os.urandom(6000)
    s3.put_object(Bucket=bucket, Key="src", Body=body)
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    src_id = _segments(walrus, bucket, "src")[0][0]
    dst_id = _segments(walrus, bucket, "dst")[0][0]
    assert dst_id.startswith("inline:") and dst_id != src_id  # its own bytes, not shared
    s3.put_object(Bucket=bucket, Key="src", Body=other)  # overwrite the source...
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == body
    s3.delete_object(Bucket=bucket, Key="src")  # ...and delete it
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == body and got["ETag"] == f'"{md5_hex(body)}"'
    assert_inline_consistent(walrus)


def test_copy_of_a_small_file_object_becomes_inline(walrus: WalrusServer, s3: Any,
                                                    bucket: str) -> None:
    # A one-part multipart upload: a small object whose bytes are a file (a part).
    tail = os.urandom(1000)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1,
                          Body=tail)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert not _segments(walrus, bucket, "mp")[0][0].startswith("inline:")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "mp"})
    assert _segments(walrus, bucket, "copy")[0][0].startswith("inline:")
    s3.delete_object(Bucket=bucket, Key="mp")
    got = s3.get_object(Bucket=bucket, Key="copy")
    assert got["Body"].read() == tail and got["ETag"] == f'"{md5_hex(tail)}"'
    assert_inline_consistent(walrus)


def test_upload_part_copy_from_inline_source(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    first = os.urandom(5 * MiB)
    small = os.urandom(3000)
    s3.put_object(Bucket=bucket, Key="small", Body=small)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=first)["ETag"]
    e2 = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "small"},
                             CopySourceRange="bytes=100-2099")["CopyPartResult"]["ETag"]
    assert e2 == f'"{md5_hex(small[100:2100])}"'
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    s3.delete_object(Bucket=bucket, Key="small")  # the part is a file of its own
    want = first + small[100:2100]
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == want
    got = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={5 * MiB - 10}-{5 * MiB + 9}")
    assert got["Body"].read() == want[5 * MiB - 10:5 * MiB + 10]
    assert s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)["Body"].read() == small[100:2100]
    assert all(not s[0].startswith("inline:") for s in _segments(walrus, bucket, "mp"))
    assert_inline_consistent(walrus)


def test_overwrites_between_inline_and_file_leave_nothing_behind(
        walrus: WalrusServer, s3: Any, bucket: str) -> None:
    files = set(walrus.blob_files())
    bodies = [os.urandom(10), os.urandom(MiB), os.urandom(INLINE_MAX), os.urandom(300_000),
              b"", os.urandom(77)]
    for body in bodies:
        s3.put_object(Bucket=bucket, Key="k", Body=body)
        got = s3.get_object(Bucket=bucket, Key="k")
        assert got["Body"].read() == body and got["ETag"] == f'"{md5_hex(body)}"'
        assert_inline_consistent(walrus)
    assert set(walrus.blob_files()) == files  # the file versions were deleted
    s3.delete_object(Bucket=bucket, Key="k")
    assert_inline_consistent(walrus)


def test_content_md5_mismatch_on_a_small_body_stores_nothing(walrus: WalrusServer, s3: Any,
                                                             bucket: str) -> None:
    from botocore.exceptions import ClientError

    s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    rows = _inline_state(walrus)[0]
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k", Body=b"new", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")
    assert err.value.response["Error"]["Code"] == "BadDigest"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"old"
    assert _inline_state(walrus)[0] == rows


def test_small_put_errors_come_in_order(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    """The one-trip path for small bodies reports the bucket's errors before the body's."""
    from botocore.exceptions import ClientError

    from tests.walrus.conftest import BOB

    bob = walrus.client(BOB)
    bad_md5 = "1B2M2Y8AsgTpgAmY7PhCfg=="
    cases = [
        (s3, {"Bucket": "no-such-bucket-" + bucket}, "NoSuchBucket"),
        (s3, {"Bucket": "no-such-bucket-" + bucket, "ContentMD5": bad_md5}, "NoSuchBucket"),
        (bob, {"Bucket": bucket}, "AccessDenied"),
        (bob, {"Bucket": bucket, "ContentMD5": bad_md5}, "AccessDenied"),
        (s3, {"Bucket": bucket, "ContentMD5": bad_md5}, "BadDigest"),
        (s3, {"Bucket": bucket, "StorageClass": "NOPE"}, "InvalidStorageClass"),
    ]
    rows = _inline_state(walrus)[0]
    for client, args, code in cases:
        with pytest.raises(ClientError) as err:
            client.put_object(Key="k", Body=b"small body", **args)
        assert err.value.response["Error"]["Code"] == code, args
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert _inline_state(walrus)[0] == rows
