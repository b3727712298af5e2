"""The bench corpus: deterministic documents of every kind, written with real writers.

Every document is a function of (seed, index): the same arguments give the same
bytes on any machine, so two runs, or ragstream and a peer, see the same
inputs. Each section draws from its own random stream, so editing one section
(:func:`edit`) leaves the others, and their chunks, byte for byte the same.
Every third document carries the same licence section: identical chunks that
an ingestion pipeline should embed once.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KINDS = ("pdf", "html", "md", "txt")
SMALL_MAX_KB = 64
"""All documents but the largest lie between 1 KB and this: most real documents are small."""
PDF_TEXT_SHARE = 1.05
"""Text per byte of PDF: reportlab compresses pages, which about cancels their structure."""

_VOCABULARY = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "more can time about who may into its some could only other than then these two first new "
    "any very after most made over also did many before must through where much should well "
    "people down own just because good each those long here both between under never same "
    "another while last might great since against right three during without again place "
    "around however small found part general every world number water state order system "
    "process stream broker partition offset record batch consumer producer schema vector "
    "embedding document parser chunk token model index query search latency throughput memory "
    "replica leader segment commit retry backoff database table column transaction network "
    "server client request response cache queue message event topic group pipeline storage "
    "history question answer evidence method result analysis measure value report section "
    "figure example reason change problem research public market policy energy health river "
    "mountain city village garden harvest winter summer morning evening letter journey"
)
WORDS = tuple(_VOCABULARY.split())

SHARED_TITLE = "Licence and reuse"
SHARED_PARAGRAPHS = (
    "This document belongs to the ragstream benchmark corpus. It may be copied, changed and "
    "shared without asking, provided that this notice stays with every copy. It comes with no "
    "warranty of any kind, express or implied, including fitness for a particular purpose.",
)


@dataclass(frozen=True)
class Doc:
    name: str
    kind: str
    data: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.data)


Section = tuple[str, list[str]]


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))  # str seeds are stable across runs


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 22))]
    return " ".join(words).capitalize() + rng.choice(".....?!")


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 7)))


def _section(seed: int, index: int, number: int, edited: bool, max_bytes: int = 1 << 30) -> Section:
    """One section; it stops adding paragraphs once it holds ``max_bytes``."""
    rng = _rng(seed, index, number, "edited" if edited else "")
    title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))).title()
    paragraphs: list[str] = []
    size = len(title)
    for _ in range(rng.randint(2, 5)):
        if paragraphs and size >= max_bytes:
            break
        paragraphs.append(_paragraph(rng))
        size += len(paragraphs[-1]) + 2
    return f"{number + 1}. {title}", paragraphs


def _size(section: Section) -> int:
    return len(section[0]) + sum(len(p) + 2 for p in section[1])


def sections(seed: int, index: int, text_bytes: int, *, edited: bool = False) -> list[Section]:
    """About ``text_bytes`` of sections; ``edited`` rewrites the last one only."""
    out: list[Section] = []
    size = 0
    while size < text_bytes or not out:
        section = _section(seed, index, len(out), False, text_bytes - size)
        out.append(section)
        size += _size(section)
    if edited:
        last = len(out) - 1
        out[-1] = _section(seed, index, last, True, text_bytes - size + _size(out[-1]))
    if index % 3 == 0:
        out.append((SHARED_TITLE, list(SHARED_PARAGRAPHS)))
    return out


# --- writers --------------------------------------------------------------------------------


def markdown(title: str, body: list[Section]) -> bytes:
    out = [f"# {title}\n"]
    for heading, paragraphs in body:
        out.append(f"## {heading}\n")
        out.extend(p + "\n" for p in paragraphs)
    return "\n".join(out).encode()


def html(title: str, body: list[Section]) -> bytes:
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:serif}</style></head><body>",
        f"<h1>{title}</h1>",
    ]
    for heading, paragraphs in body:
        parts.append(f"<section><h2>{heading}</h2>")
        parts.extend(f"<p>{p}</p>" for p in paragraphs)
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts).encode()


def text(title: str, body: list[Section]) -> bytes:
    paragraphs = [title.upper()]
    for heading, ps in body:
        paragraphs.append(heading)
        paragraphs.extend(ps)
    return "\n\n".join(paragraphs).encode()


def _wrap(paragraph: str, width: int) -> Iterator[str]:
    line: list[str] = []
    length = 0
    for word in paragraph.split():
        if line and length + 1 + len(word) > width:
            yield " ".join(line)
            line, length = [], 0
        length += len(word) + (1 if line else 0)
        line.append(word)
    if line:
        yield " ".join(line)


def pdf(title: str, body: list[Section] | Iterator[Section], *, max_pages: int = 0) -> bytes:
    """A real PDF (reportlab): headings set larger than the body, text wrapped in lines.

    ``max_pages`` (when set) stops at that many pages, and pulls sections from
    ``body`` until then, so a long PDF never builds all its text up front.
    """
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, invariant=1)
    c.setTitle(title)
    top, bottom = 800, 60
    pages = 1
    y = top

    def room(needed: float) -> bool:
        nonlocal y, pages
        if y - needed >= bottom:
            return True
        if max_pages and pages >= max_pages:
            return False
        c.showPage()
        pages += 1
        y = top
        return True

    c.setFont("Helvetica-Bold", 18)
    c.drawString(50, y, title[:80])
    y -= 34
    full = False
    for heading, paragraphs in body:
        if full or not room(40):
            break
        c.setFont("Helvetica-Bold", 14)
        c.drawString(50, y, heading[:80])
        y -= 24
        c.setFont("Helvetica", 10)
        for paragraph in paragraphs:
            for line in _wrap(paragraph, 95):
                if not room(14):
                    full = True
                    break
                c.setFont("Helvetica", 10)
                c.drawString(50, y, line)
                y -= 14
            if full:
                break
            y -= 10
    c.showPage()
    c.save()
    return buf.getvalue()


def _write(kind: str, title: str, body: list[Section]) -> bytes:
    if kind == "pdf":
        return pdf(title, body)
    if kind == "html":
        return html(title, body)
    if kind == "md":
        return markdown(title, body)
    return text(title, body)


# --- the corpus -----------------------------------------------------------------------------


def sizes_kb(n: int, max_doc_mb: float) -> list[float]:
    """Target sizes: n - 1 documents log-spaced from 1 KB, then one of ``max_doc_mb``."""
    largest = max(1.0, max_doc_mb * 1024)
    if n <= 1:
        return [largest][:n]
    small_max = min(SMALL_MAX_KB, largest)
    steps = max(n - 2, 1)
    small = [math.exp(math.log(small_max) * i / steps) for i in range(n - 1)]
    return [*small, largest]


def document(seed: int, index: int, size_kb: float, *, edited: bool = False) -> Doc:
    kind = KINDS[index % len(KINDS)]
    text_bytes = int(size_kb * 1024 * (PDF_TEXT_SHARE if kind == "pdf" else 1.0))
    title = f"Benchmark document {seed}-{index}"
    body = sections(seed, index, text_bytes, edited=edited)
    suffix = "-edited" if edited else ""
    return Doc(f"doc-{seed}-{index:03d}{suffix}.{kind}", kind, _write(kind, title, body))


def make_corpus(n: int, *, seed: int = 0, max_doc_mb: float = 2.0) -> list[Doc]:
    """``n`` documents cycling through PDF, HTML, Markdown and text, 1 KB to ``max_doc_mb``."""
    return [document(seed, i, size) for i, size in enumerate(sizes_kb(n, max_doc_mb))]


def edited_indices(n: int, share: float = 0.1) -> list[int]:
    """Which documents a re-ingest edits: every tenth, starting from the fourth."""
    count = max(1, round(n * share)) if n else 0
    picked = [i for i in range(3, n, 10)][:count]
    rest = [i for i in range(n) if i not in picked]
    return sorted(picked + rest[: count - len(picked)])


def edit(
    corpus: list[Doc], *, seed: int = 0, max_doc_mb: float = 2.0, share: float = 0.1
) -> list[Doc]:
    """The same corpus with ``share`` of its documents changed in their last section."""
    sizes = sizes_kb(len(corpus), max_doc_mb)
    changed = set(edited_indices(len(corpus), share))
    return [
        document(seed, i, sizes[i], edited=True) if i in changed else doc
        for i, doc in enumerate(corpus)
    ]


def latency_docs(count: int, *, seed: int = 0, size_kb: float = 10.0) -> list[Doc]:
    """Small documents (Markdown, HTML, text) for the upload-to-complete latency probe."""
    kinds = ("md", "html", "txt")
    out = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        body = sections(seed + 7919, 1000 + i, int(size_kb * 1024) - 600)
        data = _write(kind, f"Latency probe {seed}-{i}", body)
        out.append(Doc(f"latency-{seed}-{i:02d}.{kind}", kind, data))
    return out


def big_pdf(pages: int, *, seed: int = 0) -> Doc:
    """A PDF of exactly ``pages`` pages of running text with headings."""

    def endless() -> Iterator[Section]:
        number = 0
        while True:
            yield _section(seed + 104729, 0, number, False)
            number += 1

    data = pdf(f"A book of {pages} pages", endless(), max_pages=pages)
    return Doc(f"book-{pages}-pages.pdf", "pdf", data)


def big_text(megabytes: float, *, seed: int = 0) -> Doc:
    """A plain-text file of ``megabytes`` MiB: numbered paragraphs drawn from a fixed pool."""
    rng = _rng(seed, "big-text")
    pool = [_paragraph(rng) for _ in range(4096)]
    target = int(megabytes * 1024 * 1024)
    parts: list[str] = []
    size = 0
    number = 0
    while size < target:
        paragraph = f"Paragraph {number}. {rng.choice(pool)}"
        parts.append(paragraph)
        size += len(paragraph) + 2
        number += 1
    data = "\n\n".join(parts).encode()[:target]
    return Doc(f"big-{megabytes:g}mb.txt", "txt", data)


def write(docs: list[Doc], directory: Path) -> list[Path]:
    """Write ``docs`` into ``directory`` (created), one file each; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in docs:
        path = directory / doc.name
        path.write_bytes(doc.data)
        paths.append(path)
    return paths
