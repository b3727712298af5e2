"""OCR of page images with Tesseract, for pages that carry no text of their own.

Tesseract runs as a program, fed through pipes (``stdin`` in, ``stdout`` out):
the parser sandbox forbids file writes, and a pipe needs none. The program
inherits the sandbox's confinement (address-space limit, no network, no file
writes); it only reads its own language data. Each page gets its own time
limit, inside the document's.

Languages come from ``RAGSTREAM_OCR_LANGUAGES`` (Tesseract codes joined by
``+``); those whose data is not installed are left out, so a partial install
still reads what it can. Before reading a page, Tesseract's orientation and
script detection (OSD, when its data is installed) looks at it: a page on its
side or upside down is turned upright, and a page in a script none of the
configured languages writes (Hebrew, Devanagari, Hangul, Arabic, Han, ...) is
read with the installed languages of that script, plus English. A page mostly in
one script with a paragraph in another (an English screenshot with a Korean
paragraph) shows it in Tesseract's word confidences: such a paragraph is looked at
again on its own, and read with its script's languages when they read it with more
confidence.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from functools import cache

from PIL import Image

from ragstream.errors import ParserLimitExceeded, UnsupportedDocument
from ragstream.parsing.blocks import BlockBuilder

ENGINE = "tesseract"
LANGUAGES_ENV = "RAGSTREAM_OCR_LANGUAGES"
DEFAULT_LANGUAGES = "eng+deu+fra+spa+rus"
PAGE_TIMEOUT_S = 45.0
"""One page longer than this is pathological (a 600 dpi page takes about 6 s)."""
DPI = 300
NOT_INSTALLED = (
    "needs OCR (no text layer), but Tesseract is not installed: "
    "apt-get install tesseract-ocr tesseract-ocr-eng (plus tesseract-ocr-<lang> per language)"
)
_HYPHENATED = re.compile(r"(\w)-\n(\w)")
OSD_TIMEOUT_S = 20.0
# OSD's confidence below which its orientation or script is not acted on.
MIN_ORIENTATION_CONFIDENCE = 2.0
MIN_SCRIPT_CONFIDENCE = 2.0
# Tesseract's script names (as OSD reports them) and the languages that write them.
SCRIPT_LANGUAGES: dict[str, tuple[str, ...]] = {
    "Arabic": ("ara", "fas", "urd"),
    "Armenian": ("hye",),
    "Bengali": ("ben", "asm"),
    "Cyrillic": ("rus", "ukr", "bel", "bul", "srp", "mkd"),
    "Devanagari": ("hin", "mar", "nep", "san"),
    "Ethiopic": ("amh",),
    "Georgian": ("kat",),
    "Greek": ("ell",),
    "Gujarati": ("guj",),
    "Gurmukhi": ("pan",),
    "Han": ("chi_sim", "chi_tra", "jpn"),
    "HanS": ("chi_sim",),
    "HanT": ("chi_tra",),
    "Hangul": ("kor",),
    "Korean": ("kor",),  # what OSD names Hangul mixed with Han
    "Hebrew": ("heb", "yid"),
    "Japanese": ("jpn",),
    "Kannada": ("kan",),
    "Katakana": ("jpn",),
    "Hiragana": ("jpn",),
    "Khmer": ("khm",),
    "Lao": ("lao",),
    "Malayalam": ("mal",),
    "Myanmar": ("mya",),
    "Oriya": ("ori",),
    "Sinhala": ("sin",),
    "Tamil": ("tam",),
    "Telugu": ("tel",),
    "Thai": ("tha",),
    "Tibetan": ("bod",),
}


@cache
def _binary() -> str | None:
    return shutil.which(ENGINE) or next(
        (p for p in ("/usr/bin/tesseract", "/usr/local/bin/tesseract") if os.access(p, os.X_OK)),
        None,
    )


def _run(args: list[str], data: bytes = b"", timeout_s: float = 30.0) -> bytes:
    binary = _binary()
    if binary is None:
        raise UnsupportedDocument(NOT_INSTALLED)
    # One thread: the sandbox's address-space limit is shared by every thread's stack.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        result = subprocess.run(
            [binary, *args],
            input=data,
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except FileNotFoundError:
        raise UnsupportedDocument(NOT_INSTALLED) from None
    except OSError as exc:
        raise UnsupportedDocument(f"OCR could not run: {exc}") from None
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UnsupportedDocument(f"OCR failed: {detail[-1] if detail else result.returncode}")
    return result.stdout


@cache
def engine_version() -> str:
    """``tesseract 5.3.0``: recorded in the lineage of every OCR-read document."""
    first = _run(["--version"]).decode("utf-8", "replace").splitlines()
    return first[0].strip() if first else ENGINE


@cache
def _installed() -> frozenset[str]:
    lines = _run(["--list-langs"]).decode("utf-8", "replace").splitlines()
    return frozenset(line.strip() for line in lines[1:] if line.strip())


@cache
def languages() -> str:
    """The configured languages that are installed, ``+``-joined."""
    wanted = os.environ.get(LANGUAGES_ENV, "").strip() or DEFAULT_LANGUAGES
    installed = _installed()
    chosen = [lang for lang in wanted.replace(",", "+").split("+") if lang in installed]
    if not chosen:
        raise UnsupportedDocument(
            f"needs OCR, but no language of {wanted!r} is installed "
            f"(installed: {', '.join(sorted(installed)) or 'none'}): "
            "apt-get install tesseract-ocr-<lang>"
        )
    return "+".join(chosen)


def read_image(image: Image.Image, *, page: int) -> str:
    """``page`` only names the page (or image) in a timeout's message."""
    if image.mode not in ("L", "RGB", "1"):
        image = image.convert("RGB")
    dpi = _dpi(image)
    png = _png(image)
    lang = languages()
    found = _osd(*_for_osd(image, png, dpi), page=page)
    if found is not None:
        if found.rotate and found.orientation_confidence >= MIN_ORIENTATION_CONFIDENCE:
            image = image.rotate(-found.rotate, expand=True, fillcolor=_white(image))
            png = _png(image)
        if found.script_confidence >= MIN_SCRIPT_CONFIDENCE:
            lang = languages_for(found.script, lang)
    paragraphs = _read(png, lang, dpi, page=page)
    for run in _doubtful_runs(paragraphs)[:MAX_REREADS]:
        _reread_in_its_script(image, run, lang, dpi, page=page)
    return "\n\n".join(p.text for p in paragraphs if p.text)


LOW_CONFIDENCE = 80.0
"""Mean word confidence (0-100) under which a paragraph may be in another script:
clean print read in its own script scores 88-97, a paragraph in a script the
languages do not write 45-75."""
MIN_GAIN = 10.0
"""Points of mean confidence a re-read in another script must gain to be taken."""
MAX_REREADS = 8
"""Runs of doubtful paragraphs looked at again per page, so a poor scan stays bounded."""
MIN_WORDS = 3


@dataclass
class Paragraph:
    """One of Tesseract's paragraphs: its lines, where it is, how sure it was."""

    lines: list[str]
    box: tuple[int, int, int, int]  # left, top, right, bottom
    confidence: float
    words: int

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


TSV_COLUMNS = 12


def parse_report(report: str) -> list[Paragraph]:
    """Tesseract's ``tsv`` report followed by its ``txt`` one (both renderers on stdout)
    as paragraphs in reading order: words, boxes and confidences from the first, each
    line's text from the second, which spaces CJK words as the page does (the ``tsv``
    splits them apart)."""
    rows = report.splitlines()
    end = 1
    while end < len(rows) and rows[end].count("\t") == TSV_COLUMNS - 1:
        end += 1
    text_lines = [line.strip() for line in rows[end:] if line.strip()]
    found: dict[tuple[str, str, str], tuple[dict[str, list[str]], list[float], list[int]]] = {}
    for row in rows[1:end]:
        cells = row.split("\t")
        if cells[0] != "5" or not cells[11].strip():
            continue
        try:
            left, top, width, height = (int(v) for v in cells[6:10])
            confidence = float(cells[10])
        except ValueError:
            continue
        lines, confidences, box = found.setdefault(
            (cells[1], cells[2], cells[3]), ({}, [], [left, top, left + width, top + height])
        )
        lines.setdefault(cells[4], []).append(cells[11].strip())
        if confidence >= 0:
            confidences.append(confidence)
        box[:] = [
            min(box[0], left),
            min(box[1], top),
            max(box[2], left + width),
            max(box[3], top + height),
        ]
    line_words = [words for lines, _, _ in found.values() for words in lines.values()]
    spaced = iter(text_lines if len(text_lines) == len(line_words) else [])
    return [
        Paragraph(
            [next(spaced, " ".join(words)) for words in lines.values()],
            (box[0], box[1], box[2], box[3]),
            sum(confidences) / len(confidences) if confidences else 0.0,
            sum(map(len, lines.values())),
        )
        for lines, confidences, box in found.values()
    ]


def _read(png: bytes, lang: str, dpi: int, *, page: int, psm: int = 3) -> list[Paragraph]:
    try:
        out = _run(
            ["stdin", "stdout", "-l", lang, "--dpi", str(dpi), "--psm", str(psm), "tsv", "txt"],
            png,
            timeout_s=PAGE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ParserLimitExceeded(
            f"parse: OCR of page {page} took longer than {PAGE_TIMEOUT_S:g} s"
        ) from None
    return parse_report(out.decode("utf-8", "replace"))


def _doubtful_runs(paragraphs: list[Paragraph]) -> list[list[Paragraph]]:
    """Doubtful paragraphs, those next to each other in reading order together: a
    paragraph in another script is often split in several, and OSD needs the
    characters of all of them to name the script."""
    runs: list[list[Paragraph]] = []
    previous_doubtful = False
    for paragraph in paragraphs:
        doubtful = paragraph.confidence < LOW_CONFIDENCE
        if doubtful:
            if previous_doubtful:
                runs[-1].append(paragraph)
            else:
                runs.append([paragraph])
        previous_doubtful = doubtful
    return [run for run in runs if sum(p.words for p in run) >= MIN_WORDS]


def _reread_in_its_script(
    image: Image.Image, run: list[Paragraph], lang: str, dpi: int, *, page: int
) -> None:
    """Reads doubtful paragraphs again, alone, with the languages of the script OSD
    sees in them, and keeps that reading when Tesseract is surer of it."""
    pad = 12
    left = min(p.box[0] for p in run)
    top = min(p.box[1] for p in run)
    right = max(p.box[2] for p in run)
    bottom = max(p.box[3] for p in run)
    crop = Image.new(image.mode, (right - left + 2 * pad, bottom - top + 2 * pad), _white(image))
    crop.paste(image.crop((left, top, right, bottom)), (pad, pad))
    png = _png(crop)
    # A short paragraph has too few characters for OSD; copies of it stacked do not.
    found = _osd(png, dpi, page=page) or _osd(_png(_stacked(crop, 4)), dpi, page=page)
    if found is None:
        return
    other = languages_for(found.script, lang)
    if other == lang:
        return
    again = _read(png, other, dpi, page=page, psm=6)
    words = sum(p.words for p in again)
    if not words:
        return
    before = sum(p.confidence * p.words for p in run) / sum(p.words for p in run)
    after = sum(p.confidence * p.words for p in again) / words
    if after >= before + MIN_GAIN:
        run[0].lines = [line for p in again for line in p.lines]
        for paragraph in run[1:]:
            paragraph.lines = []


def _stacked(image: Image.Image, copies: int) -> Image.Image:
    stack = Image.new(image.mode, (image.width, image.height * copies), _white(image))
    for i in range(copies):
        stack.paste(image, (0, i * image.height))
    return stack


@dataclass(frozen=True)
class Osd:
    """What Tesseract's orientation and script detection says of a page."""

    rotate: int  # degrees clockwise that make it upright
    orientation_confidence: float
    script: str
    script_confidence: float


def parse_osd(text: str) -> Osd | None:
    """Tesseract's ``--psm 0`` report, or None when it holds no verdict."""
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in text.splitlines())
        if value
    )
    try:
        return Osd(
            int(fields["Rotate"]) % 360,
            float(fields["Orientation confidence"]),
            fields["Script"],
            float(fields["Script confidence"]),
        )
    except (KeyError, ValueError):
        return None


def languages_for(script: str, configured: str) -> str:
    """The languages to read a page of ``script`` with: the configured ones when one of
    them writes it (or it is Latin, or unknown here), else the installed languages of
    that script plus English; the configured ones when none is installed."""
    wanted = SCRIPT_LANGUAGES.get(script)
    if not wanted or set(wanted) & set(configured.split("+")):
        return configured
    installed = _installed()
    chosen = [lang for lang in wanted if lang in installed]
    if not chosen:
        return configured
    return "+".join([*chosen, *(["eng"] if "eng" in installed else [])])


def _osd(png: bytes, dpi: int, *, page: int) -> Osd | None:
    """The page's orientation and script, when OSD's data is installed and it can tell
    (a page with too little text is read as it is)."""
    if "osd" not in _installed():
        return None
    try:
        out = _run(
            ["stdin", "stdout", "--psm", "0", "-l", "osd", "--dpi", str(dpi)],
            png,
            timeout_s=OSD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ParserLimitExceeded(
            f"parse: OCR's script detection on page {page} took longer than {OSD_TIMEOUT_S:g} s"
        ) from None
    except UnsupportedDocument:
        return None  # "too few characters": nothing to turn, the configured languages
    return parse_osd(out.decode("utf-8", "replace"))


OSD_MAX_SIDE = 2000
"""Pixels on the longer side past which OSD looks at a reduced copy: a 300 dpi A4
page at half size still shows its script and orientation, in half the time."""


def _for_osd(image: Image.Image, png: bytes, dpi: int) -> tuple[bytes, int]:
    factor = -(-max(image.size) // OSD_MAX_SIDE)
    if factor <= 1:
        return png, dpi
    small = (image.convert("L") if image.mode == "1" else image).reduce(factor)
    return _png(small), max(dpi // factor, 70)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _white(image: Image.Image) -> int | tuple[int, int, int]:
    return (255, 255, 255) if image.mode == "RGB" else 255


def _dpi(image: Image.Image) -> int:
    """The image's own resolution when it states a plausible one, else 300."""
    try:
        dpi = round(float(image.info.get("dpi", (DPI, DPI))[0]))
    except (TypeError, ValueError, IndexError):
        return DPI
    return dpi if 70 <= dpi <= 1200 else DPI


def emit(builder: BlockBuilder, text: str, *, page: int | None) -> None:
    """Tesseract's paragraphs as OCR blocks; line-end hyphens are joined."""
    for paragraph in re.split(r"\n\s*\n", text.replace("\f", "\n\n")):
        joined = _HYPHENATED.sub(r"\1\2", paragraph.strip())
        joined = " ".join(joined.split())
        if joined:
            builder.ocr_paragraph(joined, page=page)


def read_bytes(data: bytes, *, page: int) -> str:
    """:func:`read_image` of an encoded image (any format Pillow reads); a decompression
    bomb is refused rather than decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ParserLimitExceeded(f"parse: image {page} too large to read: {exc}") from None
    return read_image(image, page=page)


def lineage(parser: str, version: str) -> tuple[str, str]:
    """Parser name and version of a document some of whose text was read by OCR."""
    return f"{parser}+{ENGINE}", f"{version} / {engine_version()}"
