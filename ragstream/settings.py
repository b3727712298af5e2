"""The one settings class. Built once in ``main()`` and passed down.

Every field reads ``RAGSTREAM_<FIELD>`` from the environment. Units are in the
names (``_s`` seconds, ``_mb`` mebibytes, ``_bytes`` bytes).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

EmbedderName = Literal["hash", "minilm", "openai"]


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "ragstream"


class Settings(BaseSettings):
    """All configuration of ragstream; see each field's description."""

    model_config = SettingsConfigDict(env_prefix="RAGSTREAM_", extra="ignore")

    # --- where things are -------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None, description="Kafka bootstrap servers; unset means the local devstack's address."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL (postgresql+psycopg://...); unset means the local devstack's.",
    )
    schema_registry_url: str | None = Field(
        None,
        description="Confluent Schema Registry URL; unset means Avro single-object encoding.",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the devstack keeps Kafka and PostgreSQL data and its state file.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "ragstream",
        description="Where downloaded Kafka jars are cached.",
    )

    # --- topics -----------------------------------------------------------
    topic_prefix: str = Field("", description="Prefix for every topic name (e.g. 'tenant1.').")
    partitions: int = Field(6, ge=1, description="Partitions per stage topic when creating topics.")
    replication_factor: int = Field(1, ge=1, description="Replication factor for created topics.")

    # --- identity ---------------------------------------------------------
    tenant: str = Field("default", description="Tenant used by the CLI when submitting documents.")

    # --- stage runner -----------------------------------------------------
    max_batch_size: int = Field(64, ge=1, description="Most messages a stage handles in one batch.")
    max_batch_wait_s: float = Field(
        0.2, gt=0, description="Longest wait to fill a batch before processing it."
    )
    poll_timeout_s: float = Field(0.5, gt=0, description="Timeout of one consumer poll.")
    max_poll_interval_s: int = Field(
        300, ge=10, description="Kafka max.poll.interval.ms, in seconds."
    )
    session_timeout_s: int = Field(30, ge=6, description="Kafka session.timeout.ms, in seconds.")
    retry_backoff_initial_s: float = Field(
        0.5, gt=0, description="First backoff after a retryable error."
    )
    retry_backoff_max_s: float = Field(30.0, gt=0, description="Longest backoff between retries.")
    dlq_max_attempts: int = Field(
        3, ge=1, description="DLQ replays of one message before it stays in the DLQ."
    )
    health_port: int = Field(
        0, ge=0, description="Worker liveness/readiness/metrics HTTP port; 0 picks a free one."
    )
    liveness_max_age_s: float = Field(
        60.0, gt=0, description="Loop heartbeat older than this makes the worker not live."
    )

    # --- parsing ----------------------------------------------------------
    parser_timeout_s: float = Field(
        60.0, gt=0, description="Wall-clock limit for parsing one document."
    )
    parser_memory_mb: int = Field(
        1024, ge=256, description="Address-space limit of the parser subprocess."
    )
    max_upload_bytes: int = Field(
        100 * 1024 * 1024, ge=1, description="Largest accepted document, in bytes."
    )

    # --- chunking ---------------------------------------------------------
    chunk_target_tokens: int = Field(
        256, ge=16, description="Target chunk size in the embedding model's tokens."
    )
    chunk_overlap_tokens: int = Field(32, ge=0, description="Tokens shared by adjacent chunks.")

    # --- embedding --------------------------------------------------------
    embedder: EmbedderName = Field(
        "minilm", description="Embedding backend: hash (tests), minilm (default), openai."
    )
    embed_batch_size: int = Field(16, ge=1, description="Texts per call to the embedding model.")
    hash_dimensions: int = Field(384, ge=8, description="Vector size of the hash embedder.")
    openai_base_url: str = Field(
        "https://api.openai.com/v1", description="Base URL of an OpenAI-compatible endpoint."
    )
    openai_model: str = Field(
        "text-embedding-3-small", description="Model name sent to the OpenAI-compatible endpoint."
    )
    openai_api_key: SecretStr | None = Field(
        None, description="API key for the OpenAI-compatible endpoint."
    )
    openai_dimensions: int = Field(
        384, ge=8, description="Vector size returned by the OpenAI-compatible model."
    )
    openai_max_input_tokens: int = Field(
        8191, ge=16, description="Input limit of the OpenAI-compatible model, in its tokens."
    )
    openai_timeout_s: float = Field(30.0, gt=0, description="HTTP timeout of one embedding call.")

    @cached_property
    def state_file(self) -> Path:
        """The devstack writes the addresses it started here."""
        return self.data_dir / "devstack.json"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def bootstrap(self) -> str:
        if self.kafka_bootstrap is None:
            raise ValueError("no Kafka address resolved; call devstack.resolve_addresses first")
        return self.kafka_bootstrap

    @property
    def db_url(self) -> str:
        if self.database_url is None:
            raise ValueError("no database address resolved; call devstack.resolve_addresses first")
        return self.database_url
