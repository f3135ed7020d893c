"""Walrus's logic: metadata in SQL (``Database``), bytes in a ``BlobStore``.

Everything a service needs travels in one :class:`Context` built by
``create_app``; there is no module-level state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection

from eucalypt.auth import CredentialStore
from eucalypt.config import Config
from eucalypt.db import Database
from eucalypt.walrus.inline import file_ids
from eucalypt.walrus.services.commit import GroupCommitter
from eucalypt.walrus.storage import BlobStore

T = TypeVar("T")


class BucketCache:
    """Buckets recently read, by name, so that an upload is admitted without a thread trip.

    Reading a bucket in the I/O pool while its request's body arrives made the
    event loop and the pool contend for the GIL; the cached row is checked on the
    event loop instead. Every change to a bucket (delete, ACL) goes through this
    process and calls :meth:`invalidate` once it committed, which also drops any
    read begun before it (its :meth:`generation` no longer matches). Entries
    still expire after ``TTL`` seconds, for the day another process writes the
    same database. A bucket deleted behind the cache's back costs nothing worse
    than an upload refused at its commit (the foreign key), with NoSuchBucket.
    """

    TTL = 2.0
    MAX = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Any]] = {}
        self.generation = 0

    def get(self, name: str) -> Any | None:
        entry = self._entries.get(name)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, name: str, view: Any, generation: int) -> None:
        """Keep ``view``, read since :attr:`generation` was ``generation``, unless stale."""
        if generation != self.generation:
            return
        if len(self._entries) >= self.MAX:
            self._entries.clear()
        self._entries[name] = (time.monotonic() + self.TTL, view)

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()


@dataclass
class Context:
    config: Config
    db: Database
    store: BlobStore
    # Blob I/O (writes, fsync, reads) and reads of metadata run here, off the event loop.
    executor: ThreadPoolExecutor
    # SQLite allows one writer at a time: metadata writes go through one thread
    # that commits them in groups (services/commit.py). None (PostgreSQL): each
    # write is its own transaction in the I/O pool, concurrently (PostgreSQL
    # groups concurrent commits' WAL flushes by itself).
    committer: GroupCommitter | None = None
    # Display names of the accounts seen signing requests, by canonical id: grants by
    # ``id=`` (headers, or XML without a DisplayName) are shown with their owner's name.
    display_names: dict[str, str] = field(default_factory=dict)
    # Where POST Object (browser form) uploads look up the key that signed their policy.
    credentials: CredentialStore | None = None
    # Buckets by name, read recently (see BucketCache); used on the event loop only.
    buckets: BucketCache = field(default_factory=BucketCache)

    def run(self, fn: Callable[[Connection], T]) -> T:
        """``fn(connection)`` in one transaction, committed when it returns (blocking).

        Services use SQLAlchemy Core on a plain connection: on the hot paths
        the ORM session's bookkeeping cost more than the queries.
        """
        with self.db.engine.begin() as conn:
            return fn(conn)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run a read transaction in the I/O pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.run, fn)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run a write transaction; returns once it committed durably.

        On SQLite it goes through the group committer, possibly sharing its
        transaction (and the transaction's one WAL fsync) with other writes,
        each in its own savepoint.
        """
        if self.committer is not None:
            return await asyncio.wrap_future(self.committer.submit(fn))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.run, fn)

    async def io(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, fn, *args)

    async def delete_blobs(self, blob_ids: list[str]) -> None:
        """Delete the blob files a (durably) committed change released.

        Inline blobs went with the change's own transaction.
        """
        files = file_ids(blob_ids)
        if files:
            await self.io(_delete_all, self.store, files)


def new_id(primary_key: Any) -> int:
    """The integer id of a row just inserted (``result.inserted_primary_key``)."""
    assert primary_key is not None
    return int(primary_key[0])


def _delete_all(store: BlobStore, blob_ids: list[str]) -> None:
    for blob_id in blob_ids:
        store.delete(blob_id)

