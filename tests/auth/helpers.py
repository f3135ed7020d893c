"""Shared helpers for the eucalypt.auth tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.credentials import Credentials

from eucalypt.auth import AuthError, AuthFailure, Credential, HttpRequest, StaticCredentialStore
from eucalypt.auth.sign import host_from_url

T = TypeVar("T")

ACCESS_KEY = "AKIDTESTKEY0001"
SECRET = "s3cr3t/Key+With=Odd/Chars0123456789abcd"
INACTIVE_KEY = "AKIDINACTIVE0001"
CREDENTIAL = Credential(ACCESS_KEY, SECRET, account_id="000000000001", user_name="alice")
STORE = StaticCredentialStore(
    [CREDENTIAL, Credential(INACTIVE_KEY, "inactive-secret", active=False)]
)
BOTO_CREDENTIALS = Credentials(ACCESS_KEY, SECRET)
ENDPOINT = "http://127.0.0.1:8773"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion."""
    return asyncio.run(coro)


def fails(coro: Coroutine[Any, Any, object], reason: AuthFailure) -> AuthError:
    """Assert that ``coro`` raises AuthError with ``reason``; return the error."""
    with pytest.raises(AuthError) as info:
        run(coro)
    assert info.value.reason is reason, info.value
    return info.value


def parse_raw(text: str) -> HttpRequest:
    """Parse a test-suite raw request: request line, headers (folded lines add values), body."""
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    request_line = lines[0]
    assert request_line.endswith(" HTTP/1.1")
    method, _, target = request_line[: -len(" HTTP/1.1")].partition(" ")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1].isspace():
            headers.append((headers[-1][0], line.strip()))
        else:
            name, _, value = line.partition(":")
            headers.append((name, value))
    path, _, query = target.partition("?")
    return HttpRequest.create(method, path, query, headers, body.encode() if body else None)


def from_botocore(
    request: AWSRequest | AWSPreparedRequest, *, with_body: bool = True
) -> HttpRequest:
    """The HttpRequest a server would see for a botocore-signed request."""
    prepared = request.prepare() if isinstance(request, AWSRequest) else request
    parts = urlsplit(prepared.url)
    headers = [(k, v if isinstance(v, str) else v.decode()) for k, v in prepared.headers.items()]
    if not any(k.lower() == "host" for k, _ in headers):
        headers.append(("Host", host_from_url(parts)))
    body = prepared.body
    if isinstance(body, str):
        body = body.encode()
    return HttpRequest.create(
        prepared.method, parts.path, parts.query, headers, (body or b"") if with_body else None
    )


def from_url(method: str, url: str, headers: dict[str, str] | None = None) -> HttpRequest:
    """The HttpRequest a server would see for a plain request to ``url``."""
    parts = urlsplit(url)
    all_headers = {"Host": host_from_url(parts), **(headers or {})}
    return HttpRequest.create(method, parts.path, parts.query, all_headers)
