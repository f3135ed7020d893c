"""Group commit: concurrent metadata writes share one SQLite transaction.

SQLite has one writer at a time, and every transaction has a fixed cost.
Walrus therefore hands every metadata write on SQLite to one thread, the
:class:`GroupCommitter`. It takes all the writes waiting in its queue (up to
``max_batch``), runs each in its own SAVEPOINT inside one ``BEGIN IMMEDIATE``
transaction, commits once, and only then answers them all: a write that
raised was rolled back alone and gets its exception; the others get their
results. The commit is durable when it returns (WAL mode with
``synchronous=FULL``: the WAL is fsynced at every commit), so nobody is
answered before their write is on disk; a batch pays for one fsync, however
many writes it holds. While one batch commits, the next queues up: the
busier Walrus is, the larger its batches. A lone writer still waits for
exactly one commit.

Writes run in submission order, each seeing those before it, so
compare-and-set and "the last writer wins" hold exactly as with one
transaction per write. If the batch itself fails (BEGIN, SAVEPOINT or COMMIT
raising: disk full, I/O error) it is rolled back and its writes run again,
one transaction each, so one write cannot fail its neighbours.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

log = logging.getLogger("eucalypt.walrus.commit")

T = TypeVar("T")
_Write = tuple[Callable[[Connection], Any], "Future[Any]"]


class GroupCommitter:
    """The single SQLite writer thread (see the module docstring)."""

    def __init__(self, engine: Engine, *, max_batch: int = 64,
                 on_commit: Callable[[], None] | None = None) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._on_commit = on_commit or (lambda: None)
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="walrus-committer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Connection], T]) -> Future[T]:
        """Queue ``fn(connection)``; the future resolves once its transaction committed."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the committer is closed")
            self._queue.put((fn, future))
        return future

    def close(self) -> None:
        """Commit what was submitted, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit([w for w in batch if w[1].set_running_or_notify_cancel()])
            if stop:
                return

    def _commit(self, batch: list[_Write]) -> None:
        if len(batch) > 1:
            try:
                outcomes = self._together(batch)
            except Exception:
                log.warning("group commit of %d writes failed; retrying them one by one",
                            len(batch), exc_info=True)
            else:
                self._on_commit()
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                return
        for fn, future in batch:
            try:
                value = self._alone(fn)
            except Exception as exc:
                future.set_exception(exc)
            else:
                self._on_commit()
                future.set_result(value)

    def _together(self, batch: list[_Write]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with self._engine.connect() as conn:
            # Transaction control straight on the DB-API cursor: SQLAlchemy's
            # begin_nested() costs more than the writes themselves.
            cursor = _raw_cursor(conn)
            cursor.execute("BEGIN IMMEDIATE")
            for fn, _ in batch:
                cursor.execute("SAVEPOINT walrus_write")
                try:
                    value = fn(conn)
                except Exception as exc:
                    cursor.execute("ROLLBACK TO walrus_write")
                    outcomes.append((False, exc))
                else:
                    outcomes.append((True, value))
                cursor.execute("RELEASE walrus_write")
            conn.commit()
        return outcomes

    def _alone(self, fn: Callable[[Connection], T]) -> T:
        with self._engine.connect() as conn:
            _raw_cursor(conn).execute("BEGIN IMMEDIATE")
            value = fn(conn)
            conn.commit()
        return value


def _raw_cursor(conn: Connection) -> Any:
    # Make SQLAlchemy's own (implicit) transaction start first, so that its
    # commit() and its rollback-on-close apply to the one we begin by hand.
    if conn.get_transaction() is None:
        conn.begin()
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    return dbapi.cursor()
