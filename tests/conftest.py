"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL URL of scripts/test.sh; in CI its absence is a failure, not a skip."""
    url = os.environ.get("EUCALYPT_TEST_PG_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("EUCALYPT_TEST_PG_URL is not set: run the suite through scripts/test.sh")
        pytest.skip("no PostgreSQL (set EUCALYPT_TEST_PG_URL or use scripts/test.sh)")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    import uuid

    import sqlalchemy as sa

    base = request.getfixturevalue("pg_url")
    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = base.rsplit("/", 1)[0] + "/" + name
    yield url
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()
