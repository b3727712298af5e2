"""The limits a pipeline run is compared with, measured on the same machine and inputs.

Each limit is one part of the work alone, in one process, with nothing else
competing: the parsers over the corpus, the chunker over their output, the
embedding model over the chunks (at several batch sizes), and the broker
carrying as many messages of the same sizes as the pipeline sends.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from ragstream import ids
from ragstream.benchmark.corpus import Doc
from ragstream.chunking import CHUNKER_VERSION, ChunkerConfig, chunk_document
from ragstream.documents import ParsedDocument
from ragstream.embedding.budget import token_budget
from ragstream.kafka import consumer_config, create_topics, producer_config
from ragstream.parsing import parse_bytes
from ragstream.schemas.codec import make_codec
from ragstream.schemas.events import ChunkCreated, ChunkEmbedded, DocumentParsed, DocumentUploaded
from ragstream.settings import Settings

BATCH_SIZES = (1, 4, 8, 10, 16, 32, 64)
"""Tried by the model limit; the best one is also what the pipeline is run with."""


@dataclass(frozen=True)
class Prepared:
    """The corpus parsed and chunked once, in this process: what every limit works on."""

    parsed: list[ParsedDocument]
    chunks: list[list[str]]  # chunk texts, per document
    parse_s: float
    chunk_s: float

    @property
    def texts(self) -> list[str]:
        return [t for doc in self.chunks for t in doc]


def prepare(settings: Settings, docs: Sequence[Doc]) -> Prepared:
    """The parse and chunk limits: parsers alone, then the chunker alone, over the corpus."""
    started = time.perf_counter()
    parsed = [parse_bytes(doc.data, doc.name) for doc in docs]
    parse_s = time.perf_counter() - started
    budget = token_budget(settings)
    config = ChunkerConfig.from_settings(settings, budget.max_input_tokens)
    started = time.perf_counter()
    chunks = [
        [
            c.text
            for c in chunk_document(
                p, config, budget.count_tokens, count_tokens_batch=budget.count_tokens_batch
            )
        ]
        for p in parsed
    ]
    chunk_s = time.perf_counter() - started
    return Prepared(parsed, chunks, parse_s, chunk_s)


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


# --- the model -------------------------------------------------------------------------------


def runtime(settings: Settings) -> str:
    """What runs the model: ``torch_fp32``, ``onnx_fp32``, ``onnx_int8``, or the embedder."""
    if settings.embedder != "minilm":
        return settings.embedder
    from ragstream.embedding.onnx_runtime import minilm_precision, minilm_runtime

    if minilm_runtime(settings.embed_runtime) == "torch":
        return "torch_fp32"
    return f"onnx_{minilm_precision(settings.embed_precision)}"


RUNTIMES: dict[str, dict[str, str]] = {
    "torch_fp32": {"embed_runtime": "torch", "embed_precision": "fp32"},
    "onnx_fp32": {"embed_runtime": "onnx", "embed_precision": "fp32"},
    "onnx_int8": {"embed_runtime": "onnx", "embed_precision": "int8"},
}
"""The local runtimes of minilm the bench measures side by side."""


def torch_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "sentence_transformers"))


def _encoder(settings: Settings) -> Callable[[Sequence[str], int], None]:
    """Raw encoding with the pipeline's model, without the pipeline: (texts, batch size).

    torch is sentence-transformers' own ``encode``, the bar the pipeline is held to;
    ONNX Runtime is the embedder the workers run.
    """
    if runtime(settings) == "torch_fp32":
        import os

        from ragstream.embedding.minilm import model_directory

        os.environ["HF_HUB_OFFLINE"] = "1"
        from sentence_transformers import SentenceTransformer

        model: Any = SentenceTransformer(str(model_directory()), device="cpu")

        def encode(texts: Sequence[str], batch_size: int) -> None:
            model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

        return encode
    from ragstream.embedding import make_embedder

    embedder = make_embedder(settings)

    def encode_with(texts: Sequence[str], batch_size: int) -> None:
        for i in range(0, len(texts), batch_size):
            embedder.embed(texts[i : i + batch_size])

    return encode_with


SWEEP_ROUNDS = 2


def model_limit(
    settings: Settings,
    texts: Sequence[str],
    *,
    sample: int = 128,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Chunks/s of the model alone: every batch size on a sample, the best on every chunk.

    A local model is first tried with one thread against torch's default (one
    per core) and swept with the faster: on a busy machine, threads that wait
    for one another at every layer can make two slower than one.
    """
    encode = _encoder(settings)
    if not texts:
        return {"chunks_per_s": 0.0, "best_batch_size": batch_sizes[0], "by_batch_size": {}}
    step = max(1, len(texts) // sample)
    sampled = list(texts[::step])[:sample]
    encode(sampled[:8], 8)  # warm up: first calls allocate and tune
    threads = _threads()
    by_threads: dict[int, float] = {}
    if threads is not None:
        default = threads.get()
        probe = sampled[: max(1, len(sampled) // 4)]
        for count in sorted({default, 1}, reverse=True):
            threads.set(count)
            started = time.perf_counter()
            encode(probe, 16)
            by_threads[count] = _rate(len(probe), time.perf_counter() - started)
            log(f"  model alone, batch  16, {count} thread(s): {by_threads[count]:8.1f} chunks/s")
        threads.set(max(by_threads, key=lambda t: by_threads[t]))
    by_size: dict[int, float] = {}
    for _ in range(SWEEP_ROUNDS):  # a moment of load must not pick the batch size
        for size in batch_sizes:
            started = time.perf_counter()
            encode(sampled, size)
            rate = _rate(len(sampled), time.perf_counter() - started)
            by_size[size] = max(by_size.get(size, 0.0), rate)
            log(f"  model alone, batch {size:>3}: {rate:8.1f} chunks/s")
    best = max(by_size, key=lambda s: by_size[s])
    started = time.perf_counter()
    encode(texts, best)
    full = _rate(len(texts), time.perf_counter() - started)
    best_threads = threads.get() if threads is not None else None
    log(
        f"  model alone, batch {best:>3}, {best_threads or 'default'} thread(s), "
        f"on all {len(texts)} chunks: {full:.1f} chunks/s"
    )
    if threads is not None:
        threads.set(default)  # for whatever runs next in this process
    return {
        "chunks_per_s": full,
        "best_batch_size": best,
        "best_threads": best_threads,
        "sample_chunks": len(sampled),
        "by_batch_size": {str(k): round(v, 2) for k, v in by_size.items()},
        "by_threads": {str(k): round(v, 2) for k, v in by_threads.items()},
    }


def runtime_limits(
    settings: Settings, texts: Sequence[str], batch_size: int, *, rounds: int = 2
) -> dict[str, float | None]:
    """Chunks/s of each local runtime of minilm on the same texts, alternated, best of rounds.

    torch is measured only where it is installed (null otherwise).
    """
    rates: dict[str, float | None] = {name: None for name in RUNTIMES}
    names = [n for n in RUNTIMES if n != "torch_fp32" or torch_installed()]
    for _ in range(rounds):
        for name in names:
            variant = settings.model_copy(update=RUNTIMES[name])
            rate = model_rate(variant, texts, batch_size, None)
            rates[name] = max(rates[name] or 0.0, rate)
    return rates


def model_rate(
    settings: Settings, texts: Sequence[str], batch_size: int, threads: int | None
) -> float:
    """Chunks/s of the model alone on ``texts``, at a batch size and thread count found before."""
    encode = _encoder(settings)
    if not texts:
        return 0.0
    control = _threads()
    default = control.get() if control is not None else 0
    if control is not None and threads:
        control.set(threads)
    try:
        encode(texts[:8], 8)
        started = time.perf_counter()
        encode(texts, batch_size)
        return _rate(len(texts), time.perf_counter() - started)
    finally:
        if control is not None:
            control.set(default)


@dataclass(frozen=True)
class _Threads:
    get: Callable[[], int]
    set: Callable[[int], None]


def _threads() -> _Threads | None:
    """torch's intra-op thread count, if torch is loaded (a local model is in use)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return _Threads(get=torch.get_num_threads, set=torch.set_num_threads)


# --- the broker ------------------------------------------------------------------------------


def pipeline_messages(
    settings: Settings, docs: Sequence[Doc], prepared: Prepared
) -> list[tuple[str, bytes]]:
    """(key, value) of every event a run of the pipeline sends, encoded as it encodes them."""
    codec = make_codec(settings)
    vector = tuple(0.05 for _ in range(settings.hash_dimensions))
    messages: list[tuple[str, bytes]] = []
    for doc, parsed, chunks in zip(docs, prepared.parsed, prepared.chunks, strict=True):
        document_id = ids.document_id("bench", doc.name)
        job_id = ids.job_id(document_id, "upload")
        uploaded = DocumentUploaded(
            document_id=str(document_id),
            job_id=str(job_id),
            tenant="bench",
            blob_sha256="0" * 64,
            blob_uri="pg://blobs/" + "0" * 64,
            size_bytes=doc.size_bytes,
            filename=doc.name,
            uploaded_at=_now(),
        )
        parsed_event = DocumentParsed(
            document_id=str(document_id),
            job_id=str(job_id),
            tenant="bench",
            text_blob_sha256="0" * 64,
            text_blob_uri="pg://blobs/" + "0" * 64,
            content_type=parsed.content_type,
            parser=parsed.parser,
            parser_version=parsed.parser_version,
            block_count=len(parsed.blocks),
            page_count=parsed.page_count,
            parsed_at=_now(),
        )
        messages += [(str(document_id), codec.encode(uploaded))]
        messages += [(str(document_id), codec.encode(parsed_event))]
        for index, chunk in enumerate(chunks):
            chunk_id = ids.chunk_id(document_id, CHUNKER_VERSION, index)
            created = ChunkCreated(
                document_id=str(document_id),
                job_id=str(job_id),
                tenant="bench",
                chunk_id=str(chunk_id),
                chunk_index=index,
                chunk_count=len(chunks),
                text=chunk,
                token_count=256,
                pages=(1,),
                heading_path=("a heading",),
                chunker_version=CHUNKER_VERSION,
                chunker_config_hash="0" * 16,
                parser=parsed.parser,
                parser_version=parsed.parser_version,
                created_at=_now(),
            )
            embedded = ChunkEmbedded(
                document_id=str(document_id),
                job_id=str(job_id),
                tenant="bench",
                embedding_id=str(ids.embedding_id(chunk_id, "bench")),
                chunk_id=str(chunk_id),
                chunk_index=index,
                chunk_count=len(chunks),
                model="bench",
                model_version="1",
                dimensions=len(vector),
                vector=vector,
                embedded_at=_now(),
            )
            messages += [(str(chunk_id), codec.encode(created))]
            messages += [(str(document_id), codec.encode(embedded))]
    return messages


def _now() -> Any:
    from ragstream.schemas.events import utc_now

    return utc_now()


def transport_limit(
    settings: Settings, messages: Sequence[tuple[str, bytes]], *, timeout_s: float = 300
) -> dict[str, Any]:
    """Raw confluent-kafka: produce ``messages`` and consume them back through the broker.

    The producer and consumer use the pipeline's client configuration; the
    clock runs from the first produce to the last message consumed.
    """
    name = f"bench-transport-{uuid.uuid4().hex[:8]}"
    create_topics(settings, [name])
    topic = settings.topic(name)
    consumer = Consumer(consumer_config(settings, f"{topic}-reader"))
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
    )
    consumer.consume(1, 1.0)  # connect and fetch metadata before the clock starts
    received = 0
    done = threading.Event()
    finished_at = [0.0]

    def consume() -> None:
        nonlocal received
        deadline = time.monotonic() + timeout_s
        while received < len(messages) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None:
                    received += 1
        finished_at[0] = time.perf_counter()
        done.set()

    producer = Producer(producer_config(settings))
    reader = threading.Thread(target=consume, daemon=True)
    started = time.perf_counter()
    reader.start()
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(timeout_s)
    done.wait(timeout_s)
    consumer.close()
    elapsed = finished_at[0] - started
    size = sum(len(v) for _, v in messages)
    from ragstream.kafka import admin_client

    admin_client(settings).delete_topics([topic], request_timeout=30)
    return {
        "messages": len(messages),
        "received": received,
        "megabytes": round(size / 1e6, 3),
        "msgs_per_s": _rate(received, elapsed),
        "mb_per_s": _rate(size, elapsed) / 1e6,
        "seconds": elapsed,
    }
