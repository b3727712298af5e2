"""The one declaration of stages and topics; the CLI, the workers and the deploy files read it."""

from __future__ import annotations

from dataclasses import dataclass

UPLOADED = "documents.uploaded"
PARSED = "documents.parsed"
CHUNKED = "documents.chunked"
EMBEDDED = "documents.embedded"
STAGE_TOPICS = (UPLOADED, PARSED, CHUNKED, EMBEDDED)


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


@dataclass(frozen=True)
class StageSpec:
    name: str
    input_topic: str
    output_topic: str | None
    implementation: str
    """``module:Class`` of the stage, imported only when a worker runs it (embed loads a model)."""

    @property
    def group_id(self) -> str:
        return f"ragstream-{self.name}"


STAGES: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec("parse", UPLOADED, PARSED, "ragstream.consumers.parse:ParseStage"),
        StageSpec("chunk", PARSED, CHUNKED, "ragstream.consumers.chunk:ChunkStage"),
        StageSpec("embed", CHUNKED, EMBEDDED, "ragstream.consumers.embed:EmbedStage"),
        StageSpec("finalize", EMBEDDED, None, "ragstream.consumers.finalize:FinalizeStage"),
    )
}
STAGE_NAMES = tuple(STAGES)

# Every topic keeps its records (retention.ms=-1): replay from earliest and
# back-filling a new embedding model both read the whole history. Deleting a
# document cannot take its records out, so their text is sealed with its own key,
# deleted with it (ragstream/crypto.py): its copies here are unreadable at once.
TOPIC_CONFIG = {"retention.ms": "-1", "cleanup.policy": "delete"}


ALERTS = "pipeline.alerts"
"""The monitor's alerts (Avro ``PipelineAlert``), keyed by alert id."""


REEMBED_DLQ = dlq(f"{CHUNKED}.reembed")
"""Dead letters of ``ragstream reembed``'s shadow builds, apart from the live embed DLQ:
a chunk the model being built refuses is no failure of the pipeline users run on."""


def all_topics() -> list[str]:
    return [*STAGE_TOPICS, *(dlq(t) for t in STAGE_TOPICS), REEMBED_DLQ, ALERTS]
