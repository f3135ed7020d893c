"""Group commit (``services/commit.py``) and the durability of SQLite commits."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection

from eucalypt.auth import StaticCredentialStore
from eucalypt.config import Config, WalrusConfig
from eucalypt.db import Database
from eucalypt.walrus.app import create_app
from eucalypt.walrus.services.commit import GroupCommitter


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    db = Database(f"sqlite:///{tmp_path / 'commit.db'}")
    with db.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"))
    yield db.engine
    db.dispose()


def _rows(engine: Any) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT k, v FROM t")).all())


def test_waiting_writes_share_one_commit_and_fail_alone(engine: Any) -> None:
    commits: list[int] = []
    committer = GroupCommitter(engine, on_commit=lambda: commits.append(1))
    gate, running = threading.Event(), threading.Event()

    def blocker(conn: Connection) -> str:
        running.set()
        gate.wait(10)  # holds the committer so that the writes below queue up
        conn.execute(sa.text("INSERT INTO t VALUES ('first', 0)"))
        return "first"

    def put(key: str, value: int) -> Any:
        def work(conn: Connection) -> str:
            conn.execute(sa.text("INSERT INTO t VALUES (:k, :v) ON CONFLICT (k) "
                                 "DO UPDATE SET v = :v"), {"k": key, "v": value})
            return f"{key}={value}"
        return work

    def failing(conn: Connection) -> None:
        conn.execute(sa.text("INSERT INTO t VALUES ('doomed', 1)"))
        raise ValueError("this write fails after writing")

    try:
        first = committer.submit(blocker)
        assert running.wait(10)
        futures: list[Future[Any]] = []
        for i in range(30):
            futures.append(committer.submit(put(f"k{i % 10}", i)))  # later writes win
            if i == 15:
                futures.append(committer.submit(failing))
        gate.set()
        assert first.result(10) == "first"
        results = [f.exception(10) or f.result() for f in futures]
    finally:
        committer.close()
    assert isinstance(results[16], ValueError)
    assert [r for r in results if not isinstance(r, Exception)] == \
        [f"k{i % 10}={i}" for i in range(30)]
    # The failed write was rolled back alone; its neighbours committed, in order.
    assert _rows(engine) == {"first": 0, **{f"k{i}": 20 + i for i in range(10)}}
    assert len(commits) == 2  # the blocker alone, then all 31 queued writes together


def test_concurrent_writers_each_see_the_last_committed_value(engine: Any) -> None:
    """Compare-and-set through the committer: no lost update among 8 threads."""
    committer = GroupCommitter(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES ('n', 0)"))

    def increment(conn: Connection) -> int:
        value = conn.execute(sa.text("SELECT v FROM t WHERE k = 'n'")).scalar_one()
        conn.execute(sa.text("UPDATE t SET v = :v WHERE k = 'n' AND v = :old"),
                     {"v": value + 1, "old": value})
        return int(value + 1)

    try:
        with ThreadPoolExecutor(8) as pool:
            seen = list(pool.map(lambda _: committer.submit(increment).result(10), range(200)))
    finally:
        committer.close()
    assert sorted(seen) == list(range(1, 201))  # every increment saw all those before it
    assert _rows(engine) == {"n": 200}


def test_sqlite_commits_are_synced(tmp_path: Path) -> None:
    """Walrus answers a write only once it is on disk: SQLite must fsync every commit."""
    config = Config(data_dir=tmp_path, walrus=WalrusConfig(
        database_url=f"sqlite:///{tmp_path / 'walrus.db'}"))
    app = create_app(config, credentials=StaticCredentialStore([]))
    try:
        with app.ctx.db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert app.ctx.committer is not None
    finally:
        app.close()
