"""Stage workers: the runner and one module per stage."""

from __future__ import annotations

from ragstream.consumers.base import Stage


def stage_class(name: str) -> type[Stage]:
    """The stage called ``name`` (imported lazily: the embed stage may load a model)."""
    if name == "parse":
        from ragstream.consumers.parse import ParseStage

        return ParseStage
    if name == "chunk":
        from ragstream.consumers.chunk import ChunkStage

        return ChunkStage
    if name == "embed":
        from ragstream.consumers.embed import EmbedStage

        return EmbedStage
    if name == "finalize":
        from ragstream.consumers.finalize import FinalizeStage

        return FinalizeStage
    raise ValueError(f"unknown stage {name!r}")
