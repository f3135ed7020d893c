"""The listing query itself: range scans that jump over common prefixes (no O(n) per prefix)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, insert

from eucalypt.db import Database, migrate
from eucalypt.walrus.app import MIGRATIONS, VERSION_TABLE
from eucalypt.walrus.models import Bucket, Object
from eucalypt.walrus.services.listing import ListQuery, list_sync


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'listing.db'}")
    migrate(database.engine, MIGRATIONS, VERSION_TABLE)
    yield database
    database.dispose()


def fill(db: Database, keys: list[str]) -> int:
    def work(session):  # type: ignore[no-untyped-def]
        bucket = Bucket(name="listing", owner_id="1", owner_name="one", location="r")
        session.add(bucket)
        session.flush()
        session.execute(insert(Object), [
            {"bucket_id": bucket.id, "key": k, "generation": "g", "segments": [], "size": 0,
             "etag": "e", "owner_id": "1", "owner_name": "one", "headers": {},
             "storage_class": "STANDARD", "acl": "private"} for k in keys])
        return bucket.id

    return db.run_sync(work)


def count_queries(db: Database, query: ListQuery, bucket_id: int) -> tuple[int, list[str]]:
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        page = db.run_sync(lambda s: list_sync(s, bucket_id, query))
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    return len(statements), page.prefixes + [e.key for e in page.contents]


def test_delimiter_skips_large_prefixes(db: Database) -> None:
    keys = [f"big/{i:06d}" for i in range(20_000)] + [f"huge/{i:06d}" for i in range(20_000)]
    keys += ["a", "m/1", "z"]
    bucket_id = fill(db, keys)
    queries, items = count_queries(db, ListQuery(delimiter="/"), bucket_id)
    assert items == ["big/", "huge/", "m/", "a", "z"]
    # One batch per large prefix and a jump past it, not 40,000 rows in 200-row batches.
    assert queries <= 6, queries


def test_prefix_is_a_range(db: Database) -> None:
    keys = [f"x/{i:05d}" for i in range(5000)] + ["y/1", "y/2"]
    bucket_id = fill(db, keys)
    queries, items = count_queries(db, ListQuery(prefix="y/"), bucket_id)
    assert items == ["y/1", "y/2"] and queries == 1


def test_marker_that_is_a_common_prefix(db: Database) -> None:
    bucket_id = fill(db, ["a/1", "a/2", "b/1", "c"])
    page = db.run_sync(lambda s: list_sync(s, bucket_id, ListQuery(delimiter="/", after="a/")))
    assert page.prefixes == ["b/"] and [e.key for e in page.contents] == ["c"]
    page = db.run_sync(lambda s: list_sync(s, bucket_id, ListQuery(after="a/1")))
    assert [e.key for e in page.contents] == ["a/2", "b/1", "c"]
