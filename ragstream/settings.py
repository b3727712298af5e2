"""The one settings class. Built once in ``main()`` and passed down.

Every field reads ``RAGSTREAM_<FIELD>`` from the environment. Units are in the
names (``_s`` seconds, ``_mb`` mebibytes, ``_bytes`` bytes).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EmbedderName = Literal["hash", "minilm", "openai", "static"]


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "ragstream"


class Settings(BaseSettings):
    """All configuration of ragstream; see each field's description."""

    # Frozen: built once at start and passed down; a variant is a ``model_copy(update=...)``.
    model_config = SettingsConfigDict(env_prefix="RAGSTREAM_", extra="ignore", frozen=True)

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
        description="Where downloaded Kafka jars and built ONNX models are cached.",
    )

    # --- topics -----------------------------------------------------------
    topic_prefix: str = Field("", description="Prefix for every topic name (e.g. 'tenant1.').")
    partitions: int = Field(6, ge=1, description="Partitions per stage topic when creating topics.")
    replication_factor: int = Field(
        1,
        ge=1,
        description="Replication factor for created topics; unset: 3 with three or more "
        "devstack brokers, else 1.",
    )
    min_insync_replicas: int = Field(
        1,
        ge=1,
        description="min.insync.replicas of created topics: an acks=all write is refused "
        "(NOT_ENOUGH_REPLICAS) while fewer replicas are in sync; unset: 2 with a replication "
        "factor of 3 or more, else 1.",
    )
    devstack_brokers: int = Field(
        1,
        ge=1,
        description="Kafka brokers of the devstack: 1 runs one KRaft node (broker and "
        "controller); more runs a KRaft controller and this many brokers, topics (internal "
        "ones too) replicated 3 ways with 2 in sync.",
    )
    devstack_s3: bool = Field(
        False,
        description="Also run an S3-compatible server (S3Proxy, filesystem backend) in the "
        "devstack; `ragstream sync s3://...` then uses it unless RAGSTREAM_S3_ENDPOINT_URL is set. "
        "Off by default: its jar is 55 MB and its JVM a few hundred MB.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint (e.g. http://127.0.0.1:9000); unset: AWS, or the "
        "devstack's S3Proxy when it runs.",
    )
    s3_access_key_id: str | None = Field(
        None, description="S3 access key; unset: AWS_ACCESS_KEY_ID and boto3's usual chain."
    )
    s3_secret_access_key: SecretStr | None = Field(
        None, description="S3 secret key; unset: AWS_SECRET_ACCESS_KEY and boto3's usual chain."
    )
    s3_region: str | None = Field(None, description="S3 region; unset: AWS_DEFAULT_REGION.")
    s3_addressing_style: Literal["path", "virtual", "auto"] = Field(
        "path",
        description="S3 addressing: path (endpoint/bucket/key, what S3Proxy and most "
        "S3-compatible servers want) or virtual (bucket.endpoint/key, AWS's default).",
    )

    blob_store: str = Field(
        "postgres",
        description="Where uploaded documents' bytes are kept: postgres (rows of the "
        "database) or s3://bucket/prefix (objects of an S3-compatible store, reached with "
        "the s3_* settings; the bucket must exist). Parsed text stays in PostgreSQL.",
    )
    blob_sweep_after_s: float = Field(
        3600.0,
        gt=0,
        description="An object of the S3 blob store that no upload has named for this long "
        "is deleted by the monitor's housekeeping (deleting a document removes its row; "
        "its bytes go at the next sweep).",
    )
    external_url_allowlist: str = Field(
        "",
        description="Comma-separated URL prefixes (e.g. https://docs.example.com/public/) "
        "that upload events from other services may name as their object; empty: no http(s) "
        "object is read. Redirects are not followed.",
    )

    # --- identity ---------------------------------------------------------
    tenant: str = Field("default", description="Tenant used by the CLI when submitting documents.")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of workers, the API and the monitor (DEBUG logs each batch)."
    )

    # --- stage runner -----------------------------------------------------
    max_batch_size: int = Field(64, ge=1, description="Most messages a stage handles in one batch.")
    max_batch_wait_s: float = Field(
        0.0,
        ge=0,
        description="Linger to fill a batch once its first message is in (0: take what is "
        "already fetched; under load, batches fill while the previous one is processed).",
    )
    poll_timeout_s: float = Field(0.5, gt=0, description="Timeout of one consumer poll.")
    max_poll_interval_s: int = Field(
        300, ge=10, description="Kafka max.poll.interval.ms, in seconds."
    )
    session_timeout_s: int = Field(30, ge=6, description="Kafka session.timeout.ms, in seconds.")
    fetch_wait_max_ms: int = Field(
        500,
        ge=0,
        description="Kafka fetch.wait.max.ms: how long the broker holds a fetch with nothing "
        "new (new data answers it at once). Short costs the broker CPU for every idle "
        "consumer: 50 ms took it from 3% to 7% of a core with five.",
    )
    consumer_stall_s: float = Field(
        30.0,
        gt=0,
        description="A consumer that reads nothing this long while its partitions hold unread "
        "messages is rebuilt (a client that stopped fetching, as seen after broker restarts).",
    )
    retry_backoff_initial_s: float = Field(
        0.5, gt=0, description="First backoff after a retryable error."
    )
    retry_backoff_max_s: float = Field(30.0, gt=0, description="Longest backoff between retries.")
    max_batch_attempts: int = Field(
        8,
        ge=2,
        description="Attempts at a batch failing with a retryable (or unexpected) error "
        "while its dependencies answer (database, topics, embedder); then its messages are "
        "tried one by one and one that still fails goes to the DLQ. While a dependency is "
        "down, retries never stop.",
    )
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
    pdf_part_pages: int = Field(
        32,
        ge=1,
        description="A PDF with more pages is parsed as parts of this many pages, in parallel "
        "across the parse workers, then merged.",
    )
    pdf_max_pages: int = Field(
        5000,
        ge=1,
        description="A PDF with more pages fails (stage parse, the page count in its error) "
        "instead of being split into parts.",
    )
    ocr_languages: str = Field(
        "eng+deu+fra+spa+rus",
        pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$",
        description="Tesseract languages (+-joined) for scans and images; read by the parser "
        "sandbox from RAGSTREAM_OCR_LANGUAGES itself, the installed ones are used.",
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
        "minilm",
        description="Embedding backend: hash (tests), minilm (default), openai, or static "
        "(all-MiniLM-L6-v2 distilled into a static model by `ragstream distill-static`: "
        "for bulk work, far faster, less precise).",
    )
    static_model_dir: Path | None = Field(
        None,
        description="The static model's folder (model2vec format); unset: "
        "CACHE_DIR/static/all-MiniLM-L6-v2-static, where `ragstream distill-static` writes.",
    )
    embed_batch_size: int = Field(16, ge=1, description="Texts per call to the embedding model.")
    embed_threads: int = Field(
        0,
        ge=0,
        description="CPU threads one embed worker gives a local model (torch or ONNX Runtime "
        "intra-op); 0 = the runtime's default, one per core. Several embed workers on one "
        "machine should share the cores (cores / workers) rather than each take them all.",
    )
    embed_runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="What runs the minilm model: onnx (ONNX Runtime, no torch needed), torch "
        "(sentence-transformers), or auto: onnx when onnxruntime is installed, else torch. "
        "Both give the same vectors under the same model name and version.",
    )
    embed_precision: Literal["auto", "fp32", "int8"] = Field(
        "auto",
        description="The minilm graph ONNX Runtime runs: int8 (dynamic per-channel "
        "quantization: about 2x the fp32 speed on CPU, vectors at mean cosine 0.99 to fp32, "
        "the same recall@10 on the bench's retrieval set; model name all-MiniLM-L6-v2-int8, "
        "spec minilm-int8), fp32 (all-MiniLM-L6-v2, spec minilm, as torch makes it), or "
        "auto: int8 on ONNX Runtime, fp32 on torch.",
    )
    embedding_cache: bool = Field(
        True,
        description="Reuse the vector of a text the same model version already embedded "
        "(content-addressed cache in PostgreSQL).",
    )
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
    openai_tokens_per_minute: int = Field(
        0,
        ge=0,
        description="Token budget a minute of the OpenAI-compatible endpoint (its TPM rate "
        "limit, shared by the embed workers: give each its share): requests are paced to stay "
        "within it, counted with the embedder's tokenizer; 0: no pacing (a 429's Retry-After "
        "is still honoured).",
    )

    # --- HTTP API ---------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    api_port: int = Field(8000, ge=0, le=65535, description="Port the HTTP API listens on.")
    api_keys: SecretStr | None = Field(
        None,
        description="Bearer API keys and their tenants, 'key:tenant,key:tenant'; unset means "
        "the key `ragstream up` generated in DATA_DIR.",
    )
    api_max_files: int = Field(20, ge=1, description="Most files accepted in one upload request.")
    api_publish_timeout_s: float = Field(
        10.0, gt=0, description="How long an upload waits for the broker's ack before a 503."
    )
    api_retry_after_s: int = Field(
        5, ge=1, description="Retry-After sent with a 503 when the broker or database is down."
    )
    public_base_url: str | None = Field(
        None,
        description="Base URL at which callers (LlamaParse webhooks) reach the API; unset means "
        "http://API_HOST:API_PORT.",
    )

    # --- LlamaParse -------------------------------------------------------
    default_parser: Literal["local", "llamaparse"] = Field(
        "local", description="Parser used when an upload names none: local or llamaparse."
    )
    llamaparse_base_url: str = Field(
        "https://api.cloud.llamaindex.ai", description="Base URL of the LlamaParse API."
    )
    llamaparse_api_key: SecretStr | None = Field(None, description="API key for LlamaParse.")
    llamaparse_timeout_s: float = Field(
        30.0, gt=0, description="HTTP timeout of one call to the LlamaParse API."
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Shared secret of signed webhooks (Standard Webhooks, 'whsec_<base64>' or "
        "plain text); unset refuses every webhook.",
    )
    webhook_tolerance_s: int = Field(
        300, ge=1, description="Largest age (either way) of a webhook's timestamp."
    )
    webhook_max_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest webhook body read before its signature is checked; a longer one "
        "is answered 413 unread (a job whose callback is refused is completed by the poller).",
    )
    llamaparse_callback_timeout_s: float = Field(
        900.0, gt=0, description="A LlamaParse job without a result after this long is retried."
    )
    llamaparse_max_attempts: int = Field(
        2, ge=1, description="LlamaParse submissions of one document before it is marked failed."
    )
    llamaparse_poll_interval_s: float = Field(
        30.0, gt=0, description="How often the poller asks LlamaParse about overdue jobs."
    )

    # --- monitor, tracing -------------------------------------------------
    sla_parse_s: float = Field(
        300.0, gt=0, description="Longest a document may spend in parse (queue and work)."
    )
    sla_chunk_s: float = Field(
        300.0, gt=0, description="Longest a document may spend in chunk (queue and work)."
    )
    sla_embed_s: float = Field(
        900.0, gt=0, description="Longest a document may spend in embed (queue and work)."
    )
    sla_finalize_s: float = Field(
        120.0, gt=0, description="Longest from the last vector to the document being complete."
    )
    stall_after_s: float = Field(
        30.0,
        gt=0,
        description="A stage with lag whose committed offsets have not moved for this long "
        "is stalled (workers down, stopped or hung).",
    )
    monitor_interval_s: float = Field(
        5.0, gt=0, description="How often the monitor checks SLAs, consumer groups and lag."
    )
    throughput_window_s: int = Field(
        60, ge=1, description="Size of the monitor's tumbling throughput windows."
    )
    clock_skew_s: float = Field(
        5.0, ge=0, description="Clock difference between hosts tolerated in timestamp checks."
    )
    max_plausible_bytes_per_s: float = Field(
        2e9,
        gt=0,
        description="A stage that handled a document faster than this, for its size, is an "
        "impossible timestamp.",
    )
    event_alert_open_s: float = Field(
        3600.0,
        gt=0,
        description="How long a one-off alert (DLQ message, impossible timestamp) stays open.",
    )
    monitor_retention_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="Resolved alerts and finished documents' rows older than this are pruned "
        "from the monitor's tables (open alerts never are).",
    )
    alert_webhook_url: SecretStr | None = Field(
        None, description="Where the monitor POSTs each alert as it opens and resolves."
    )
    alert_webhook_format: Literal["alertmanager", "slack"] = Field(
        "alertmanager",
        description="Body of those POSTs: Alertmanager's webhook JSON or a Slack incoming webhook.",
    )
    alert_webhook_attempts: int = Field(
        5, ge=1, description="Tries of one alert webhook POST, with backoff, before it is dropped."
    )
    monitor_metrics_port: int = Field(
        9108, ge=0, le=65535, description="The monitor's Prometheus /metrics port; 0 picks one."
    )
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); "
        "unset exports no traces.",
    )

    @model_validator(mode="after")
    def _replication_from_brokers(self) -> Settings:
        """Unset replication settings follow the broker count (not marked as set: a copy
        with another broker count recomputes them, see ``devstack.with_brokers``)."""
        if "replication_factor" not in self.model_fields_set:
            object.__setattr__(self, "replication_factor", min(3, self.devstack_brokers))
        if "min_insync_replicas" not in self.model_fields_set:
            min_isr = 2 if self.replication_factor >= 3 else 1
            object.__setattr__(self, "min_insync_replicas", min_isr)
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas={self.min_insync_replicas} exceeds "
                f"replication_factor={self.replication_factor}: no write could ever succeed"
            )
        return self

    @model_validator(mode="after")
    def _invariants(self) -> Settings:
        """Relations between settings that librdkafka, the backoff and the chunker need:
        refused at start with the fix, never discovered at the first rebalance."""
        problems = []
        if self.session_timeout_s > self.max_poll_interval_s:
            problems.append(
                f"session_timeout_s={self.session_timeout_s} exceeds max_poll_interval_s="
                f"{self.max_poll_interval_s} (librdkafka refuses max.poll.interval.ms below "
                "session.timeout.ms): raise RAGSTREAM_MAX_POLL_INTERVAL_S"
            )
        if self.retry_backoff_initial_s > self.retry_backoff_max_s:
            problems.append(
                f"retry_backoff_initial_s={self.retry_backoff_initial_s} exceeds "
                f"retry_backoff_max_s={self.retry_backoff_max_s}"
            )
        if self.chunk_overlap_tokens >= self.chunk_target_tokens:
            problems.append(
                f"chunk_overlap_tokens={self.chunk_overlap_tokens} must be below "
                f"chunk_target_tokens={self.chunk_target_tokens}"
            )
        if self.blob_store != "postgres" and not (
            self.blob_store.startswith("s3://") and len(self.blob_store) > len("s3://")
        ):
            problems.append(
                f"blob_store={self.blob_store!r} is neither postgres nor s3://bucket/prefix"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

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
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def public_url(self) -> str:
        """Where outside callers (webhooks) reach the API."""
        return (self.public_base_url or self.api_url).rstrip("/")

    @property
    def db_url(self) -> str:
        if self.database_url is None:
            raise ValueError("no database address resolved; call devstack.resolve_addresses first")
        return self.database_url
