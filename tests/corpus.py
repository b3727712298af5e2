"""Deterministic documents of every supported kind, written with real writers."""

from __future__ import annotations

import io
import random

TOPICS = (
    "stream processing",
    "consumer groups",
    "vector search",
    "document parsing",
    "replication",
    "backpressure",
    "idempotent writes",
    "schema evolution",
)
WORDS = [
    "broker",
    "partition",
    "offset",
    "commit",
    "batch",
    "latency",
    "throughput",
    "replica",
    "leader",
    "follower",
    "segment",
    "index",
    "vector",
    "embedding",
    "chunk",
    "token",
    "parser",
    "heading",
    "paragraph",
    "sentence",
    "retry",
    "backoff",
    "queue",
    "lag",
    "producer",
    "consumer",
    "record",
    "schema",
    "field",
    "version",
]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(3, 8)))


def _sections(rng: random.Random, n: int) -> list[tuple[str, list[str]]]:
    return [
        (
            f"{rng.choice(TOPICS).title()} part {i + 1}",
            [_paragraph(rng) for _ in range(rng.randint(1, 4))],
        )
        for i in range(n)
    ]


def markdown(seed: int, sections: int = 3) -> bytes:
    rng = random.Random(seed)
    out = [f"# Notes {seed}\n"]
    for title, paragraphs in _sections(rng, sections):
        out.append(f"## {title}\n")
        out.extend(p + "\n" for p in paragraphs)
    return "\n".join(out).encode()


def html(seed: int, sections: int = 3) -> bytes:
    rng = random.Random(seed)
    body = [f"<h1>Report {seed}</h1>"]
    for title, paragraphs in _sections(rng, sections):
        body.append(f"<h2>{title}</h2>")
        body.extend(f"<p>{p}</p>" for p in paragraphs)
    return (
        "<!DOCTYPE html><html><head><title>r</title><style>p{}</style>"
        "<script>var x = 1;</script></head><body>" + "".join(body) + "</body></html>"
    ).encode()


def text(seed: int, sections: int = 3) -> bytes:
    rng = random.Random(seed)
    return "\n\n".join(p for _, ps in _sections(rng, sections) for p in ps).encode()


def pdf(seed: int, pages: int = 2) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    rng = random.Random(seed)
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, invariant=1)
    for page in range(pages):
        y = 800
        c.setFont("Helvetica-Bold", 14)
        c.drawString(50, y, f"Chapter {page + 1} of document {seed}")
        c.setFont("Helvetica", 10)
        y -= 30
        for _ in range(rng.randint(2, 4)):
            words = _paragraph(rng).split()
            line: list[str] = []
            for word in words:
                line.append(word)
                if len(" ".join(line)) > 85:
                    c.drawString(50, y, " ".join(line))
                    y -= 14
                    line = []
            if line:
                c.drawString(50, y, " ".join(line))
                y -= 14
            y -= 14
        c.showPage()
    c.save()
    return buf.getvalue()


def docx(seed: int, sections: int = 2) -> bytes:
    import docx as python_docx

    rng = random.Random(seed)
    document = python_docx.Document()
    document.add_heading(f"Memo {seed}", level=1)
    for title, paragraphs in _sections(rng, sections):
        document.add_heading(title, level=2)
        for p in paragraphs:
            document.add_paragraph(p)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


WRITERS = {"md": markdown, "html": html, "txt": text, "pdf": pdf, "docx": docx}


def mixed(n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``n`` documents cycling through every kind, with distinct content."""
    kinds = list(WRITERS)
    return [
        (
            f"doc-{seed}-{i:03d}.{kinds[i % len(kinds)]}",
            WRITERS[kinds[i % len(kinds)]](seed * 1000 + i),
        )
        for i in range(n)
    ]
