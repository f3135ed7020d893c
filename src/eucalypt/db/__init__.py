"""Database plumbing shared by the stateful components (CLC, Walrus).

One :class:`Database` per component process, built in ``create_app(config)``.
SQLAlchemy runs synchronously inside worker threads (:meth:`Database.run`), so
request handlers stay async while SQLite and PostgreSQL drivers stay simple.
Schema changes go through each component's own Alembic scripts
(:func:`migrate`), with a version table per component so several components
may share one database.
"""

from __future__ import annotations

from eucalypt.db.engine import Database, make_engine
from eucalypt.db.migrate import migrate

__all__ = ["Database", "make_engine", "migrate"]
