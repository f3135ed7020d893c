"""The internal protocol over a real server: signing, callers, errors, OpenAPI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from eucalypt.auth.credentials import Credential
from eucalypt.logs import REQUEST_ID_HEADER, request_id_var
from eucalypt.rpc import ComponentKeys, RemoteError, RpcClient, RpcRouter, rpc_app
from tests.support.servers import serve_in_thread


class EchoRequest(BaseModel):
    text: str
    times: int = 1


class EchoResponse(BaseModel):
    text: str
    caller: str
    request_id: str


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> ComponentKeys:
    return ComponentKeys.generate(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def server(keys: ComponentKeys) -> str:
    app = rpc_app("nc", keys.store(["cc"]))
    router = RpcRouter()

    @router.operation("Echo", EchoRequest, EchoResponse, allow={"cc"})
    async def echo(req: EchoRequest, caller: Credential) -> EchoResponse:
        """Echo the text back."""
        return EchoResponse(
            text=req.text * req.times, caller=caller.principal, request_id=request_id_var.get()
        )

    router.mount(app)
    with serve_in_thread(app) as url:
        yield url  # type: ignore[misc]


def call(url: str, credential: Credential, req: BaseModel) -> EchoResponse:
    async def go() -> EchoResponse:
        client = RpcClient(url, credential, region="r1")
        try:
            return await client.call("Echo", req, EchoResponse)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_signed_call_from_allowed_component(server: str, keys: ComponentKeys) -> None:
    reply = call(server, keys.credential("cc"), EchoRequest(text="ab", times=3))
    assert reply.text == "ababab"
    assert reply.caller == "component:cc"


def test_request_id_is_forwarded(server: str, keys: ComponentKeys) -> None:
    token = request_id_var.set("req-123")
    try:
        reply = call(server, keys.credential("cc"), EchoRequest(text="x"))
    finally:
        request_id_var.reset(token)
    assert reply.request_id == "req-123"


def test_component_not_allowed_is_denied(server: str, keys: ComponentKeys) -> None:
    with pytest.raises(RemoteError) as err:
        call(server, keys.credential("walrus"), EchoRequest(text="x"))
    # walrus's key is not even in the NC's store: it cannot authenticate.
    assert err.value.code == "AuthFailure" and err.value.status == 401


def test_known_but_unauthorised_caller(keys: ComponentKeys) -> None:
    app = rpc_app("nc", keys.store(["cc", "clc"]))
    router = RpcRouter()

    @router.operation("Echo", EchoRequest, EchoResponse, allow={"cc"})
    async def echo(req: EchoRequest, caller: Credential) -> EchoResponse:
        return EchoResponse(text=req.text, caller=caller.principal, request_id="")

    router.mount(app)
    with serve_in_thread(app) as url, pytest.raises(RemoteError) as err:
        call(url, keys.credential("clc"), EchoRequest(text="x"))
    assert err.value.code == "AccessDenied" and err.value.status == 403


def test_wrong_secret_is_refused(server: str, keys: ComponentKeys) -> None:
    good = keys.credential("cc")
    forged = Credential(access_key=good.access_key, secret_key="not-the-secret")
    with pytest.raises(RemoteError) as err:
        call(server, forged, EchoRequest(text="x"))
    assert err.value.code == "AuthFailure"


def test_unsigned_and_invalid_bodies(server: str, keys: ComponentKeys) -> None:
    reply = httpx.post(f"{server}/v1/Echo", json={"text": "x"})
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "AuthFailure"
    assert reply.headers[REQUEST_ID_HEADER] == reply.json()["request_id"]

    class Bad(BaseModel):
        times: str

    with pytest.raises(RemoteError) as err:
        call(server, keys.credential("cc"), Bad(times="many"))
    assert err.value.code == "InvalidRequest" and "text" in err.value.message


def test_unreachable_component_is_service_unavailable(keys: ComponentKeys) -> None:
    from tests.support.servers import free_port

    with pytest.raises(RemoteError) as err:
        call(f"http://127.0.0.1:{free_port()}", keys.credential("cc"), EchoRequest(text="x"))
    assert err.value.code == "ServiceUnavailable"


def test_openapi_and_health(server: str) -> None:
    doc = httpx.get(f"{server}/openapi.json").json()
    assert "/v1/Echo" in doc["paths"]
    assert "EchoRequest" in json.dumps(doc["components"])
    assert httpx.get(f"{server}/healthz").json()["status"] == "ok"


def test_keys_file_is_private_and_stable(tmp_path: Path) -> None:
    first = ComponentKeys.generate(tmp_path)
    second = ComponentKeys.generate(tmp_path)
    assert first.credential("cc") == second.credential("cc")
    assert (tmp_path / "components.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileNotFoundError, match="eucalypt init"):
        ComponentKeys.load(tmp_path / "nowhere")
