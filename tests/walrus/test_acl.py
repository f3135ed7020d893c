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
