"""Object uploads: the request body streamed into a new blob, verified on the way.

Chunks from the ASGI ``receive`` channel are gathered into buffers (256 KiB
for bodies up to 4 MiB, 1 MiB above) and each buffer, once decoded
(aws-chunked), goes down three *lanes* of worker-thread work: the MD5 (the
ETag), the verification (signed SHA-256, ``x-amz-checksum-*``) and the
storage (file write; after the last buffer, the blob's commit: rename and
syncs). Each lane takes the buffers in order, one at a time, but no lane
waits for another or for the event loop, which receives the next buffer
meanwhile: network, hashing (hashlib releases the GIL) and disk overlap, and
the blob's fsyncs overlap the last hashes. At most ``IN_FLIGHT`` bytes per
upload are handed to the lanes. A plain body of at most ``WHOLE_MAX`` bytes
is read into one buffer instead: only its MD5 goes down a lane while it
arrives, and one thread job does the rest once it is whole.

Nothing is answered before every check passed: a blob committed ahead of a
failed check (a mismatching SHA-256, say) is deleted again, and nothing ever
referred to it. A body under ``PARALLEL_MIN`` is read whole and handled in
one thread trip (each hash in one pass over bytes still in cache). An
object's body of at most ``inline.INLINE_MAX`` bytes is kept in memory
instead of written to a file, and committed inline with its metadata. A body
that fails any check leaves no blob and no temp file behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import CancelledError, Executor, Future, wait
from dataclasses import dataclass
from functools import partial

from eucalypt.auth import AuthError
from eucalypt.walrus import errors, inline
from eucalypt.walrus.body import BodyPlan, chunks, expects_continue, receive_into
from eucalypt.walrus.http import S3Request
from eucalypt.walrus.security import s3_error_for
from eucalypt.walrus.storage import BlobStore, BlobWriter

BUFFER = 1 << 20
# Smaller buffers for smaller bodies, so that hashing overlaps their arrival too.
SMALL_BUFFER, SMALL_BODY = 256 << 10, 4 << 20
# A body up to this size may arrive while the request's admission is checked.
EARLY_BODY = 1 << 20
# Bytes handed to the worker threads and not yet done with, per upload.
IN_FLIGHT = 2 << 20
# Below this, more threads cost more than they save: one trip does it all.
PARALLEL_MIN = 128 << 10
# A plain (not aws-chunked) file body up to this size is read whole into one
# buffer: its MD5 runs down one lane as it arrives, then one thread job checks,
# writes and seals it (instead of three lanes buffer by buffer: fewer thread hops).
WHOLE_MAX = 4 << 20
# An inline body up to this size is hashed and checked on the event loop: a
# thread trip would cost more than the hashing (well under a millisecond).
LOOP_MAX = 64 << 10
MAX_PUT_SIZE = 5 * (1 << 30)


@dataclass
class StoredBlob:
    """A committed blob and the MD5 of its bytes; ``data`` holds an inline blob's bytes."""

    blob_id: str
    size: int
    md5: bytes
    data: bytes | None = None

    @property
    def etag(self) -> str:
        return self.md5.hex()


class _Lane:
    """Runs functions one at a time, in the order given, in an executor's threads.

    Consecutive calls run back to back in one thread trip when they queue up,
    without going through the event loop. After a call raised (or was
    cancelled), the later ones fail with the same exception without running,
    except those submitted with ``always``.
    """

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._lock = threading.Lock()
        self._queue: deque[tuple[Future[None], Callable[..., None], tuple[object, ...],
                                 bool]] = deque()
        self._running = False
        self._failed: BaseException | None = None

    def submit(self, fn: Callable[..., None], *args: object,
               always: bool = False) -> Future[None]:
        future: Future[None] = Future()
        with self._lock:
            self._queue.append((future, fn, args, always))
            if self._running:
                return future
            self._running = True
        self._executor.submit(self._drain)
        return future

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                future, fn, args, always = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                self._failed = self._failed or CancelledError()
                continue
            if self._failed is not None and not always:
                future.set_exception(self._failed)
                continue
            try:
                fn(*args)
            except BaseException as exc:
                self._failed = self._failed or exc
                future.set_exception(exc)
            else:
                future.set_result(None)


class _Sink:
    """The thread side of an upload, one method per lane plus the end.

    :meth:`digest` (MD5) and :meth:`check` (signed SHA-256, checksum) hash
    each buffer; :meth:`store` writes it to the blob file (or keeps it, for
    an inline blob) and :meth:`seal` commits the file; :meth:`verify` runs
    the end-of-body checks and :meth:`result` the MD5's.
    """

    def __init__(self, plan: BodyPlan, writer: BlobWriter, max_size: int,
                 inline_ok: bool) -> None:
        self.plan = plan
        self.writer = writer
        self.max_size = max_size
        self.inline = inline_ok and (plan.length or 0) <= inline.INLINE_MAX
        self.kept: list[bytes | bytearray] = []  # an inline blob's bytes
        self.md5 = hashlib.md5()
        self.checked = 0  # bytes verified (check lane)
        self.size = 0  # bytes stored (store lane)

    def digest(self, data: bytes | bytearray) -> None:
        self.md5.update(data)

    def check(self, raw: bytes | bytearray, data: bytes | bytearray) -> None:
        self.plan.verify(raw, data)
        self.checked += len(data)

    def store(self, data: bytes | bytearray) -> None:
        self.size += len(data)
        if self.size > self.max_size or (self.inline and self.size > inline.INLINE_MAX):
            raise errors.EntityTooLarge()
        if not data:
            return
        if self.inline:
            self.kept.append(data)
        else:
            self.writer.write(data)

    def seal(self) -> None:
        """Commit the blob file (durably); an inline blob has none."""
        if self.inline:
            self.writer.abort()  # never written to: no file was made
        else:
            self.writer.commit()

    def verify(self, headers: dict[str, str], md5: bytes | None = None) -> None:
        """Check framing, length, signature, checksums (and ``md5`` if given)."""
        self.plan.finish(self.checked)
        if md5 is not None:
            self.plan.check_md5(md5)
        self.plan.check_header_checksum(headers)

    def stored_whole(self, data: bytearray, headers: dict[str, str]) -> None:
        """A whole plain body (not inline): write it, check it, then seal the file.

        The write starts the writeback, which goes on while the body is hashed;
        a body that fails a check is never synced. The MD5 is the caller's.
        """
        self.store(data)
        self.check(data, data)
        self.verify(headers)
        self.seal()

    def whole(self, raw: bytearray, headers: dict[str, str]) -> StoredBlob:
        """A small body in one thread trip: decode, hash, check, store, seal."""
        data = self.plan.decode(raw)
        self.digest(data)
        self.check(raw, data)
        self.store(data)
        self.verify(headers, self.md5.digest())
        self.seal()
        return self.result()

    def result(self) -> StoredBlob:
        """The blob, once its MD5 matched any Content-MD5 (else BadDigest)."""
        digest = self.md5.digest()
        self.plan.check_md5(digest)
        if self.inline:
            return StoredBlob(inline.new_id(), self.size, digest, b"".join(self.kept))
        return StoredBlob(self.writer.blob_id, self.size, digest)


class _NoFile:
    """The writer of an inline body: no file is ever made."""

    blob_id = ""
    size = 0

    def abort(self) -> None:
        pass


def inline_plan(req: S3Request) -> BodyPlan | None:
    """The body plan of a request whose body will certainly be an inline blob, else None.

    That is a body that is not aws-chunked (its length on the wire is its
    declared length, which the HTTP layer enforces) of at most
    ``inline.INLINE_MAX`` bytes. Raises the S3 error of an invalid request
    (bad Content-Length, Content-MD5, x-amz-content-sha256).
    """
    plan = BodyPlan.for_request(req)
    if plan.decoder is not None or plan.length is None or plan.length > inline.INLINE_MAX:
        return None
    return plan


async def receive_inline(req: S3Request, plan: BodyPlan, executor: Executor) -> StoredBlob:
    """Read and check a body that ``inline_plan`` accepted; returns it as an inline blob.

    Nothing is stored anywhere: the bytes go to the database with the object's row.
    """
    buf = bytearray()
    try:
        async for chunk in chunks(req):
            buf += chunk
            if len(buf) > inline.INLINE_MAX:
                raise errors.IncompleteBody()
        sink = _Sink(plan, _NoFile(), inline.INLINE_MAX, True)  # type: ignore[arg-type]
        if len(buf) <= LOOP_MAX:
            return sink.whole(buf, req.headers)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, sink.whole, buf, req.headers)
    except AuthError as exc:
        raise s3_error_for(exc, req) from exc


class _BufferPool:
    """Whole-body buffers (up to ``WHOLE_MAX`` bytes), reused from upload to upload.

    A new buffer per upload meant faulting in and zeroing fresh pages every
    time (in a VM, memory the host hands over afresh): a tenth of the event
    loop's CPU for a 1 MiB PUT. Buffers come in sizes of ``SMALL_BUFFER``
    times a power of two; at most ``KEEP`` of each size wait here.
    """

    KEEP = 8

    def __init__(self) -> None:
        self._free: dict[int, list[bytearray]] = {}
        self._lock = threading.Lock()

    def take(self, size: int) -> bytearray:
        capacity = SMALL_BUFFER
        while capacity < size:
            capacity *= 2
        with self._lock:
            free = self._free.get(capacity)
            if free:
                return free.pop()
        return bytearray(capacity)

    def give(self, buf: bytearray) -> None:
        with self._lock:
            free = self._free.setdefault(len(buf), [])
            if len(free) < self.KEEP:
                free.append(buf)


_buffers = _BufferPool()


async def _read_whole(req: S3Request, buf: bytearray, length: int,
                      hand: Callable[[memoryview], object]) -> memoryview:
    """The body, read into ``buf`` (of at least its declared ``length``); returns the view
    of ``buf`` that it filled.

    Each ``SMALL_BUFFER`` bytes, and the tail, are passed to ``hand`` (a view of
    the buffer) as they are complete. A body that falls short comes back
    shorter (the length check, ``BodyPlan.finish``, reports it); IncompleteBody
    if more than ``length`` bytes arrive.
    """
    view = memoryview(buf)
    pos = handed = 0
    if req.receive_into is not None:  # the bytes land in buf, no copy on the way
        while True:
            n = await receive_into(req, view[pos:length]) if pos < length else \
                await receive_into(req, memoryview(bytearray(1)))
            if n == 0:
                break
            if pos >= length:
                raise errors.IncompleteBody()
            pos += n
            if pos - handed >= SMALL_BUFFER:
                hand(view[handed:pos])
                handed = pos
    else:
        async for chunk in chunks(req):
            end = pos + len(chunk)
            if end > length:
                raise errors.IncompleteBody()
            view[pos:end] = chunk
            pos = end
            if pos - handed >= SMALL_BUFFER:
                hand(view[handed:pos])
                handed = pos
    if handed < pos:
        hand(view[handed:pos])
    return view[:pos]


async def _store_whole(sink: _Sink, data: memoryview, headers: dict[str, str],
                       executor: Executor, md5_lane: _Lane) -> StoredBlob:
    """A whole plain body into a committed file blob: the checks, write and seal in one
    thread job, beside the MD5 lane (fed while the body arrived). The blob is removed
    again if the MD5 does not match."""
    md5_done = md5_lane.submit(lambda: None)  # after every hash handed to the lane
    store_job = executor.submit(sink.stored_whole, data, headers)
    try:
        await asyncio.wrap_future(store_job)
        await asyncio.wrap_future(md5_done)
        digest = sink.md5.digest()
        sink.plan.check_md5(digest)
    except BaseException:
        # After the store job is done (or never started): it writes the blob.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, _abort_after, sink.writer, store_job)
        raise
    return StoredBlob(sink.writer.blob_id, sink.size, digest)


def _abort_after(writer: BlobWriter, job: Future[None]) -> None:
    job.cancel()
    wait([job])
    writer.abort()


async def receive_blob(req: S3Request, store: BlobStore, executor: Executor,
                       max_size: int = MAX_PUT_SIZE, *, inline_ok: bool = True,
                       admission: Awaitable[object] | None = None) -> StoredBlob:
    """Stream the request body into a new committed blob and return it.

    With ``inline_ok`` a body of at most ``inline.INLINE_MAX`` bytes comes back
    as an inline blob (bytes in ``data``, nothing written yet). ``admission``
    is the request's authorization, still being checked: a body of up to
    ``EARLY_BODY`` bytes may start to arrive meanwhile but nothing is stored
    before it passed; a larger body, or one whose client waits for ``100
    Continue`` (which reading the body sends), is not read before. Raises an
    S3 error (BadDigest, IncompleteBody, XAmzContentSHA256Mismatch,
    EntityTooLarge, ...) after removing the partial temp file or the blob.
    """
    plan = BodyPlan.for_request(req)
    if plan.length is None:
        raise errors.MissingContentLength()
    if plan.length > max_size:
        raise errors.EntityTooLarge()

    async def admitted() -> None:
        if admission is not None:
            await admission

    if plan.length > EARLY_BODY or expects_continue(req):
        await admitted()
    # Every body gets a writer up front (opening no file until written to),
    # so that a failing store fails every upload alike.
    sink = _Sink(plan, store.create(), max_size, inline_ok)
    loop = asyncio.get_running_loop()
    md5_lane, check_lane, store_lane = _Lane(executor), _Lane(executor), _Lane(executor)
    # The lanes' futures, oldest first. Only those waited for are wrapped for
    # the event loop: the last of a lane settles after (and like) the others.
    handed: deque[Future[None]] = deque()
    size = SMALL_BUFFER if plan.length <= SMALL_BODY else BUFFER
    most = 3 * max(1, IN_FLIGHT // size)

    async def hand_over(raw: bytearray, last: bool) -> None:
        while len(handed) >= most:
            await asyncio.wrap_future(handed.popleft())
        data = raw if plan.decoder is None else \
            await loop.run_in_executor(executor, plan.decode, raw)
        handed.extend((md5_lane.submit(sink.digest, data),
                       check_lane.submit(sink.check, raw, data),
                       store_lane.submit(sink.store, data)))
        if last:
            handed.extend((check_lane.submit(sink.verify, req.headers),
                           store_lane.submit(sink.seal)))

    # A full buffer is held until more data comes, so the last one is known as such.
    full: bytearray | None = None
    buf = bytearray()
    try:
        if plan.decoder is None and plan.length < PARALLEL_MIN:
            async for chunk in chunks(req):
                buf += chunk
            await admitted()
            return await loop.run_in_executor(executor, sink.whole, buf, req.headers)
        if plan.decoder is None and plan.length <= WHOLE_MAX and not sink.inline:
            # The MD5 is taken while the body arrives (that stores nothing, so it
            # need not wait for the admission); the rest once it is all here.
            buf = _buffers.take(plan.length)
            whole = await _read_whole(req, buf, plan.length,
                                      partial(md5_lane.submit, sink.digest))
            await admitted()
            stored = await _store_whole(sink, whole, req.headers, executor, md5_lane)
            # Every job that read the buffer is done (not so after a failure: left to GC).
            whole.release()
            _buffers.give(buf)
            return stored
        async for chunk in chunks(req):
            if full is not None:
                await admitted()
                await hand_over(full, last=False)
                full = None
            buf += chunk
            if len(buf) >= size:
                full, buf = buf, bytearray()
        await admitted()
        await hand_over(full if full is not None else buf, last=True)
        # The last MD5, the end-of-body checks, the seal: each its lane's last.
        await asyncio.gather(*(asyncio.wrap_future(handed[i]) for i in (-5, -2, -1)))
        return sink.result()
    except BaseException as exc:
        # After whatever store work is still running: it writes to the blob.
        await asyncio.wrap_future(store_lane.submit(sink.writer.abort, always=True))
        await asyncio.gather(*(asyncio.wrap_future(f) for f in handed), return_exceptions=True)
        if isinstance(exc, AuthError):
            raise s3_error_for(exc, req) from exc
        raise
