"""ListObjects v1 and v2: prefix, delimiter, markers, tokens, max-keys, url encoding, order."""

from __future__ import annotations

from typing import Any

import pytest

from eucalypt.walrus.services.listing import successor
from tests.walrus.conftest import WalrusServer
from tests.walrus.helpers import raw_request, s3_error

KEYS = [
    "a.txt", "dir/a", "dir/b", "dir/sub/c", "dir/sub/d", "dir2/e", "top", "zz/1", "zz/2",
]


@pytest.fixture
def filled(s3: Any, bucket: str) -> str:
    for key in KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


def all_v2(s3: Any, **kw: Any) -> tuple[list[str], list[str], int]:
    keys: list[str] = []
    prefixes: list[str] = []
    pages = 0
    token = None
    while True:
        args = dict(kw)
        if token:
            args["ContinuationToken"] = token
        r = s3.list_objects_v2(**args)
        pages += 1
        keys += [o["Key"] for o in r.get("Contents", [])]
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        assert r["KeyCount"] == len(r.get("Contents", [])) + len(r.get("CommonPrefixes", []))
        if not r["IsTruncated"]:
            return keys, prefixes, pages
        token = r["NextContinuationToken"]


def all_v1(s3: Any, **kw: Any) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    prefixes: list[str] = []
    marker = ""
    while True:
        r = s3.list_objects(Marker=marker, **kw)
        keys += [o["Key"] for o in r.get("Contents", [])]
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r["IsTruncated"]:
            return keys, prefixes
        marker = r.get("NextMarker") or r["Contents"][-1]["Key"]


def test_v2_plain(s3: Any, filled: str) -> None:
    r = s3.list_objects_v2(Bucket=filled)
    assert [o["Key"] for o in r["Contents"]] == KEYS
    assert r["Contents"][0]["Size"] == len(KEYS[0])
    assert r["IsTruncated"] is False and "Owner" not in r["Contents"][0]
    assert "Owner" in s3.list_objects_v2(Bucket=filled, FetchOwner=True)["Contents"][0]


def test_prefix_and_delimiter(s3: Any, filled: str) -> None:
    r = s3.list_objects_v2(Bucket=filled, Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["a.txt", "top"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["dir/", "dir2/", "zz/"]
    r = s3.list_objects_v2(Bucket=filled, Prefix="dir/", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["dir/a", "dir/b"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["dir/sub/"]
    r = s3.list_objects_v2(Bucket=filled, Prefix="dir")
    assert [o["Key"] for o in r["Contents"]] == [k for k in KEYS if k.startswith("dir")]
    assert "Contents" not in s3.list_objects_v2(Bucket=filled, Prefix="nothing")


def test_multi_char_delimiter(s3: Any, bucket: str) -> None:
    for key in ["a--b--c", "a--d", "x"]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="--")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a--"]
    assert [o["Key"] for o in r["Contents"]] == ["x"]


@pytest.mark.parametrize("page", [1, 2, 3, 1000])
def test_pagination_v2(s3: Any, filled: str, page: int) -> None:
    keys, prefixes, _pages = all_v2(s3, Bucket=filled, MaxKeys=page)
    assert keys == KEYS and prefixes == []
    keys, prefixes, _ = all_v2(s3, Bucket=filled, MaxKeys=page, Delimiter="/")
    assert keys == ["a.txt", "top"] and prefixes == ["dir/", "dir2/", "zz/"]


@pytest.mark.parametrize("page", [1, 2, 4])
def test_pagination_v1(s3: Any, filled: str, page: int) -> None:
    assert all_v1(s3, Bucket=filled, MaxKeys=page) == (KEYS, [])
    assert all_v1(s3, Bucket=filled, MaxKeys=page, Delimiter="/") == (
        ["a.txt", "top"], ["dir/", "dir2/", "zz/"])
    assert all_v1(s3, Bucket=filled, MaxKeys=page, Prefix="dir/", Delimiter="/") == (
        ["dir/a", "dir/b"], ["dir/sub/"])


def test_marker_and_start_after(s3: Any, filled: str) -> None:
    r = s3.list_objects(Bucket=filled, Marker="dir/sub/c")
    assert [o["Key"] for o in r["Contents"]] == KEYS[4:]
    r = s3.list_objects_v2(Bucket=filled, StartAfter="dir2/e")
    assert [o["Key"] for o in r["Contents"]] == ["top", "zz/1", "zz/2"]
    assert r["StartAfter"] == "dir2/e"


def test_max_keys_zero_and_truncation_flags(s3: Any, filled: str) -> None:
    r = s3.list_objects_v2(Bucket=filled, MaxKeys=0)
    assert r["KeyCount"] == 0 and "Contents" not in r
    r = s3.list_objects(Bucket=filled, MaxKeys=2, Delimiter="/")
    assert r["IsTruncated"] and r["NextMarker"] == "dir/"


def test_utf8_byte_order(s3: Any, bucket: str) -> None:
    # Code-point (= UTF-8 byte) order, not locale order: 'Z' < 'a' < 'é' < '中' < '😀'.
    keys = ["a", "Z", "é", "中", "😀", "ab", "a b", "\u00ff", "\uffee", "A"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    listed, _, _ = all_v2(s3, Bucket=bucket, MaxKeys=3)
    assert listed == sorted(keys, key=lambda k: k.encode("utf-8"))


def test_encoding_type_url(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    key = "sp ace/ctl\x01char&<>"
    s3.put_object(Bucket=bucket, Key=key, Body=b"")
    # boto3 asks for encoding-type=url by default and decodes it.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == [key]
    from tests.walrus.conftest import ALICE

    resp = raw_request("GET", f"{walrus.url}/{bucket}?list-type=2&encoding-type=url", cred=ALICE)
    assert "<Key>sp%20ace/ctl%01char%26%3C%3E</Key>" in resp.text
    assert "<EncodingType>url</EncodingType>" in resp.text


def test_bad_arguments(s3: Any, filled: str, walrus: WalrusServer) -> None:
    assert s3_error(s3.list_objects_v2, Bucket=filled, ContinuationToken="@@@")[0] == \
        "InvalidArgument"
    from tests.walrus.conftest import ALICE

    resp = raw_request("GET", f"{walrus.url}/{filled}?max-keys=-1", cred=ALICE)
    assert resp.status_code == 400 and "InvalidArgument" in resp.text
    resp = raw_request("GET", f"{walrus.url}/{filled}?encoding-type=base64", cred=ALICE)
    assert resp.status_code == 400 and "InvalidArgument" in resp.text


def test_many_keys_with_delimiter(s3: Any, bucket: str, walrus: WalrusServer) -> None:
    """Hundreds of keys under 3 prefixes: each prefix spans several scan batches, which
    the delimiter listing skips over; plain listing pages through all of them."""
    from concurrent.futures import ThreadPoolExecutor

    keys = [f"p{i % 3}/{i:05d}" for i in range(700)] + ["z-last"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b""), keys))
    keys_listed, prefixes, pages = all_v2(s3, Bucket=bucket, MaxKeys=300)
    assert keys_listed == sorted(keys) and pages == 3
    keys_listed, prefixes, pages = all_v2(s3, Bucket=bucket, Delimiter="/")
    assert prefixes == ["p0/", "p1/", "p2/"] and keys_listed == ["z-last"] and pages == 1
    keys_listed, prefixes, pages = all_v2(s3, Bucket=bucket, Delimiter="/", MaxKeys=1)
    assert prefixes == ["p0/", "p1/", "p2/"] and keys_listed == ["z-last"] and pages == 4
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=1000)
    assert first["KeyCount"] == 701 and not first["IsTruncated"]


def test_successor() -> None:
    assert successor("abc") == "abd"
    assert successor("a/") == "a0"
    assert successor("") is None
    assert successor("a\U0010ffff") == "b"
    assert successor("\ud7ff") == "\ue000"


def test_list_object_versions_lists_each_object_as_its_null_version(s3: Any,
                                                                   bucket: str) -> None:
    for key in ("a", "b/1", "b/2", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in page["Versions"]] == [
        ("a", "null", True), ("b/1", "null", True)]
    assert page["IsTruncated"] and page["NextKeyMarker"] == "b/1"
    rest = s3.list_object_versions(Bucket=bucket, KeyMarker=page["NextKeyMarker"],
                                   VersionIdMarker=page["NextVersionIdMarker"])
    assert [v["Key"] for v in rest["Versions"]] == ["b/2", "c"] and not rest["IsTruncated"]
    assert "DeleteMarkers" not in rest
    grouped = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["b/"]
    # What a versioned-bucket cleanup does with the listing works here too.
    objs = [{"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in s3.list_object_versions(Bucket=bucket)["Versions"]]
    s3.delete_objects(Bucket=bucket, Delete={"Objects": objs, "Quiet": True},
                      BypassGovernanceRetention=True)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_empty_continuation_token_starts_at_the_beginning(s3: Any, bucket: str) -> None:
    for key in ("bar", "baz", "foo"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    page = s3.list_objects_v2(Bucket=bucket, ContinuationToken="")
    assert [o["Key"] for o in page["Contents"]] == ["bar", "baz", "foo"]
    assert page["ContinuationToken"] == ""
