"""The S3 error envelope, request ids, health check, and the dispatch table's refusals."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml import ElementTree

from eucalypt.auth import StaticCredentialStore
from eucalypt.config import Config, WalrusConfig
from eucalypt.walrus.app import create_app
from eucalypt.walrus.storage import FilesystemStore
from tests.walrus.conftest import ACCOUNTS, ALICE, WalrusServer
from tests.walrus.helpers import raw_request, s3_error


def parse_error(resp: httpx.Response) -> dict[str, str]:
    root = ElementTree.fromstring(resp.content)
    assert root.tag == "Error"
    return {child.tag: child.text or "" for child in root}


def test_error_envelope(walrus: WalrusServer, bucket: str) -> None:
    resp = raw_request("GET", f"{walrus.url}/{bucket}/missing/key", cred=ALICE)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/xml"
    err = parse_error(resp)
    assert err["Code"] == "NoSuchKey"
    assert err["Message"] == "The specified key does not exist."
    assert err["Resource"] == f"/{bucket}/missing/key"
    assert err["RequestId"] == resp.headers["x-amz-request-id"]
    assert resp.headers["x-amz-id-2"]


def test_request_ids_are_unique(walrus: WalrusServer) -> None:
    ids = {httpx.get(f"{walrus.url}/healthz").headers["x-amz-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_healthz(walrus: WalrusServer) -> None:
    resp = httpx.get(f"{walrus.url}/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_malformed_xml(walrus: WalrusServer, bucket: str) -> None:
    for body in (b"<Delete><Object><Key>a</Key>", b"not xml at all", b"",
                 b'<!DOCTYPE x [<!ENTITY a "aaaa">]><Delete>&a;</Delete>'):
        resp = raw_request("POST", f"{walrus.url}/{bucket}?delete", body, cred=ALICE)
        assert resp.status_code == 400, body
        assert parse_error(resp)["Code"] == "MalformedXML"
    resp = raw_request("POST", f"{walrus.url}/{bucket}/k?uploadId=nope", b"<Oops/>", cred=ALICE)
    assert parse_error(resp)["Code"] in ("MalformedXML", "NoSuchUpload")
    resp = raw_request("PUT", f"{walrus.url}/xml-bad-bucket-1", b"<CreateBucketConfiguration>",
                       cred=ALICE)
    assert resp.status_code == 400 and parse_error(resp)["Code"] == "MalformedXML"


def test_billion_laughs_is_refused(walrus: WalrusServer, bucket: str) -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            b"<Delete><Object><Key>&lol2;</Key></Object></Delete>")
    resp = raw_request("POST", f"{walrus.url}/{bucket}?delete", bomb, cred=ALICE)
    assert resp.status_code == 400 and parse_error(resp)["Code"] == "MalformedXML"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/{b}?website"), ("PUT", "/{b}?lifecycle"), ("GET", "/{b}?replication"),
    ("PUT", "/{b}/k?tagging"), ("GET", "/{b}/k?torrent"), ("POST", "/{b}/k?restore"),
    ("GET", "/{b}?inventory"),
])
def test_not_implemented(walrus: WalrusServer, bucket: str, method: str, path: str) -> None:
    resp = raw_request(method, walrus.url + path.format(b=bucket), cred=ALICE)
    assert resp.status_code == 501
    assert parse_error(resp)["Code"] == "NotImplemented"


def test_method_not_allowed(walrus: WalrusServer, bucket: str) -> None:
    resp = raw_request("PATCH", f"{walrus.url}/{bucket}/k", cred=ALICE)
    assert resp.status_code == 405 and parse_error(resp)["Code"] == "MethodNotAllowed"
    resp = raw_request("DELETE", f"{walrus.url}/", cred=ALICE)
    assert resp.status_code == 405 and parse_error(resp)["Code"] == "MethodNotAllowed"


def test_head_errors_have_no_body(walrus: WalrusServer, bucket: str) -> None:
    resp = raw_request("HEAD", f"{walrus.url}/{bucket}/missing", cred=ALICE)
    assert resp.status_code == 404 and resp.content == b""


def test_error_keeps_connection_usable(walrus: WalrusServer, bucket: str, s3: Any) -> None:
    # A rejected upload (bad Content-MD5) followed by more requests on the same connection.
    for _ in range(3):
        assert s3_error(s3.put_object, Bucket=bucket, Key="k", Body=b"x" * 100_000,
                        ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==") == ("BadDigest", 400)
        assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


class ExplodingStore(FilesystemStore):
    def create(self) -> Any:
        raise RuntimeError("disk on fire")


def test_unexpected_errors_are_internal_errors(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    config = Config(data_dir=tmp_path, walrus=WalrusConfig(port=1))
    app = create_app(config, credentials=StaticCredentialStore(ACCOUNTS),
                     store=ExplodingStore(tmp_path / "objects"))
    from eucalypt.auth import sign_v4

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://walrus") as client:
            out = []
            for method, url, body in [("PUT", "http://walrus/bkt", b""),
                                      # larger than inline: it needs the store
                                      ("PUT", "http://walrus/bkt/obj", b"d" * (200 << 10))]:
                headers = sign_v4(method, url, {}, body, ALICE, region="eucalypt-1",
                                  service="s3")
                out.append(await client.request(method, url, content=body, headers=headers))
            return out

    with caplog.at_level(logging.ERROR, logger="eucalypt.walrus"):
        created, failed = asyncio.run(run())
    assert created.status_code == 200
    assert failed.status_code == 500
    err = parse_error(failed)
    assert err["Code"] == "InternalError" and "fire" not in err["Message"]
    assert any("disk on fire" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    app.close()


def test_one_structured_log_line_per_request(walrus: WalrusServer, s3: Any, bucket: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    s3.put_object(Bucket=bucket, Key="logged", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "logged"})
    with caplog.at_level(logging.INFO, logger="eucalypt.walrus.access"):
        resp = httpx.get(url)
        missing = raw_request("GET", f"{walrus.url}/{bucket}/nope", cred=ALICE)
        wanted = {resp.headers["x-amz-request-id"], missing.headers["x-amz-request-id"]}
        # The access line is written once the response has been sent, which the
        # client may see first: wait (briefly) for both lines.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [r for r in caplog.records if r.name == "eucalypt.walrus.access"]
            by_id = {getattr(r, "request_id", None): r for r in lines}
            if wanted <= by_id.keys():
                break
            time.sleep(0.05)
    ok = by_id[resp.headers["x-amz-request-id"]]
    assert ok.status == 200 and ok.method == "GET" and ok.path == f"/{bucket}/logged"
    assert "X-Amz-Signature=REDACTED" in ok.query and "X-Amz-Credential" in ok.query
    assert ok.account == ALICE.account_id and ok.bytes_out == 1
    bad = by_id[missing.headers["x-amz-request-id"]]
    assert bad.status == 404 and bad.error == "NoSuchKey"
