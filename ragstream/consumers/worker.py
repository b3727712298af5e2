"""Building a stage runner from settings: what ``ragstream worker STAGE`` runs."""

from __future__ import annotations

from ragstream.consumers import stage_class
from ragstream.consumers.base import StageContext
from ragstream.consumers.runner import StageRunner
from ragstream.db.engine import make_engine
from ragstream.db.migrate import require_head
from ragstream.schemas.codec import make_codec
from ragstream.settings import Settings


def build_runner(
    settings: Settings, stage: str, *, health: bool = False, group_id: str | None = None
) -> StageRunner:
    """A runner for ``stage``; refuses a database that is not at the migration head."""
    engine = make_engine(settings)
    require_head(engine)
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    return StageRunner(
        stage_class(stage)(), settings, engine, ctx, health=health, group_id=group_id
    )
