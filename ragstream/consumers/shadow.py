"""The embed stage for a model search does not use yet, and its runner (``ragstream reembed``)."""

from __future__ import annotations

from typing import ClassVar

from ragstream import topology
from ragstream.consumers.base import Incoming, StageOutput
from ragstream.consumers.embed import EmbedStage
from ragstream.consumers.runner import StageRunner
from ragstream.context import StageContext
from ragstream.db.engine import make_engine
from ragstream.db.migrate import require_head
from ragstream.embedding import Embedder
from ragstream.schemas.codec import make_codec
from ragstream.settings import Settings
from ragstream.state import DocumentStatus


class ShadowEmbedStage(EmbedStage):
    """The embed stage for a model search does not use yet: it writes vectors and nothing else.

    No status change and no ``ChunkEmbedded`` event: a document still in
    flight must be completed by the live model's vectors, not by these. A chunk
    the new model refuses goes to the reembed DLQ (``topology.REEMBED_DLQ``, not the
    live embed DLQ) and leaves its document as it is: the live model still serves
    it, and the coverage shows the gap.
    """

    started_status: ClassVar[DocumentStatus | None] = None  # type: ignore[assignment]
    fails_documents: ClassVar[bool] = False
    dlq_topic: ClassVar[str | None] = topology.REEMBED_DLQ
    start_state = "building"  # registered before its first batch: live workers write it too

    def _targets(self, ctx: StageContext) -> list[tuple[Embedder, bool]]:
        return [(self.embedder, False)]

    def process(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        out = super().process(batch, ctx)
        out.events.clear()
        out.transitions.clear()
        return out


def shadow_runner(settings: Settings, group: str) -> tuple[StageRunner, ShadowEmbedStage]:
    """A runner of the shadow stage in consumer group ``group``; refuses an old database."""
    engine = make_engine(settings)
    require_head(engine)
    ctx = StageContext(settings=settings, engine=engine, codec=make_codec(settings))
    stage = ShadowEmbedStage()
    return StageRunner(stage, settings, engine, ctx, group_id=group), stage
