"""Object uploads: the request body streamed into a new blob, verified on the way.

Chunks from the ASGI ``receive`` channel are gathered into 1 MiB buffers.
Each buffer is decoded (aws-chunked) and then, in two worker threads at
once, hashed with MD5 (the ETag) and checked (signed SHA-256, checksum) and
appended to the blob's temp file; hashlib releases the GIL, so both cores
work. While the threads handle one buffer the event loop receives the next:
network, hashing and disk overlap, and an upload holds at most two buffers.
A body that fails any check leaves no temp file behind.
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import Executor
from dataclasses import dataclass

from eucalypt.auth import AuthError
from eucalypt.walrus import errors
from eucalypt.walrus.body import BodyPlan, chunks
from eucalypt.walrus.http import S3Request
from eucalypt.walrus.security import s3_error_for
from eucalypt.walrus.storage import BlobStore, BlobWriter

BUFFER = 1 << 20
MAX_PUT_SIZE = 5 * (1 << 30)


@dataclass
class StoredBlob:
    """A committed blob and the MD5 of its bytes."""

    blob_id: str
    size: int
    md5: bytes

    @property
    def etag(self) -> str:
        return self.md5.hex()


class _Sink:
    """The thread side of an upload: hashing and writing, one buffer at a time.

    Per buffer, :meth:`digest` (MD5, the ETag) and :meth:`store` (signature
    SHA-256, checksum, file write) run in two worker threads at once; hashlib
    releases the GIL, so they use two cores.
    """

    def __init__(self, plan: BodyPlan, store: BlobStore, max_size: int) -> None:
        self.plan = plan
        self.blobs = store
        self.max_size = max_size
        self.writer: BlobWriter | None = None
        self.md5 = hashlib.md5()
        self.size = 0

    def digest(self, data: bytes | bytearray) -> None:
        self.md5.update(data)

    def store(self, raw: bytes | bytearray, data: bytes | bytearray) -> None:
        if self.writer is None:
            self.writer = self.blobs.create()
        self.plan.verify(raw, data)
        self.size += len(data)
        if self.size > self.max_size:
            raise errors.EntityTooLarge()
        if data:
            self.writer.write(data)

    def whole(self, raw: bytearray, headers: dict[str, str]) -> StoredBlob:
        """A small body in one thread trip: decode, hash, write, commit."""
        data = self.plan.decode(raw)
        self.digest(data)
        self.store(raw, data)
        return self.finish(headers)

    def finish(self, headers: dict[str, str]) -> StoredBlob:
        if self.writer is None:
            self.writer = self.blobs.create()
        digest = self.md5.digest()
        self.plan.finish(self.size, digest)
        self.plan.check_header_checksum(headers)
        blob_id = self.writer.commit()
        return StoredBlob(blob_id, self.size, digest)


async def receive_blob(req: S3Request, store: BlobStore, executor: Executor,
                       max_size: int = MAX_PUT_SIZE) -> StoredBlob:
    """Stream the request body into a new committed blob and return it.

    Raises an S3 error (BadDigest, IncompleteBody, XAmzContentSHA256Mismatch,
    EntityTooLarge, ...) after removing the partial temp file.
    """
    plan = BodyPlan.for_request(req)
    if plan.length is None:
        raise errors.MissingContentLength()
    if plan.length > max_size:
        raise errors.EntityTooLarge()
    sink = _Sink(plan, store, max_size)
    loop = asyncio.get_running_loop()

    async def step(raw: bytearray) -> None:
        data = raw
        if plan.decoder is not None:
            data = await loop.run_in_executor(executor, plan.decode, raw)  # type: ignore[arg-type]
        await asyncio.gather(loop.run_in_executor(executor, sink.digest, data),
                             loop.run_in_executor(executor, sink.store, raw, data))

    # While one buffer is hashed and written, the event loop receives the next.
    pending: asyncio.Task[None] | None = None
    buf = bytearray()
    try:
        if plan.decoder is None and plan.length <= BUFFER:
            # Small (Content-Length bounds it): one worker-thread trip for everything.
            async for chunk in chunks(req):
                buf += chunk
            return await loop.run_in_executor(executor, sink.whole, buf, req.headers)
        async for chunk in chunks(req):
            buf += chunk
            if len(buf) >= BUFFER:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(step(buf))
                buf = bytearray()
        if pending is not None:
            await pending
            pending = None
        if buf:
            await step(buf)
        return await loop.run_in_executor(executor, sink.finish, req.headers)
    except BaseException as exc:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)
        if sink.writer is not None:
            await loop.run_in_executor(executor, sink.writer.abort)
        if isinstance(exc, AuthError):
            raise s3_error_for(exc, req) from exc
        raise
