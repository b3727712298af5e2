"""Alembic, driven from code: ``ragstream migrate`` and the start-up check."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from ragstream.errors import SchemaNotAtHead


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("ragstream.db").joinpath("migrations"))
    )
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision(url: str) -> str | None:
    """The head revision(s), comma-joined when branches are not merged yet."""
    heads = sorted(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    return ",".join(heads) or None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        heads = sorted(MigrationContext.configure(conn).get_current_heads())
    return ",".join(heads) or None


def require_head(engine: Engine) -> None:
    """Workers and the API refuse to run on a schema they were not written for."""
    url = engine.url.render_as_string(hide_password=False)
    current, head = current_revision(engine), head_revision(url)
    if current != head:
        raise SchemaNotAtHead(
            f"database schema is at revision {current or 'none'}, this ragstream needs {head}: "
            "run `ragstream migrate`"
        )
