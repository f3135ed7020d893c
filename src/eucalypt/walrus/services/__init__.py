"""Walrus's logic: metadata in SQL (``Database``), bytes in a ``BlobStore``.

Everything a service needs travels in one :class:`Context` built by
``create_app``; there is no module-level state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection

from eucalypt.auth import CredentialStore
from eucalypt.config import Config
from eucalypt.db import Database
from eucalypt.walrus.storage import BlobStore

T = TypeVar("T")


@dataclass
class Context:
    config: Config
    db: Database
    store: BlobStore
    # Blob I/O (writes, fsync, reads) runs here, off the event loop.
    executor: ThreadPoolExecutor
    # SQLite allows one writer at a time and makes the others sleep-poll for
    # the lock; funnelling metadata writes through one thread avoids that.
    # None (PostgreSQL): writes run concurrently like reads.
    writer: ThreadPoolExecutor | None = None
    # Display names of the accounts seen signing requests, by canonical id: grants by
    # ``id=`` (headers, or XML without a DisplayName) are shown with their owner's name.
    display_names: dict[str, str] = field(default_factory=dict)
    # Where POST Object (browser form) uploads look up the key that signed their policy.
    credentials: CredentialStore | None = None

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
        """Run a write transaction (through the single writer thread on SQLite)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.writer or self.executor, self.run, fn)

    async def io(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, fn, *args)

    async def delete_blobs(self, blob_ids: list[str]) -> None:
        if blob_ids:
            await self.io(_delete_all, self.store, blob_ids)


def new_id(primary_key: Any) -> int:
    """The integer id of a row just inserted (``result.inserted_primary_key``)."""
    assert primary_key is not None
    return int(primary_key[0])


def _delete_all(store: BlobStore, blob_ids: list[str]) -> None:
    for blob_id in blob_ids:
        store.delete(blob_id)
