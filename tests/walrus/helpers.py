"""Small helpers for the Walrus tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

MiB = 1 << 20


def s3_error(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, int]:
    """Call ``fn`` expecting an S3 error; return (code, HTTP status)."""
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    err = info.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def multipart_etag(parts: list[bytes]) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def raw_request(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None,
                cred: Any = None, region: str = "eucalypt-1") -> Any:
    """Send a request signed with eucalypt.auth's SigV4 (or unsigned if ``cred`` is None)."""
    import httpx

    from eucalypt.auth import sign_v4

    hdrs = dict(headers or {})
    if cred is not None:
        hdrs.update(sign_v4(method, url, hdrs, body, cred, region=region, service="s3"))
    return httpx.request(method, url, content=body, headers=hdrs, timeout=60)
