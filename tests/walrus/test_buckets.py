"""Buckets: create, head, list, location, naming rules, ownership conflicts, delete."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.walrus.conftest import ALICE, BOB, CAROL, REGION, WalrusServer
from tests.walrus.helpers import raw_request, s3_error


def name() -> str:
    return "bk-" + uuid.uuid4().hex[:12]


def test_create_head_list_delete(s3: Any) -> None:
    b = name()
    s3.create_bucket(Bucket=b)
    assert s3.head_bucket(Bucket=b)["ResponseMetadata"]["HTTPStatusCode"] == 200
    names = [x["Name"] for x in s3.list_buckets()["Buckets"]]
    assert b in names
    assert names == sorted(names)
    s3.delete_bucket(Bucket=b)
    assert s3_error(s3.head_bucket, Bucket=b) == ("404", 404)
    assert s3_error(s3.delete_bucket, Bucket=b) == ("NoSuchBucket", 404)


def test_location_constraint(s3: Any) -> None:
    b = name()
    s3.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": REGION})
    assert s3.get_bucket_location(Bucket=b)["LocationConstraint"] == REGION
    plain = name()
    s3.create_bucket(Bucket=plain)
    assert s3.get_bucket_location(Bucket=plain)["LocationConstraint"] == REGION
    code, status = s3_error(s3.create_bucket, Bucket=name(),
                            CreateBucketConfiguration={"LocationConstraint": "mars-north-7"})
    assert (code, status) == ("InvalidLocationConstraint", 400)


@pytest.mark.parametrize("bad", [
    "ab", "a" * 64, "UpperCase", "under_score", "-leading", "trailing-", "two..dots",
    "192.168.1.1", "xn--punycode", "dot.-dash", "bucket-s3alias",
])
def test_invalid_bucket_names(s3: Any, walrus: WalrusServer, bad: str) -> None:
    # botocore validates some names itself, so these go through a raw signed request.
    resp = raw_request("PUT", f"{walrus.url}/{bad}", cred=ALICE)
    assert resp.status_code == 400, resp.text
    assert "<Code>InvalidBucketName</Code>" in resp.text


def test_already_exists_vs_owned_by_you(walrus: WalrusServer, s3: Any) -> None:
    b = name()
    s3.create_bucket(Bucket=b)
    assert s3_error(s3.create_bucket, Bucket=b) == ("BucketAlreadyOwnedByYou", 409)
    bob = walrus.client(BOB)
    assert s3_error(bob.create_bucket, Bucket=b) == ("BucketAlreadyExists", 409)
    assert b not in [x["Name"] for x in bob.list_buckets()["Buckets"]]


def test_delete_non_empty(s3: Any) -> None:
    b = name()
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    assert s3_error(s3.delete_bucket, Bucket=b) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket=b, Key="k")
    s3.delete_bucket(Bucket=b)


def test_delete_with_pending_upload(s3: Any, walrus: WalrusServer) -> None:
    b = name()
    s3.create_bucket(Bucket=b)
    up = s3.create_multipart_upload(Bucket=b, Key="big")["UploadId"]
    s3.upload_part(Bucket=b, Key="big", UploadId=up, PartNumber=1, Body=b"part")
    s3.delete_bucket(Bucket=b)
    assert s3_error(s3.head_bucket, Bucket=b) == ("404", 404)


def test_only_owner_deletes(walrus: WalrusServer, s3: Any) -> None:
    b = name()
    s3.create_bucket(Bucket=b, ACL="public-read-write")
    assert s3_error(walrus.client(BOB).delete_bucket, Bucket=b) == ("AccessDenied", 403)


def test_unconfigured_bucket_settings(s3: Any, bucket: str) -> None:
    assert s3_error(s3.get_bucket_policy, Bucket=bucket) == ("NoSuchBucketPolicy", 404)
    assert s3_error(s3.get_bucket_cors, Bucket=bucket) == ("NoSuchCORSConfiguration", 404)
    assert s3_error(s3.get_bucket_tagging, Bucket=bucket) == ("NoSuchTagSet", 404)
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)


def test_list_buckets_paginated_with_prefix(walrus: WalrusServer) -> None:
    carol = walrus.client(CAROL)
    tag = uuid.uuid4().hex[:8]
    names = [f"pg-{tag}-{i}" for i in range(3)]
    for name in names:
        carol.create_bucket(Bucket=name)
    prefix = f"pg-{tag}-"
    first = carol.list_buckets(MaxBuckets=2, Prefix=prefix)
    assert [b["Name"] for b in first["Buckets"]] == names[:2] and first["Prefix"] == prefix
    rest = carol.list_buckets(MaxBuckets=2, Prefix=prefix,
                              ContinuationToken=first["ContinuationToken"])
    assert [b["Name"] for b in rest["Buckets"]] == names[2:] and "ContinuationToken" not in rest
    assert s3_error(carol.list_buckets, MaxBuckets=10001) == ("InvalidArgument", 400)
    for name in names:
        carol.delete_bucket(Bucket=name)
