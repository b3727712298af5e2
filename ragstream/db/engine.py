"""The database engine; one per process, made from the settings."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine

from ragstream.settings import Settings


def make_engine(settings: Settings, *, pool_size: int = 5) -> Engine:
    return create_engine(
        settings.db_url,
        pool_size=pool_size,
        max_overflow=5,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )
