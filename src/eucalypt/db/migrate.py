"""Apply a component's Alembic migrations programmatically."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine


def migrate(engine: Engine, script_location: Path, version_table: str) -> None:
    """Upgrade the schema of ``engine`` to the head of ``script_location``.

    ``version_table`` names the component's own Alembic version table, so the
    CLC and Walrus can share one database. The component's ``env.py`` reads
    the connection from ``config.attributes["connection"]`` and the table
    name from ``config.attributes["version_table"]``.
    """
    config = Config()
    config.set_main_option("script_location", str(script_location))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["version_table"] = version_table
        command.upgrade(config, "head")
