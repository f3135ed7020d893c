"""The body of every component's Alembic ``env.py``.

A component's ``migrations/env.py`` is two lines::

    from eucalypt.db.alembic_env import run_migrations
    from eucalypt.clc.models import Base
    run_migrations(Base.metadata)
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData


def run_migrations(metadata: MetaData) -> None:
    config = context.config
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=config.attributes.get("version_table", "alembic_version"),
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
