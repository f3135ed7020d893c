"""The CLC's view of Walrus: reading objects that images are registered from.

Requests are signed with the CLC's component key (SigV4, service ``s3``);
Walrus lets components read any object.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from eucalypt.auth import HttpxSigV4Auth
from eucalypt.auth.credentials import Credential


class ObjectMissing(Exception):
    """The object does not exist (or Walrus refused it)."""


QCOW2_MAGIC = b"QFI\xfb"


@dataclass(frozen=True)
class ObjectDigest:
    size: int
    sha256: str
    disk_format: str  # qcow2 when the object starts with QEMU's magic, else raw


class WalrusReader:
    def __init__(self, base_url: str, credential: Credential, region: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            auth=HttpxSigV4Auth(credential, region=region, service="s3", unsigned_payload=True),
            timeout=httpx.Timeout(30.0, read=300.0),
        )

    def url(self, bucket: str, key: str) -> str:
        return f"{self.base_url}/{quote(bucket, safe='')}/{quote(key, safe='/')}"

    async def digest(self, bucket: str, key: str) -> ObjectDigest:
        """Stream the object once and return its size and SHA-256 (bounded memory)."""
        sha = hashlib.sha256()
        size = 0
        head = b""
        async with self._http.stream("GET", self.url(bucket, key)) as reply:
            if reply.status_code != 200:
                await reply.aread()
                raise ObjectMissing(
                    f"s3://{bucket}/{key}: Walrus answered {reply.status_code} {reply.text[:200]}"
                )
            async for chunk in reply.aiter_bytes(1 << 20):
                if len(head) < 4:
                    head += chunk[:4]
                sha.update(chunk)
                size += len(chunk)
        fmt = "qcow2" if head.startswith(QCOW2_MAGIC) else "raw"
        return ObjectDigest(size=size, sha256=sha.hexdigest(), disk_format=fmt)

    async def aclose(self) -> None:
        await self._http.aclose()
