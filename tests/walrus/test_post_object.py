"""POST Object: HTML-form uploads, anonymous or signed with a policy (SigV2 and SigV4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree

import httpx

from tests.walrus.conftest import ALICE, BOB, REGION, WalrusServer
from tests.walrus.helpers import md5_hex


def _policy(bucket: str, *extra: Any, minutes: int = 10) -> str:
    expiration = (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {"expiration": expiration, "conditions": [
        {"bucket": bucket}, ["starts-with", "$key", "up/"], {"acl": "private"},
        ["starts-with", "$Content-Type", "text/"], ["content-length-range", 1, 1024], *extra]}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def _v2_fields(policy: str, secret: str = ALICE.secret_key,
               access_key: str = ALICE.access_key) -> dict[str, str]:
    sig = base64.b64encode(hmac.new(secret.encode(), policy.encode(), hashlib.sha1).digest())
    return {"AWSAccessKeyId": access_key, "policy": policy, "signature": sig.decode()}


def _post(walrus: WalrusServer, bucket: str, fields: dict[str, str],
          file: tuple[str, bytes] = ("f.txt", b"hello")) -> httpx.Response:
    files: list[tuple[str, Any]] = [(k, (None, v)) for k, v in fields.items()]
    files.append(("file", (file[0], file[1], "application/octet-stream")))
    return httpx.post(f"{walrus.url}/{bucket}", files=files, timeout=30)


def _code(resp: httpx.Response) -> tuple[int, str | None]:
    if not resp.content:
        return resp.status_code, None
    return resp.status_code, ElementTree.fromstring(resp.content).findtext("Code")


def test_signed_v2_post_stores_the_file(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    policy = _policy(bucket, ["starts-with", "$x-amz-meta-tag", ""])
    fields = {"key": "up/${filename}", "acl": "private", "Content-Type": "text/plain",
              "x-amz-meta-tag": "blue", **_v2_fields(policy)}
    resp = _post(walrus, bucket, fields)
    assert resp.status_code == 204 and resp.headers["etag"] == f'"{md5_hex(b"hello")}"'
    got = s3.get_object(Bucket=bucket, Key="up/f.txt")
    assert got["Body"].read() == b"hello" and got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"tag": "blue"}
    # success_action_status 201: a PostResponse document.
    policy = _policy(bucket, {"success_action_status": "201"})
    fields = {"key": "up/two", "acl": "private", "Content-Type": "text/plain",
              "success_action_status": "201", **_v2_fields(policy)}
    resp = _post(walrus, bucket, fields)
    assert resp.status_code == 201
    doc = ElementTree.fromstring(resp.content)
    assert doc.findtext("Key") == "up/two" and doc.findtext("Bucket") == bucket


def test_signed_v4_post(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    day = datetime.now(UTC).strftime("%Y%m%d")
    credential = f"{ALICE.access_key}/{day}/{REGION}/s3/aws4_request"
    amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    policy = _policy(bucket, {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                     {"x-amz-credential": credential}, {"x-amz-date": amz_date})
    key = ("AWS4" + ALICE.secret_key).encode()
    for part in (day, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()
    fields = {"key": "up/v4", "acl": "private", "Content-Type": "text/plain",
              "x-amz-algorithm": "AWS4-HMAC-SHA256", "x-amz-credential": credential,
              "x-amz-date": amz_date, "policy": policy, "x-amz-signature": signature}
    assert _post(walrus, bucket, fields).status_code == 204
    assert s3.get_object(Bucket=bucket, Key="up/v4")["Body"].read() == b"hello"
    fields["x-amz-signature"] = "0" * 64
    assert _code(_post(walrus, bucket, fields)) == (403, "SignatureDoesNotMatch")


def test_policy_is_enforced(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    base = {"key": "up/x", "acl": "private", "Content-Type": "text/plain"}
    policy = _policy(bucket)
    assert _code(_post(walrus, bucket, {**base, **_v2_fields(policy, secret="wrong")})) == (
        403, "SignatureDoesNotMatch")
    assert _code(_post(walrus, bucket, {**base, **_v2_fields(policy, access_key="AKIANOPE")})) \
        == (403, "InvalidAccessKeyId")
    # A condition that fails, a field the policy does not mention, an expired policy.
    assert _post(walrus, bucket, {**base, "key": "elsewhere",
                                  **_v2_fields(policy)}).status_code == 403
    assert _post(walrus, bucket, {**base, "x-amz-meta-extra": "1",
                                  **_v2_fields(policy)}).status_code == 403
    assert _post(walrus, bucket, {**base, **_v2_fields(_policy(bucket, minutes=-1))}
                 ).status_code == 403
    # content-length-range: too big, too small (nothing is stored).
    assert _code(_post(walrus, bucket, {**base, **_v2_fields(policy)},
                       file=("f", b"x" * 2000))) == (400, "EntityTooLarge")
    assert _code(_post(walrus, bucket, {**base, **_v2_fields(policy)}, file=("f", b""))) == (
        400, "EntityTooSmall")
    # A malformed policy document is a 400.
    bad = base64.b64encode(json.dumps({"conditions": []}).encode()).decode()
    assert _post(walrus, bucket, {**base, **_v2_fields(bad)}).status_code == 400
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_anonymous_post_needs_a_public_write_bucket(walrus: WalrusServer, s3: Any,
                                                    bucket: str) -> None:
    fields = {"key": "anon.txt", "acl": "public-read", "Content-Type": "text/plain"}
    assert _code(_post(walrus, bucket, fields)) == (403, "AccessDenied")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    assert _post(walrus, bucket, fields).status_code == 204
    assert walrus.anonymous().get_object(Bucket=bucket, Key="anon.txt")["Body"].read() == b"hello"
    # Bob's signed form writes as Bob, into a bucket where Bob may write.
    policy = base64.b64encode(json.dumps({
        "expiration": "2099-01-01T00:00:00Z",
        "conditions": [{"bucket": bucket}, {"key": "bob"}]}).encode()).decode()
    resp = _post(walrus, bucket, {"key": "bob", **_v2_fields(policy, BOB.secret_key,
                                                              BOB.access_key)})
    assert resp.status_code == 204
    assert walrus.client(BOB).get_object_acl(Bucket=bucket, Key="bob")["Owner"]["DisplayName"] \
        == "bob"
