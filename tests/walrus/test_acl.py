"""Access control: canned ACLs and grants on buckets and objects, enforced across accounts."""

from __future__ import annotations

from typing import Any

import httpx

from eucalypt.walrus.security import ALL_USERS, AUTHENTICATED_USERS, canonical_id
from tests.walrus.conftest import ALICE, BOB, CAROL, WalrusServer
from tests.walrus.helpers import s3_error

DENIED = ("AccessDenied", 403)


def test_private_by_default(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="secret", Body=b"s")
    bob, anon = walrus.client(BOB), walrus.anonymous()
    assert s3_error(bob.get_object, Bucket=bucket, Key="secret") == DENIED
    assert s3_error(bob.put_object, Bucket=bucket, Key="x", Body=b"x") == DENIED
    assert s3_error(bob.list_objects_v2, Bucket=bucket) == DENIED
    assert s3_error(bob.delete_object, Bucket=bucket, Key="secret") == DENIED
    assert s3_error(bob.get_object_acl, Bucket=bucket, Key="secret") == DENIED
    assert s3_error(bob.get_bucket_acl, Bucket=bucket) == DENIED
    assert s3_error(bob.put_bucket_acl, Bucket=bucket, ACL="public-read") == DENIED
    assert s3_error(anon.get_object, Bucket=bucket, Key="secret") == DENIED
    assert s3_error(anon.list_objects_v2, Bucket=bucket) == DENIED
    # Without list rights, a missing key is AccessDenied, not NoSuchKey.
    assert s3_error(bob.get_object, Bucket=bucket, Key="missing") == DENIED
    assert s3_error(anon.list_buckets) == DENIED


def test_default_acl_document(s3: Any, bucket: str) -> None:
    acl = s3.get_bucket_acl(Bucket=bucket)
    owner = canonical_id(ALICE.account_id)
    assert acl["Owner"] == {"ID": owner, "DisplayName": "alice"}
    assert acl["Grants"] == [{"Grantee": {"ID": owner, "DisplayName": "alice",
                                          "Type": "CanonicalUser"},
                              "Permission": "FULL_CONTROL"}]


def test_public_read_object(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="pub", Body=b"public", ACL="public-read")
    anon = walrus.anonymous()
    assert anon.get_object(Bucket=bucket, Key="pub")["Body"].read() == b"public"
    assert httpx.get(f"{walrus.url}/{bucket}/pub").content == b"public"
    assert walrus.client(BOB).get_object(Bucket=bucket, Key="pub")["Body"].read() == b"public"
    grants = s3.get_object_acl(Bucket=bucket, Key="pub")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in grants
    # Reading the object does not allow listing the bucket or overwriting the object.
    assert s3_error(anon.list_objects_v2, Bucket=bucket) == DENIED
    assert s3_error(anon.put_object, Bucket=bucket, Key="pub", Body=b"x") == DENIED


def test_public_read_bucket(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    anon = walrus.anonymous()
    assert [o["Key"] for o in anon.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    # The object itself is still private.
    assert s3_error(anon.get_object, Bucket=bucket, Key="k") == DENIED
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert s3_error(anon.list_objects_v2, Bucket=bucket) == DENIED


def test_public_read_write_bucket(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    anon = walrus.anonymous()
    anon.put_object(Bucket=bucket, Key="dropbox", Body=b"anon data")
    bob = walrus.client(BOB)
    bob.put_object(Bucket=bucket, Key="bobs", Body=b"bob data")
    # Objects belong to their writers: Alice (bucket owner) cannot read Bob's private object.
    assert s3_error(s3.get_object, Bucket=bucket, Key="bobs") == DENIED
    assert bob.get_object(Bucket=bucket, Key="bobs")["Body"].read() == b"bob data"
    # ... unless Bob grants it with bucket-owner-full-control.
    bob.put_object(Bucket=bucket, Key="shared", Body=b"for alice",
                   ACL="bucket-owner-full-control")
    assert s3.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"for alice"
    owner = s3.get_object_acl(Bucket=bucket, Key="shared")["Owner"]
    assert owner["ID"] == canonical_id(BOB.account_id)


def test_authenticated_read(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="auth", Body=b"members", ACL="authenticated-read")
    assert walrus.client(BOB).get_object(Bucket=bucket, Key="auth")["Body"].read() == b"members"
    assert s3_error(walrus.anonymous().get_object, Bucket=bucket, Key="auth") == DENIED


def test_explicit_grants_by_header(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    bob_id = canonical_id(BOB.account_id)
    s3.put_object(Bucket=bucket, Key="g", Body=b"granted", GrantRead=f'id="{bob_id}"')
    assert walrus.client(BOB).get_object(Bucket=bucket, Key="g")["Body"].read() == b"granted"
    assert s3_error(walrus.client(CAROL).get_object, Bucket=bucket, Key="g") == DENIED
    s3.put_bucket_acl(Bucket=bucket, GrantWrite=f'id="{bob_id}"',
                      GrantFullControl=f'id="{canonical_id(ALICE.account_id)}"')
    walrus.client(BOB).put_object(Bucket=bucket, Key="from-bob", Body=b"b")
    assert s3_error(walrus.client(CAROL).put_object, Bucket=bucket, Key="c", Body=b"c") == DENIED
    # An overwrite without grant headers resets the object's ACL to private.
    s3.put_object(Bucket=bucket, Key="g", Body=b"v2")
    assert s3_error(walrus.client(BOB).get_object, Bucket=bucket, Key="g") == DENIED


def test_put_acl_policy_document(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="doc", Body=b"x")
    alice_id, bob_id = canonical_id(ALICE.account_id), canonical_id(BOB.account_id)
    s3.put_object_acl(Bucket=bucket, Key="doc", AccessControlPolicy={
        "Owner": {"ID": alice_id},
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": alice_id}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "CanonicalUser", "ID": bob_id}, "Permission": "READ_ACP"},
            {"Grantee": {"Type": "Group", "URI": AUTHENTICATED_USERS}, "Permission": "READ"},
        ]})
    bob = walrus.client(BOB)
    grants = bob.get_object_acl(Bucket=bucket, Key="doc")["Grants"]
    assert len(grants) == 3
    assert bob.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"x"
    assert s3_error(bob.put_object_acl, Bucket=bucket, Key="doc", ACL="public-read") == DENIED
    assert s3_error(walrus.anonymous().get_object, Bucket=bucket, Key="doc") == DENIED


def test_malformed_acl(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    from tests.walrus.helpers import raw_request

    resp = raw_request("PUT", f"{walrus.url}/{bucket}?acl", b"<AccessControlPolicy><oops",
                       cred=ALICE)
    assert resp.status_code == 400 and "<Code>MalformedACLError</Code>" in resp.text
    resp = raw_request("PUT", f"{walrus.url}/{bucket}?acl", b"", cred=ALICE,
                       headers={"x-amz-acl": "not-a-canned-acl"})
    assert resp.status_code == 400 and "<Code>InvalidArgument</Code>" in resp.text


def test_anonymous_cannot_create_buckets(walrus: WalrusServer) -> None:
    assert s3_error(walrus.anonymous().create_bucket, Bucket="anon-bucket-x") == DENIED


def test_internal_components_bypass_acls(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    """The CLC (component credential) reads users' private image objects."""
    from tests.walrus.conftest import CLC

    s3.put_object(Bucket=bucket, Key="image.manifest.xml", Body=b"<manifest/>")
    clc = walrus.client(CLC)
    got = clc.get_object(Bucket=bucket, Key="image.manifest.xml")
    assert got["Body"].read() == b"<manifest/>"
    assert s3_error(walrus.client(BOB).get_object, Bucket=bucket,
                    Key="image.manifest.xml") == DENIED


def _grants(acl: dict[str, Any]) -> list[tuple[str, str]]:
    return [(g["Grantee"].get("URI") or g["Grantee"]["ID"], g["Permission"])
            for g in acl["Grants"]]


def test_grant_order_groups_then_others_then_bucket_owner(walrus: WalrusServer, s3: Any,
                                                          bucket: str) -> None:
    alice, bob = canonical_id(ALICE.account_id), canonical_id(BOB.account_id)
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    assert _grants(s3.get_bucket_acl(Bucket=bucket)) == [
        (ALL_USERS, "READ"), (ALL_USERS, "WRITE"), (alice, "FULL_CONTROL")]
    # Sent owner-first, shown with the other account first.
    policy = s3.get_bucket_acl(Bucket=bucket)
    policy["Grants"] = [g for g in policy["Grants"] if "ID" in g["Grantee"]]
    policy["Grants"].append({"Grantee": {"ID": bob, "Type": "CanonicalUser"},
                             "Permission": "WRITE"})
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={
        "Owner": policy["Owner"], "Grants": policy["Grants"]})
    assert _grants(s3.get_bucket_acl(Bucket=bucket)) == [(bob, "WRITE"), (alice, "FULL_CONTROL")]
    # Bob's object with bucket-owner-read: Bob (object owner), then Alice (bucket owner).
    walrus.client(BOB).put_object(Bucket=bucket, Key="b", Body=b"b", ACL="bucket-owner-read")
    got = walrus.client(BOB).get_object_acl(Bucket=bucket, Key="b")
    assert _grants(got) == [(bob, "FULL_CONTROL"), (alice, "READ")]


def test_header_grants_are_listed_in_permission_order_with_names(walrus: WalrusServer, s3: Any,
                                                                 bucket: str) -> None:
    walrus.client(BOB).list_buckets()  # Walrus has seen Bob sign a request: it knows his name
    bob = canonical_id(BOB.account_id)
    s3.put_object(Bucket=bucket, Key="k", Body=b"k",
                  **{name: f'id="{bob}"' for name in (
                      "GrantFullControl", "GrantRead", "GrantReadACP", "GrantWriteACP")})
    acl = s3.get_object_acl(Bucket=bucket, Key="k")
    assert _grants(acl) == [(bob, p) for p in ("READ", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")]
    assert {g["Grantee"]["DisplayName"] for g in acl["Grants"]} == {"bob"}


def test_grant_to_malformed_canonical_id_is_invalid_argument(s3: Any, bucket: str) -> None:
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]
    bad = {"Owner": owner, "Grants": [
        {"Grantee": {"ID": "_foo", "Type": "CanonicalUser"}, "Permission": "READ"}]}
    assert s3_error(s3.put_bucket_acl, Bucket=bucket, AccessControlPolicy=bad) == (
        "InvalidArgument", 400)
    assert s3_error(s3.put_bucket_acl, Bucket=bucket, GrantRead='id="nobody"') == (
        "InvalidArgument", 400)


def test_owner_keeps_acp_rights_only(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    """An owner that granted itself nothing may still read and rewrite the ACL, and its
    objects (their own ACLs are unchanged), but not write into the bucket."""
    s3.put_object(Bucket=bucket, Key="foo", Body=b"bar")
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": owner, "Grants": []})
    assert s3.get_object(Bucket=bucket, Key="foo")["Body"].read() == b"bar"
    assert s3_error(s3.put_object, Bucket=bucket, Key="baz", Body=b"a") == DENIED
    assert s3.get_bucket_acl(Bucket=bucket)["Grants"] == []
    s3.head_bucket(Bucket=bucket)
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_object(Bucket=bucket, Key="baz", Body=b"a")


def test_bucket_changes_apply_at_once_to_file_uploads(walrus: WalrusServer, s3: Any,
                                                      bucket: str) -> None:
    """Uploads over 128 KiB are admitted against a cached copy of their bucket (no thread
    trip): a change to the bucket's ACL, or the bucket deleted and made again by another
    account, applies to the very next upload."""
    body = b"b" * (200 << 10)
    bob = walrus.client(BOB)
    assert s3_error(bob.put_object, Bucket=bucket, Key="k", Body=body) == DENIED
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    bob.put_object(Bucket=bucket, Key="k", Body=body)
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert s3_error(bob.put_object, Bucket=bucket, Key="k2", Body=body) == DENIED
    s3.delete_object(Bucket=bucket, Key="k")  # the bucket owner may delete Bob's object
    s3.put_object(Bucket=bucket, Key="mine", Body=body)
    s3.delete_object(Bucket=bucket, Key="mine")
    s3.delete_bucket(Bucket=bucket)
    carol = walrus.client(CAROL)
    carol.create_bucket(Bucket=bucket)
    try:
        assert s3_error(s3.put_object, Bucket=bucket, Key="stray", Body=body) == DENIED
        assert "Contents" not in carol.list_objects_v2(Bucket=bucket)
    finally:
        carol.delete_bucket(Bucket=bucket)


def _put_expecting_continue(walrus: WalrusServer, bucket: str, length: int) -> bytes:
    """An anonymous PUT that waits for 100 Continue: what the server answers first."""
    import socket

    with socket.create_connection(("127.0.0.1", walrus.port), timeout=10) as sock:
        sock.sendall(f"PUT /{bucket}/obj HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                     f"{length}\r\nExpect: 100-continue\r\n\r\n".encode())
        first = sock.recv(65536)
        while not first.startswith(b"HTTP/1.1 100"):  # a final answer: read it to its end
            more = sock.recv(65536)  # the connection closes after it (the body is unsent)
            if not more:
                break
            first += more
        return first


def test_a_refused_upload_is_refused_before_100_continue(walrus: WalrusServer, s3: Any,
                                                         bucket: str) -> None:
    """As S3: a client that waits for 100 Continue gets the 403 instead, and never sends
    its body (small bodies, kept inline, and larger ones alike)."""
    for length in (123, 300 << 10):
        first = _put_expecting_continue(walrus, bucket, length)
        assert first.startswith(b"HTTP/1.1 403") and b"AccessDenied" in first
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    for length in (123, 300 << 10):
        assert _put_expecting_continue(walrus, bucket, length) == b"HTTP/1.1 100 Continue\r\n\r\n"
