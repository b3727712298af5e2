"""Token-aware, structure-respecting chunking of a :class:`ParsedDocument`.

Why tokens: the embedding model silently truncates its input (all-MiniLM-L6-v2
keeps 256 tokens including [CLS]/[SEP]), so a chunk sized in words or
characters can lose its tail without any error. Chunks here are sized in the
model's own tokens and never exceed the model's limit.

How, in time linear in the text:

1. Blocks are grouped into sections. A heading starts a new section (and a new
   chunk); so does a change of a paragraph's heading path. Headings with no
   paragraph of their own are carried into the next section's first chunk.
2. Each block is cut into segments (words) at whitespace, and after CJK
   sentence ends. The gap before each segment has a strength: paragraph (blank
   line) > sentence > line > word. Words longer than WordPiece's 100-character
   limit are cut into hard character pieces. Scanning is vectorized with numpy.
3. Every distinct segment is counted once with the model's own tokenizer
   (memoized); a span's estimate is the sum of its segments' counts, which is
   exact for WordPiece across whitespace.
4. A block over the target is split recursively at its strongest gaps until
   every piece fits; the pieces (atoms) are packed greedily into chunks.
5. Adjacent chunks of the same section overlap by up to the overlap budget,
   taken from the end of the previous chunk and starting at a sentence
   boundary when that yields at least half the budget, else at a word.
6. Every final chunk is counted once with the real tokenizer; a chunk whose
   real count exceeds ``max_tokens`` (summing is not exact across hard
   character cuts or for other tokenizers) is halved until it fits.

Table blocks (Markdown, one row per line) are never cut inside a row: a table
that fits is one indivisible atom; a larger one is cut between rows into
pieces that each start with the header and separator rows again, so every
piece reads as a table on its own. Only a row larger than a chunk by itself is
cut inside, like prose (at its strongest gaps, cells being word gaps), with
the header lines kept in front of its first piece.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

from ragstream.documents import Block, ParsedDocument
from ragstream.errors import CorruptDocument

if TYPE_CHECKING:
    from ragstream.settings import Settings

CHUNKER_VERSION = "2"
"""Bumped whenever the same input and config could produce different chunks."""

CountTokens = Callable[[str], int]
CountTokensBatch = Callable[[Sequence[str]], list[int]]

Int64Array = npt.NDArray[np.int64]
Int8Array = npt.NDArray[np.int8]

# Strength of the gap before a segment; splitting prefers the strongest gaps.
_CHAR = 0  # a hard cut inside a word: no gap at all
_WORD = 1
_LINE = 2
_SENTENCE = 3
_PARA = 4
_BLOCK = 5

_LONG_WORD_CHARS = 100
"""WordPiece turns a longer word into one [UNK]; such words are cut into pieces."""
_HARD_SPLIT_CHARS = 32
"""Size of those pieces: small enough to fill chunks closely (CJK: a token a char)."""
_WINDOW_CHARS = 1 << 20
"""Text scanned per numpy pass: bounds memory on huge blocks."""
_GIANT_BLOCK_CHARS = 1 << 16
"""Blocks at least this long are scanned alone; smaller ones are scanned in groups."""
_GROUP_CHARS = 1 << 20
"""Text of small blocks scanned in one pass: amortizes numpy and tokenizer calls."""
_COUNT_BATCH = 2048
"""Texts per call to the batch counter."""
_MEMO_MAX_ENTRIES = 1 << 19
"""Distinct segment texts remembered; the memo is dropped when it grows past this."""
_FINALIZE_EVERY = 512
"""Chunks verified per batch; keeps memory flat on huge documents."""

# Every character for which str.isspace() is true is below U+3001.
_LUT_SIZE = 0x3001
_WS_LUT = np.array([chr(c).isspace() for c in range(_LUT_SIZE)] + [False], dtype=bool)
_NEWLINE = ord("\n")
_ENDERS = np.array([ord(c) for c in ".!?\u2026\u3002\uff01\uff1f"], dtype=np.uint32)
_CJK_ENDERS = np.array([ord(c) for c in "\u3002\uff01\uff1f"], dtype=np.uint32)
_CLOSERS = np.array([ord(c) for c in "\"')]\u201d\u2019\u300d\u300f\uff09"], dtype=np.uint32)
_WORD_START = re.compile(r"\s\S")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*\S")


@dataclass(frozen=True)
class ChunkerConfig:
    """Chunk sizing, all in the embedding model's content tokens.

    ``max_tokens`` is the hard limit (the embedder's ``max_input_tokens``);
    ``target_tokens`` is what chunks are filled to, capped at ``max_tokens``.
    """

    target_tokens: int
    overlap_tokens: int
    max_tokens: int

    def __post_init__(self) -> None:
        if self.target_tokens < 1:
            raise ValueError("target_tokens must be at least 1")
        if self.overlap_tokens < 0:
            raise ValueError("overlap_tokens must not be negative")
        if self.max_tokens < 8:
            raise ValueError("max_tokens must be at least 8")

    @classmethod
    def from_settings(cls, settings: Settings, max_tokens: int) -> ChunkerConfig:
        """The config for ``settings`` and an embedder's ``max_input_tokens``."""
        return cls(
            target_tokens=settings.chunk_target_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
            max_tokens=max_tokens,
        )

    @property
    def effective_target(self) -> int:
        return min(self.target_tokens, self.max_tokens)

    @property
    def effective_overlap(self) -> int:
        """Overlap is capped at half a chunk so that every chunk adds new text."""
        return min(self.overlap_tokens, self.effective_target // 2)

    def config_hash(self) -> str:
        """Stable id of this config and the chunker version, for chunk ids and lineage."""
        payload = {
            "chunker_version": CHUNKER_VERSION,
            "max_tokens": self.max_tokens,
            "overlap_tokens": self.overlap_tokens,
            "target_tokens": self.target_tokens,
        }
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Chunk:
    """One piece of a document, ready to embed.

    ``token_count`` is the real count of ``text`` in the embedder's content
    tokens; ``pages`` are the pages its text came from.
    """

    index: int
    text: str
    token_count: int
    pages: tuple[int, ...]
    heading_path: tuple[str, ...]


def chunk_document(
    doc: ParsedDocument,
    config: ChunkerConfig,
    count_tokens: CountTokens,
    *,
    count_tokens_batch: CountTokensBatch | None = None,
) -> list[Chunk]:
    """Split ``doc`` into chunks of at most ``config.max_tokens`` tokens.

    ``count_tokens`` must count with the embedding model's own tokenizer,
    without special tokens (``Embedder.count_tokens``). Passing
    ``count_tokens_batch`` (``Embedder.count_tokens_batch``) as well lets the
    tokenizer work on many texts per call, which is several times faster.
    The result depends only on the inputs.
    """
    counter = _Counter(count_tokens, count_tokens_batch)
    return _Chunker(doc.blocks, config, counter).run()


# --- scanning ------------------------------------------------------------------


class _Segments(NamedTuple):
    """Segments of one block, or of a group of blocks (positions within each block)."""

    starts: Int64Array
    ends: Int64Array
    strengths: Int8Array  # of the gap before each segment
    counts: Int64Array
    prefix: Int64Array  # prefix[k] = sum(counts[:k])


def _scan_window(text: str, first_gap: int) -> tuple[Int64Array, Int64Array, Int8Array, int]:
    """Segments of ``text`` and the strength of its trailing gap.

    ``first_gap`` is the strength given to the first segment (the gap before
    ``text`` began, or a hard cut).
    """
    try:
        cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    except UnicodeEncodeError as exc:
        # No tokenizer, database or embedding API accepts such text; retrying cannot help.
        raise CorruptDocument(
            f"parsed text contains an unpaired surrogate ({exc.reason})", stage="chunk"
        ) from exc
    n = cp.size
    empty = np.zeros(0, dtype=np.int64)
    if n == 0:
        return empty, empty, np.zeros(0, dtype=np.int8), first_gap
    ws = _WS_LUT[np.minimum(cp, _LUT_SIZE)]
    solid = ~ws
    starts = np.flatnonzero(solid & np.concatenate(([True], ws[:-1]))).astype(np.int64)
    ends = np.flatnonzero(solid & np.concatenate((ws[1:], [True]))).astype(np.int64) + 1

    # A CJK full stop ends a sentence without any whitespace after it.
    cuts = np.flatnonzero(np.isin(cp, _CJK_ENDERS)).astype(np.int64) + 1
    cuts = cuts[cuts < n]
    if cuts.size:
        closed = np.isin(cp[cuts], _CLOSERS)
        cuts = np.where(closed, cuts + 1, cuts)
        cuts = cuts[cuts < n]
        cuts = cuts[solid[cuts] & ~np.isin(cp[cuts], _CLOSERS)]
        if cuts.size:
            starts = np.union1d(starts, cuts)
            ends = np.union1d(ends, cuts)

    if starts.size == 0:
        return empty, empty, np.zeros(0, dtype=np.int8), first_gap
    newlines = np.flatnonzero(cp == _NEWLINE)
    strengths = np.empty(starts.size, dtype=np.int8)
    strengths[0] = first_gap
    strengths[1:] = _gap_strengths(cp, newlines, ends[:-1], starts[1:])
    last_end = int(ends[-1])
    if last_end < n:
        tail = _gap_strengths(cp, newlines, ends[-1:], np.array([n], dtype=np.int64))
        trailing = int(tail[0])
    else:
        trailing = _CHAR

    lengths = ends - starts
    long_words = lengths > _LONG_WORD_CHARS
    if long_words.any():
        pieces = np.where(long_words, -(-lengths // _HARD_SPLIT_CHARS), 1)
        word = np.repeat(np.arange(starts.size), pieces)
        k = np.arange(word.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        new_starts = starts[word] + k * _HARD_SPLIT_CHARS
        ends = np.where(
            long_words[word],
            np.minimum(new_starts + _HARD_SPLIT_CHARS, ends[word]),
            ends[word],
        )
        strengths = np.where(k == 0, strengths[word], _CHAR).astype(np.int8)
        starts = new_starts
    return starts, ends, strengths, trailing


def _gap_strengths(
    cp: npt.NDArray[np.uint32], newlines: Int64Array, a: Int64Array, b: Int64Array
) -> Int8Array:
    """Strength of the gaps ``[a, b)`` (whitespace, or empty after a CJK full stop)."""
    breaks = np.searchsorted(newlines, b) - np.searchsorted(newlines, a)
    last = cp[a - 1]
    before = cp[np.maximum(a - 2, 0)]
    sentence = np.isin(last, _ENDERS) | (
        np.isin(last, _CLOSERS) & np.isin(before, _ENDERS) & (a >= 2)
    )
    out = np.full(a.size, _WORD, dtype=np.int8)
    out[breaks == 1] = _LINE
    out[sentence | (a == b)] = _SENTENCE
    out[breaks >= 2] = _PARA
    return out


def _scan_windows(text: str) -> Iterator[tuple[Int64Array, Int64Array, Int8Array]]:
    """Segments of ``text`` a window at a time, so huge blocks never sit in memory whole.

    A window ends at a blank line when one is near, else just before a word;
    only a run of over a million characters without whitespace is cut inside.
    """
    n = len(text)
    pos = 0
    gap = _BLOCK
    while pos < n:
        end = pos + _WINDOW_CHARS
        if end >= n:
            end = n
        else:
            m = _PARAGRAPH_BREAK.search(text, end, min(n, end + _WINDOW_CHARS // 4))
            if m is None:
                m = _WORD_START.search(text, end, min(n, end + _WINDOW_CHARS))
            if m is not None:
                end = m.end() - 1
        starts, ends, strengths, gap = _scan_window(text[pos:end], gap)
        yield starts + pos, ends + pos, strengths
        pos = end


def _scan(text: str) -> tuple[Int64Array, Int64Array, Int8Array]:
    """All segments of ``text``."""
    parts = list(_scan_windows(text))
    if len(parts) == 1:
        return parts[0]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.int8)
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


# --- counting ------------------------------------------------------------------


class _Counter:
    """Counts tokens, remembering the counts of segments (words repeat a lot)."""

    def __init__(self, count: CountTokens, count_batch: CountTokensBatch | None) -> None:
        self._count = count
        self._count_batch = count_batch
        self._memo: dict[str, int] = {}

    def real(self, texts: Sequence[str]) -> list[int]:
        if self._count_batch is None:
            return [self._count(t) for t in texts]
        out: list[int] = []
        for i in range(0, len(texts), _COUNT_BATCH):
            out.extend(self._count_batch(texts[i : i + _COUNT_BATCH]))
        return out

    def memoized(self, texts: Sequence[str]) -> list[int]:
        memo = self._memo
        out = [memo.get(t, -1) for t in texts]
        missing = list(dict.fromkeys(t for t, c in zip(texts, out, strict=True) if c < 0))
        if not missing:
            return out
        found = dict(zip(missing, self.real(missing), strict=True))
        if len(memo) + len(found) > _MEMO_MAX_ENTRIES:
            memo.clear()
        memo.update(found)
        return [c if c >= 0 else found[t] for t, c in zip(texts, out, strict=True)]

    def segments(
        self, text: str, starts: Int64Array, ends: Int64Array, strengths: Int8Array
    ) -> _Segments:
        counts = np.zeros(starts.size, dtype=np.int64)
        step = 1 << 16
        for i in range(0, starts.size, step):
            pieces = [
                text[s:e]
                for s, e in zip(
                    starts[i : i + step].tolist(), ends[i : i + step].tolist(), strict=True
                )
            ]
            counts[i : i + step] = self.memoized(pieces)
        prefix = np.zeros(starts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=prefix[1:])
        return _Segments(starts, ends, strengths, counts, prefix)


# --- sections ------------------------------------------------------------------


def _sections(blocks: Sequence[Block]) -> list[tuple[tuple[str, ...], list[int]]]:
    """Group blocks into (heading path, block indexes); whitespace-only blocks are dropped."""
    sections: list[tuple[tuple[str, ...], list[int]]] = []
    pending: list[int] = []  # headings waiting for their first paragraph
    path: tuple[str, ...] = ()
    current: list[int] = []
    for i, block in enumerate(blocks):
        if not block.text or block.text.isspace():
            continue
        if block.kind == "heading":
            if current:
                sections.append((path, current))
                current = []
            pending.append(i)
            continue
        block_path = tuple(block.heading_path)
        if current and block_path == path:
            current.append(i)
            continue
        if current:
            sections.append((path, current))
        path, current, pending = block_path, [*pending, i], []
    if current:
        sections.append((path, current))
    if pending:
        sections.append((_own_path(blocks[pending[-1]]), pending))
    return sections


def _own_path(heading: Block) -> tuple[str, ...]:
    """The path of text under ``heading``, whichever convention the parser used."""
    title = heading.text.strip()
    parents = tuple(heading.heading_path)
    return parents if parents[-1:] == (title,) else (*parents, title)


# --- chunking ------------------------------------------------------------------


class _Atom(NamedTuple):
    """A span of one block that is packed whole: segments [lo, hi) of ``seg``."""

    block: int
    start: int
    end: int
    tokens: int
    strength: int  # of the gap before it
    seg: _Segments | None  # None: an indivisible piece
    lo: int
    hi: int


class _Chunker:
    def __init__(self, blocks: Sequence[Block], config: ChunkerConfig, counter: _Counter) -> None:
        # Pieces of split tables are appended as blocks of their own.
        self._blocks = list(blocks)
        self._target = config.effective_target
        self._overlap = config.effective_overlap
        self._max = config.max_tokens
        self._counter = counter
        self._chunks: list[Chunk] = []

    def run(self) -> list[Chunk]:
        waiting: list[tuple[tuple[str, ...], list[_Atom]]] = []
        for path, block_ids in _sections(self._blocks):
            for atoms in self._pack(self._section_atoms(block_ids)):
                waiting.append((path, atoms))
                if len(waiting) >= _FINALIZE_EVERY:
                    self._finalize(waiting)
                    waiting = []
        self._finalize(waiting)
        return self._chunks

    def _section_atoms(self, block_ids: list[int]) -> Iterator[_Atom]:
        group: list[int] = []
        size = 0
        for b in block_ids:
            if self._blocks[b].kind == "table":
                yield from self._group_atoms(group)
                group, size = [], 0
                yield from self._table_atoms(b)
                continue
            n = len(self._blocks[b].text)
            if n < _GIANT_BLOCK_CHARS:
                group.append(b)
                size += n + 2
                if size >= _GROUP_CHARS:
                    yield from self._group_atoms(group)
                    group, size = [], 0
                continue
            yield from self._group_atoms(group)
            group, size = [], 0
            text = self._blocks[b].text
            for starts, ends, strengths in _scan_windows(text):
                seg = self._counter.segments(text, starts, ends, strengths)
                first = int(strengths[0]) if strengths.size else _BLOCK
                yield from self._block_atoms(b, seg, 0, seg.starts.size, first)
        yield from self._group_atoms(group)

    def _table_atoms(self, b: int) -> Iterator[_Atom]:
        """A table whole, or pieces of whole rows, each under the header again."""
        block = self._blocks[b]
        lines = block.text.split("\n")
        counts = self._counter.memoized(lines)
        total = sum(counts)
        if total <= self._target or len(lines) < 3:
            if total <= self._target:
                yield _Atom(b, 0, len(block.text), total, _BLOCK, None, 0, 1)
            else:
                yield from self._prose_atoms(block.text, block)
            return
        header, head_tokens = lines[:2], counts[0] + counts[1]
        if head_tokens * 2 > self._target:
            header, head_tokens = [], 0  # a header this large would crowd out the rows
        rows: list[str] = []
        tokens = head_tokens
        for line, count in zip(lines[2:], counts[2:], strict=True):
            if rows and tokens + count > self._target:
                yield self._piece(block, [*header, *rows], tokens)
                rows, tokens = [], head_tokens
            if head_tokens + count > self._target:
                yield from self._prose_atoms("\n".join([*header, line]), block)
                continue
            rows.append(line)
            tokens += count
        if rows:
            yield self._piece(block, [*header, *rows], tokens)

    def _piece(self, block: Block, lines: list[str], tokens: int) -> _Atom:
        text = "\n".join(lines)
        self._blocks.append(Block(text, "table", block.page, block.heading_path))
        return _Atom(len(self._blocks) - 1, 0, len(text), tokens, _BLOCK, None, 0, 1)

    def _prose_atoms(self, text: str, block: Block) -> Iterator[_Atom]:
        """A table row too large for a chunk, cut like a paragraph."""
        self._blocks.append(Block(text, "paragraph", block.page, block.heading_path))
        b = len(self._blocks) - 1
        starts, ends, strengths = _scan(text)
        seg = self._counter.segments(text, starts, ends, strengths)
        yield from self._block_atoms(b, seg, 0, seg.starts.size)

    def _group_atoms(self, group: list[int]) -> Iterator[_Atom]:
        """Scan small blocks joined by blank lines in one pass, then map segments back."""
        if not group:
            return
        texts = [self._blocks[b].text for b in group]
        joined = "\n\n".join(texts)
        offsets = np.zeros(len(texts), dtype=np.int64)
        np.cumsum([len(t) + 2 for t in texts[:-1]], out=offsets[1:])
        starts, ends, strengths = _scan(joined)
        bounds = [*np.searchsorted(starts, offsets).tolist(), starts.size]
        owner = np.searchsorted(offsets, starts, side="right") - 1
        seg = self._counter.segments(joined, starts, ends, strengths)
        shift = offsets[owner]
        seg = seg._replace(starts=seg.starts - shift, ends=seg.ends - shift)
        firsts = np.array(bounds[:-1], dtype=np.int64)
        seg.strengths[firsts[firsts < np.array(bounds[1:])]] = _BLOCK
        for i, b in enumerate(group):
            yield from self._block_atoms(b, seg, bounds[i], bounds[i + 1])

    def _block_atoms(
        self, b: int, seg: _Segments, lo: int, hi: int, first_strength: int = _BLOCK
    ) -> Iterator[_Atom]:
        """Segments [lo, hi) of block ``b`` as one atom if they fit, else split."""
        if hi <= lo:
            return
        tokens = int(seg.prefix[hi] - seg.prefix[lo])
        if tokens <= self._target:
            start, end = int(seg.starts[lo]), int(seg.ends[hi - 1])
            yield _Atom(b, start, end, tokens, first_strength, seg, lo, hi)
            return
        out: list[_Atom] = []
        self._split_range(b, seg, lo, hi, first_strength, out)
        yield from out

    def _split_range(
        self, b: int, seg: _Segments, i: int, j: int, first_strength: int, out: list[_Atom]
    ) -> None:
        """Split segments [i, j) of block ``b`` at their strongest gaps until pieces fit."""
        if j - i == 1:
            s, e, t = int(seg.starts[i]), int(seg.ends[i]), int(seg.counts[i])
            if t <= self._target:
                out.append(_Atom(b, s, e, t, first_strength, None, i, j))
            else:
                self._hard_split(b, s, e, t, first_strength, out)
            return
        inner = seg.strengths[i + 1 : j]
        top = int(inner.max())
        cuts = np.flatnonzero(inner == top) + (i + 1)
        lo = np.concatenate(([i], cuts))
        hi = np.concatenate((cuts, [j]))
        tokens = seg.prefix[hi] - seg.prefix[lo]
        rows = zip(
            lo.tolist(),
            hi.tolist(),
            tokens.tolist(),
            seg.starts[lo].tolist(),
            seg.ends[hi - 1].tolist(),
            strict=True,
        )
        target = self._target
        for k, (a, z, t, s, e) in enumerate(rows):
            strength = first_strength if k == 0 else top
            if t <= target:
                out.append(_Atom(b, s, e, t, strength, seg if z - a > 1 else None, a, z))
            else:
                self._split_range(b, seg, a, z, strength, out)

    def _hard_split(
        self, b: int, s: int, e: int, tokens: int, strength: int, out: list[_Atom]
    ) -> None:
        """Halve a span by characters until each piece fits (one character always does)."""
        if tokens <= self._target or e - s <= 1:
            out.append(_Atom(b, s, e, tokens, strength, None, 0, 1))
            return
        mid = (s + e) // 2
        text = self._blocks[b].text
        left, right = self._counter.memoized([text[s:mid], text[mid:e]])
        self._hard_split(b, s, mid, left, strength, out)
        self._hard_split(b, mid, e, right, _CHAR, out)

    def _pack(self, atoms: Iterator[_Atom]) -> Iterator[list[_Atom]]:
        """Greedy packing up to the target; each new chunk starts with the overlap."""
        current: list[_Atom] = []
        tokens = 0
        for atom in atoms:
            if current and tokens + atom.tokens > self._target:
                yield current
                current = self._overlap_units(current, self._target - atom.tokens)
                tokens = sum(a.tokens for a in current)
            current.append(atom)
            tokens += atom.tokens
        if current:
            yield current

    @staticmethod
    def _units_backward(atoms: list[_Atom], window: int = 32) -> Iterator[_Atom]:
        """The single segments and pieces that make up ``atoms``, last first.

        Segments are read ``window`` at a time: callers usually stop early.
        """
        for atom in reversed(atoms):
            seg = atom.seg
            if seg is None or atom.hi - atom.lo == 1:
                yield atom
                continue
            k = atom.hi
            while k > atom.lo:
                w = max(atom.lo, k - window)
                starts = seg.starts[w:k].tolist()
                ends = seg.ends[w:k].tolist()
                counts = seg.counts[w:k].tolist()
                strengths = seg.strengths[w:k].tolist()
                for j in range(k - 1, w - 1, -1):
                    i = j - w
                    strength = strengths[i] if j > atom.lo else atom.strength
                    yield _Atom(atom.block, starts[i], ends[i], counts[i], strength, None, j, j + 1)
                k = w

    def _overlap_units(self, previous: list[_Atom], room: int) -> list[_Atom]:
        """A proper suffix of ``previous`` within the overlap budget, in order."""
        budget = min(self._overlap, room)
        if budget <= 0:
            return []
        first = (previous[0].block, previous[0].start)
        taken: list[_Atom] = []
        total = 0
        sentence = word = anywhere = (0, 0)  # (units taken, tokens) of the best cut
        for unit in self._units_backward(previous):
            if (unit.block, unit.start) == first:
                break  # never repeat the whole previous chunk
            total += unit.tokens
            if total > budget:
                break
            taken.append(unit)
            anywhere = (len(taken), total)
            if unit.strength >= _WORD:
                word = anywhere
            if unit.strength >= _SENTENCE:
                sentence = anywhere
        if sentence[0] and 2 * sentence[1] >= budget:
            n = sentence[0]
        elif word[0]:
            n = word[0]
        else:
            n = anywhere[0]
        return taken[:n][::-1]

    # --- output ------------------------------------------------------------------

    def _text(self, atoms: Sequence[_Atom]) -> str:
        parts: list[str] = []
        block, start, end = atoms[0].block, atoms[0].start, atoms[0].end
        for atom in atoms[1:]:
            if atom.block == block:
                end = atom.end
                continue
            parts.append(self._blocks[block].text[start:end])
            block, start, end = atom.block, atom.start, atom.end
        parts.append(self._blocks[block].text[start:end])
        return "\n\n".join(parts)

    def _pages(self, atoms: Sequence[_Atom]) -> tuple[int, ...]:
        pages = {self._blocks[a.block].page for a in atoms}
        return tuple(sorted(p for p in pages if p is not None))

    def _finalize(self, waiting: list[tuple[tuple[str, ...], list[_Atom]]]) -> None:
        """Count each chunk for real; split the rare one over the limit; drop empty ones."""
        texts = [self._text(atoms) for _, atoms in waiting]
        counts = self._counter.real(texts)
        for (path, atoms), text, count in zip(waiting, texts, counts, strict=True):
            for part, part_text, part_count in self._fit(atoms, text, count):
                if part_count == 0:
                    continue
                index = len(self._chunks)
                pages = self._pages(part)
                self._chunks.append(Chunk(index, part_text, part_count, pages, path))

    def _fit(
        self, atoms: list[_Atom], text: str, count: int
    ) -> Iterator[tuple[list[_Atom], str, int]]:
        if count <= self._max:
            yield atoms, text, count
            return
        parts = atoms if len(atoms) > 1 else list(self._units_backward(atoms, 4096))[::-1]
        if len(parts) == 1:
            only = parts[0]
            parts = []
            self._hard_split(only.block, only.start, only.end, count, only.strength, parts)
        if len(parts) == 1:  # a single character over the limit: nothing left to cut
            yield atoms, text, count
            return
        mid = len(parts) // 2
        for half in (parts[:mid], parts[mid:]):
            half_text = self._text(half)
            yield from self._fit(half, half_text, self._counter.real([half_text])[0])
