"""Multipart uploads: create, upload (and copy) parts, complete, abort, list; the size rules."""

from __future__ import annotations

import io
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from tests.walrus.conftest import WalrusServer
from tests.walrus.helpers import MiB, md5_hex, multipart_etag, random_bytes, s3_error

PART = 5 * MiB


def upload(s3: Any, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[dict]]:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/x-test",
                                    Metadata={"kind": "multi"})["UploadId"]
    done = []
    for i, body in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=i, Body=body)
        assert r["ETag"] == f'"{md5_hex(body)}"'
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return up, done


def test_complete(s3: Any, bucket: str) -> None:
    parts = [random_bytes(PART), random_bytes(PART), random_bytes(1234)]
    up, done = upload(s3, bucket, "mp", parts)
    r = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                     MultipartUpload={"Parts": done})
    assert r["ETag"] == multipart_etag(parts)
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["Body"].read() == b"".join(parts)
    assert got["ETag"] == multipart_etag(parts)
    assert got["ContentType"] == "application/x-test" and got["Metadata"] == {"kind": "multi"}
    # Ranges across part boundaries.
    whole = b"".join(parts)
    rng = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={PART - 10}-{PART + 10}")
    assert rng["Body"].read() == whole[PART - 10:PART + 11]
    # GET ?partNumber= returns one part.
    p2 = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert p2["PartsCount"] == 3 and p2["Body"].read() == parts[1]
    assert s3_error(s3.get_object, Bucket=bucket, Key="mp", PartNumber=4) == (
        "InvalidPartNumber", 416)
    assert s3_error(s3.list_parts, Bucket=bucket, Key="mp", UploadId=up) == ("NoSuchUpload", 404)


def test_subset_and_replaced_parts(s3: Any, bucket: str, walrus: WalrusServer) -> None:
    parts = [random_bytes(PART), random_bytes(PART), random_bytes(100)]
    up, done = upload(s3, bucket, "subset", parts)
    new2 = random_bytes(PART)
    r = s3.upload_part(Bucket=bucket, Key="subset", UploadId=up, PartNumber=2, Body=new2)
    before = len(walrus.blob_files())
    s3.complete_multipart_upload(Bucket=bucket, Key="subset", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 2, "ETag": r["ETag"]}, done[2]]})
    assert s3.get_object(Bucket=bucket, Key="subset")["Body"].read() == new2 + parts[2]
    # Part 1 was left out: its blob is gone.
    assert len(walrus.blob_files()) == before - 1


def test_invalid_part(s3: Any, bucket: str) -> None:
    up, done = upload(s3, bucket, "ip", [random_bytes(PART), random_bytes(10)])
    bad = [done[0], {"PartNumber": 2, "ETag": '"00000000000000000000000000000000"'}]
    assert s3_error(s3.complete_multipart_upload, Bucket=bucket, Key="ip", UploadId=up,
                    MultipartUpload={"Parts": bad}) == ("InvalidPart", 400)
    missing = [done[0], {"PartNumber": 7, "ETag": done[1]["ETag"]}]
    assert s3_error(s3.complete_multipart_upload, Bucket=bucket, Key="ip", UploadId=up,
                    MultipartUpload={"Parts": missing}) == ("InvalidPart", 400)
    assert s3_error(s3.complete_multipart_upload, Bucket=bucket, Key="ip", UploadId=up,
                    MultipartUpload={"Parts": [done[1], done[0]]}) == ("InvalidPartOrder", 400)
    # The upload survives failed completions.
    s3.complete_multipart_upload(Bucket=bucket, Key="ip", UploadId=up,
                                 MultipartUpload={"Parts": done})


def test_entity_too_small(s3: Any, bucket: str) -> None:
    up, done = upload(s3, bucket, "small", [b"a" * 100, b"b" * 100])
    assert s3_error(s3.complete_multipart_upload, Bucket=bucket, Key="small", UploadId=up,
                    MultipartUpload={"Parts": done}) == ("EntityTooSmall", 400)
    # A single small part is fine (it is also the last).
    s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=up,
                                 MultipartUpload={"Parts": done[:1]})
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"a" * 100


def test_abort(s3: Any, bucket: str, walrus: WalrusServer) -> None:
    before = len(walrus.blob_files())
    up, _ = upload(s3, bucket, "ab", [random_bytes(1000), random_bytes(1000)])
    assert len(walrus.blob_files()) == before + 2
    s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=up)
    assert len(walrus.blob_files()) == before
    assert s3_error(s3.upload_part, Bucket=bucket, Key="ab", UploadId=up, PartNumber=1,
                    Body=b"x") == ("NoSuchUpload", 404)
    assert s3_error(s3.abort_multipart_upload, Bucket=bucket, Key="ab", UploadId=up) == \
        ("NoSuchUpload", 404)
    assert s3_error(s3.get_object, Bucket=bucket, Key="ab")[0] == "NoSuchKey"


def test_list_parts(s3: Any, bucket: str) -> None:
    parts = [random_bytes(100) for _ in range(5)]
    up, _ = upload(s3, bucket, "lp", parts)
    r = s3.list_parts(Bucket=bucket, Key="lp", UploadId=up, MaxParts=2)
    assert [p["PartNumber"] for p in r["Parts"]] == [1, 2] and r["IsTruncated"]
    r = s3.list_parts(Bucket=bucket, Key="lp", UploadId=up,
                      PartNumberMarker=r["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in r["Parts"]] == [3, 4, 5] and not r["IsTruncated"]
    assert r["Parts"][0]["Size"] == 100 and r["Parts"][0]["ETag"] == f'"{md5_hex(parts[2])}"'


def test_list_uploads(s3: Any, bucket: str) -> None:
    ids = {}
    for key in ["a/1", "a/2", "b", "c/x/y"]:
        ids[key] = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    r = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in r["Uploads"]] == sorted(ids.items())
    r = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in r["Uploads"]] == ["b"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "c/"]
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/", MaxUploads=1)
    assert [u["Key"] for u in r["Uploads"]] == ["a/1"] and r["IsTruncated"]
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/", KeyMarker=r["NextKeyMarker"],
                                  UploadIdMarker=r["NextUploadIdMarker"])
    assert [u["Key"] for u in r["Uploads"]] == ["a/2"] and not r["IsTruncated"]


def test_upload_part_copy(s3: Any, bucket: str) -> None:
    src = random_bytes(PART + 1000)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    up = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    p1 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=up, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"})
    p2 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=up, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange="bytes=10-109")
    assert p1["CopyPartResult"]["ETag"] == f'"{md5_hex(src)}"'
    assert p2["CopyPartResult"]["ETag"] == f'"{md5_hex(src[10:110])}"'
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                  {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == src + src[10:110]
    assert s3_error(s3.upload_part_copy, Bucket=bucket, Key="dst2",
                    UploadId=s3.create_multipart_upload(Bucket=bucket, Key="dst2")["UploadId"],
                    PartNumber=1, CopySource={"Bucket": bucket, "Key": "src"},
                    CopySourceRange=f"bytes=0-{len(src)}") == ("InvalidRange", 416)


def test_bad_part_numbers(s3: Any, bucket: str) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="pn")["UploadId"]
    for n in (0, 10001):
        assert s3_error(s3.upload_part, Bucket=bucket, Key="pn", UploadId=up, PartNumber=n,
                        Body=b"x") == ("InvalidArgument", 400)


def test_copy_of_multipart_object(s3: Any, bucket: str) -> None:
    parts = [random_bytes(PART), random_bytes(10)]
    up, done = upload(s3, bucket, "mpsrc", parts)
    s3.complete_multipart_upload(Bucket=bucket, Key="mpsrc", UploadId=up,
                                 MultipartUpload={"Parts": done})
    r = s3.copy_object(Bucket=bucket, Key="mpcopy", CopySource=f"{bucket}/mpsrc")
    assert r["CopyObjectResult"]["ETag"] == f'"{md5_hex(b"".join(parts))}"'
    assert s3.get_object(Bucket=bucket, Key="mpcopy")["Body"].read() == b"".join(parts)


@pytest.mark.parametrize("size_mib", [64])
def test_transfer_manager_64mib(s3: Any, bucket: str, size_mib: int) -> None:
    """boto3's managed transfer: a 64 MiB upload in 8 MiB parts, 4 threads, and back."""
    data = random_bytes(size_mib * MiB)
    cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                         max_concurrency=4)
    s3.upload_fileobj(io.BytesIO(data), bucket, "big.bin", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-8"')
    out = io.BytesIO()
    s3.download_fileobj(bucket, "big.bin", out, Config=cfg)
    assert out.getvalue() == data


def test_get_object_attributes(s3: Any, bucket: str) -> None:
    parts = [random_bytes(PART), random_bytes(PART), random_bytes(10)]
    up, done = upload(s3, bucket, "attrs", parts)
    s3.complete_multipart_upload(Bucket=bucket, Key="attrs", UploadId=up,
                                 MultipartUpload={"Parts": done})
    every = ["ETag", "ObjectParts", "StorageClass", "ObjectSize"]
    got = s3.get_object_attributes(Bucket=bucket, Key="attrs", ObjectAttributes=every)
    assert got["ETag"] == multipart_etag(parts).strip('"')
    assert got["ObjectSize"] == 2 * PART + 10 and got["StorageClass"] == "STANDARD"
    op = got["ObjectParts"]
    assert op["TotalPartsCount"] == 3 and not op["IsTruncated"]
    assert [(p["PartNumber"], p["Size"]) for p in op["Parts"]] == [(1, PART), (2, PART), (3, 10)]
    paged = s3.get_object_attributes(Bucket=bucket, Key="attrs", ObjectAttributes=["ObjectParts"],
                                     MaxParts=1, PartNumberMarker=1)["ObjectParts"]
    assert [p["PartNumber"] for p in paged["Parts"]] == [2] and paged["IsTruncated"]
    assert paged["NextPartNumberMarker"] == 2
    s3.put_object(Bucket=bucket, Key="plain", Body=b"abc")
    plain = s3.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=every)
    assert plain["ObjectSize"] == 3 and "ObjectParts" not in plain
    assert s3_error(s3.get_object_attributes, Bucket=bucket, Key="nope",
                    ObjectAttributes=["ETag"]) == ("NoSuchKey", 404)
