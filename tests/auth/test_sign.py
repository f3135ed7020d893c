"""Our signers: round trips through authenticate, and agreement with botocore."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlencode, urlsplit

import botocore.auth
import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

from eucalypt.auth import (
    AuthFailure,
    AwsChunkedDecoder,
    HttpRequest,
    HttpxSigV4Auth,
    authenticate,
    presign_v4,
    sign_s3_v2,
    sign_v2_query,
    sign_v4,
    sign_v4_streaming,
)
from eucalypt.auth import canonical as c

from .helpers import BOTO_CREDENTIALS, CREDENTIAL, ENDPOINT, STORE, fails, from_url, run

NOW = datetime(2024, 1, 31, 12, 0, 0, tzinfo=UTC)


def _signed_request(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    service: str,
    *,
    unsigned_payload: bool = False,
) -> HttpRequest:
    added = sign_v4(
        method,
        url,
        headers,
        body,
        CREDENTIAL,
        region="eu-1",
        service=service,
        now=NOW,
        unsigned_payload=unsigned_payload,
    )
    parts = urlsplit(url)
    return HttpRequest.create(
        method, c.wire_path(parts.path), parts.query, {**headers, **added}, body
    )


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("eucalypt", "/rpc/v1/RunInstances"),
        ("eucalypt", "/rpc/a b/./c/../d%2Fe"),
        ("ec2", "/"),
        ("s3", "/bucket/a%20b/c%2Bd~e.txt"),
        ("s3", "/bucket//double//slash/./dot"),
    ],
)
def test_sign_v4_round_trip(service: str, path: str) -> None:
    url = f"{ENDPOINT}{path}?b=2&a=1&a=0&empty=&sp=x%20y&uni=%E2%82%AC"
    body = b'{"hello": "world"}'
    headers = {"Content-Type": "application/json", "X-Amz-Meta-Note": "  two   spaces "}
    req = _signed_request("POST", url, headers, body, service)
    assert req.headers["host"] == "127.0.0.1:8773"
    result = run(authenticate(req, STORE, now=NOW))
    assert (result.scheme, result.service, result.region) == ("v4", service, "eu-1")
    assert result.payload_hash == c.sha256_hex(body) and result.payload_verified

    tampered = [
        dataclasses.replace(req, raw_query=req.raw_query.replace("a=1", "a=2")),
        dataclasses.replace(req, path=req.path + "x"),
        dataclasses.replace(req, method="PUT"),
        dataclasses.replace(req, headers={**req.headers, "content-type": "text/plain"}),
    ]
    for bad in tampered:
        fails(authenticate(bad, STORE, now=NOW), AuthFailure.BAD_SIGNATURE)
    fails(
        authenticate(dataclasses.replace(req, body=b"{}"), STORE, now=NOW),
        AuthFailure.PAYLOAD_MISMATCH,
    )
    fails(authenticate(req, STORE, now=NOW + timedelta(minutes=30)), AuthFailure.SKEWED)


def test_removing_a_signed_header_is_malformed() -> None:
    body = urlencode({"Action": "DescribeImages", "Version": "2016-11-15"}).encode()
    headers = {"content-type": "application/x-www-form-urlencoded"}
    req = _signed_request("POST", f"{ENDPOINT}/", headers, body, "ec2")
    assert req.headers["x-amz-content-sha256"] == c.sha256_hex(body)
    stripped = {k: v for k, v in req.headers.items() if k != "x-amz-content-sha256"}
    fails(
        authenticate(dataclasses.replace(req, headers=stripped), STORE, now=NOW),
        AuthFailure.MALFORMED,
    )


def test_unsigned_payload() -> None:
    req = _signed_request("PUT", f"{ENDPOINT}/bucket/key", {}, b"data", "s3", unsigned_payload=True)
    result = run(authenticate(dataclasses.replace(req, body=b"other"), STORE, now=NOW))
    assert result.payload_hash == c.UNSIGNED_PAYLOAD and not result.payload_verified


def test_sign_v4_matches_botocore_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    url = f"{ENDPOINT}/bucket/some%20key.txt?uploadId=x%2By&partNumber=3"
    headers = {"Content-Type": "text/plain", "x-amz-meta-a": "b"}
    request = AWSRequest(method="PUT", url=url, data=b"part data", headers=dict(headers))
    S3SigV4Auth(BOTO_CREDENTIALS, "s3", "eu-1").add_auth(request)
    ours = sign_v4(
        "PUT", url, headers, b"part data", CREDENTIAL, region="eu-1", service="s3", now=NOW
    )
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-content-sha256"] == request.headers["X-Amz-Content-SHA256"]


@pytest.mark.parametrize("service", ["s3", "eucalypt"])
def test_presign_v4_round_trip(service: str) -> None:
    url = presign_v4(
        "GET",
        f"{ENDPOINT}/bucket/my%20photo.jpg?versionId=7",
        CREDENTIAL,
        region="eu-1",
        service=service,
        expires=600,
        now=NOW,
    )
    assert url.startswith(f"{ENDPOINT}/bucket/my%20photo.jpg?versionId=7&X-Amz-Algorithm=")
    req = from_url("GET", url)
    result = run(authenticate(req, STORE, now=NOW + timedelta(minutes=9)))
    assert result.scheme == "v4-presigned"
    fails(authenticate(req, STORE, now=NOW + timedelta(minutes=11)), AuthFailure.EXPIRED)
    fails(authenticate(req, STORE, now=NOW - timedelta(minutes=20)), AuthFailure.SKEWED)
    other = from_url("GET", url.replace("versionId=7", "versionId=8"))
    fails(authenticate(other, STORE, now=NOW), AuthFailure.BAD_SIGNATURE)
    with pytest.raises(ValueError):
        presign_v4("GET", url, CREDENTIAL, region="eu-1", service=service, expires=604801)


@pytest.mark.parametrize("algorithm", ["HmacSHA256", "HmacSHA1"])
def test_sign_v2_query_round_trip(algorithm: str) -> None:
    params = {"Action": "RunInstances", "ImageId": "emi-1", "UserData": "a+b/c=d e"}
    signed = sign_v2_query(
        "POST", "127.0.0.1:8773", "/", params, CREDENTIAL, now=NOW, algorithm=algorithm
    )
    body = urlencode(signed).encode()
    req = HttpRequest.create(
        "POST",
        "/",
        "",
        {"Host": "127.0.0.1:8773", "Content-Type": "application/x-www-form-urlencoded"},
        body,
    )
    assert run(authenticate(req, STORE, now=NOW)).scheme == "v2"
    fails(authenticate(req, STORE, now=NOW + timedelta(minutes=16)), AuthFailure.SKEWED)
    evil = HttpRequest.create("POST", "/", "", dict(req.headers), body.replace(b"emi-1", b"emi-2"))
    fails(authenticate(evil, STORE, now=NOW), AuthFailure.BAD_SIGNATURE)
    as_get = HttpRequest.create("GET", "/", urlencode(signed), {"Host": "127.0.0.1:8773"})
    fails(authenticate(as_get, STORE, now=NOW), AuthFailure.BAD_SIGNATURE)


def test_sign_v2_query_with_expires() -> None:
    params = {"Action": "DescribeRegions", "Expires": "2024-01-31T12:05:00Z"}
    signed = sign_v2_query("GET", "ec2.local", "/", params, CREDENTIAL, now=NOW)
    assert "Timestamp" not in signed
    req = HttpRequest.create("GET", "/", urlencode(signed), {"Host": "ec2.local"})
    run(authenticate(req, STORE, now=NOW + timedelta(minutes=4)))
    fails(authenticate(req, STORE, now=NOW + timedelta(minutes=6)), AuthFailure.EXPIRED)


@pytest.mark.parametrize("date_header", ["date", "x-amz-date"])
def test_sign_s3_v2_round_trip(date_header: str) -> None:
    headers = {
        date_header: format_datetime(NOW, usegmt=True),
        "Content-Type": "image/png",
        "x-amz-acl": "private",
    }
    auth = sign_s3_v2("PUT", "/bucket/key%20x?acl&foo=bar", headers, CREDENTIAL)
    req = HttpRequest.create(
        "PUT",
        "/bucket/key%20x",
        "acl&foo=bar",
        {**headers, "Authorization": auth, "Host": "s3.local"},
    )
    assert run(authenticate(req, STORE, now=NOW)).scheme == "v2"
    fails(
        authenticate(dataclasses.replace(req, raw_query="foo=bar"), STORE, now=NOW),
        AuthFailure.BAD_SIGNATURE,
    )
    fails(
        authenticate(
            dataclasses.replace(req, headers={**req.headers, "x-amz-acl": "public"}), STORE, now=NOW
        ),
        AuthFailure.BAD_SIGNATURE,
    )


def test_streaming_upload_round_trip() -> None:
    payload = bytes(range(256)) * 300
    url = f"{ENDPOINT}/bucket/big.bin"
    headers, encoder = sign_v4_streaming(
        "PUT",
        url,
        {"x-amz-storage-class": "STANDARD"},
        CREDENTIAL,
        region="eu-1",
        service="s3",
        decoded_length=len(payload),
        chunk_size=8192,
        now=NOW,
    )
    body = b"".join(encoder.chunk(payload[i : i + 8192]) for i in range(0, len(payload), 8192))
    body += encoder.finish()
    assert int(headers["content-length"]) == len(body)
    req = HttpRequest.create(
        "PUT", "/bucket/big.bin", "", {"x-amz-storage-class": "STANDARD", **headers}
    )
    result = run(authenticate(req, STORE, now=NOW))
    assert result.payload_hash == c.STREAMING_PAYLOAD
    assert result.chunk_context is not None
    decoder = AwsChunkedDecoder(result.chunk_context, decoded_length=len(payload))
    out = b"".join(decoder.feed(body[i : i + 5000]) for i in range(0, len(body), 5000))
    decoder.finish()
    assert out == payload


def test_httpx_auth_round_trip() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode()
        path, _, query = target.partition("?")
        req = HttpRequest.create(
            request.method, path, query, request.headers.multi_items(), request.content
        )
        result = run(authenticate(req, STORE, services={"eucalypt"}))
        seen.append(result.scheme)
        return httpx.Response(200, json={"who": result.credential.user_name})

    auth = HttpxSigV4Auth(CREDENTIAL, region="eu-1", service="eucalypt")
    with httpx.Client(
        transport=httpx.MockTransport(handler), auth=auth, base_url="http://cc.local:8774"
    ) as client:
        reply = client.post(
            "/rpc/v1/Describe Things",
            params={"q": "a b/c"},
            content=json.dumps({"x": 1}),
            headers={"X-Trace": "t1"},
        )
        assert reply.json() == {"who": "alice"}
        assert client.get("/healthz").status_code == 200
    assert seen == ["v4", "v4"]
