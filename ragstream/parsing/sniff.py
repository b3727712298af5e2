"""What a document is, decided from its content.

Extensions and client-declared types lie (a PDF uploaded as ``report.txt``,
a PNG renamed ``notes.md``), so only the bytes decide. The file name is used
for one thing: breaking a tie between Markdown and plain text, which are
often indistinguishable by content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragstream.errors import CorruptDocument, UnsupportedDocument
from ragstream.parsing.charset import decode_text, detect_bom

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HTML = "text/html"
MARKDOWN = "text/markdown"
TEXT = "text/plain"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"
# Office, e-book and e-mail formats (ragstream/parsing/ooxml.py, odf.py, epub.py, rtf.py, mail.py,
# msg.py).
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ODT = "application/vnd.oasis.opendocument.text"
ODS = "application/vnd.oasis.opendocument.spreadsheet"
ODP = "application/vnd.oasis.opendocument.presentation"
EPUB = "application/epub+zip"
RTF = "application/rtf"
EML = "message/rfc822"
MSG = "application/vnd.ms-outlook"
XLS = "application/vnd.ms-excel"
DOC = "application/msword"
PPT = "application/vnd.ms-powerpoint"
# Word 2003 XML ("WordprocessingML"), saved by Word 2003-2010 as .xml or .doc.
WORDML = "application/vnd.ms-wordml"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_OLE_UNKNOWN = (
    "an OLE compound file that is no Word, Excel, PowerPoint or Outlook document (another "
    "program's file); save it as .docx, .xlsx or .pptx"
)
# Stream names in the OLE directory (UTF-16) that tell the legacy formats apart.
_MSG_STREAM = "__substg1.0_".encode("utf-16-le")
_PPT_STREAM = "PowerPoint Document".encode("utf-16-le")
_WORD_STREAM = "WordDocument".encode("utf-16-le")
_WORD_OBJECTS = "ObjectPool".encode("utf-16-le")
_WORDML_MARKS = ('progid="word.document"', "<w:worddocument", "/office/word/2003/wordml")
_EML_HEADER = re.compile(
    rb"(?:from|to|subject|date|message-id|received|return-path|mime-version|reply-to"
    rb"|delivered-to|x-[a-z0-9-]+|content-type|cc|sender|in-reply-to|references):[ \t]",
    re.IGNORECASE,
)
# Images are read by OCR; their magic numbers settle the question.
_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"\xff\xd8\xff", JPEG),
    (b"II*\x00", TIFF),
    (b"MM\x00*", TIFF),
)

_PDF_MAGIC_WINDOW = 1024
_PDF_OBJECT_WINDOW = 64 * 1024
_PDF_OBJECT = re.compile(rb"\d{1,10} \d{1,5} obj\b")
_BINARY_PROBE_BYTES = 8192
_MAX_CONTROL_RATIO = 0.05
_HTML_PROBE_BYTES = 4096
_MARKDOWN_PROBE_CHARS = 64 * 1024
_MARKDOWN_PROBE_LINES = 2000
_MARKDOWN_SUFFIXES = (".md", ".markdown")

# Magic numbers that settle the question on their own.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"(\xb5/\xfd", "a zstd archive"),
    (b"7z\xbc\xaf'\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "an ELF executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "a Java class file or Mach-O executable"),
    (b"\x00asm", "a WebAssembly module"),
    (b"%!PS", "a PostScript file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"OggS", "an Ogg media file"),
    (b"fLaC", "a FLAC audio file"),
    (b"ID3\x02", "an MP3 audio file"),
    (b"ID3\x03", "an MP3 audio file"),
    (b"ID3\x04", "an MP3 audio file"),
    (b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (b"wOFF", "a WOFF font"),
    (b"wOF2", "a WOFF2 font"),
)
# Too short to trust unless the rest of the bytes also look binary.
_WEAK_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "a Windows executable"),
    (b"BM", "a BMP image"),
    (b"BZh", "a bzip2 archive"),
)
_RIFF_KINDS = {b"WEBP": "a WebP image", b"WAVE": "a WAV audio file", b"AVI ": "an AVI video"}
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f\b\x1b") + b"\x7f"

_HTML_STRONG = re.compile(r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)
_HTML_TAG = re.compile(
    r"<(?:meta|title|link|div|p|h[1-6]|table|ul|ol|dl|section|article|span|a|script|style|br"
    r"|img|nav|header|footer|main|form|iframe|center|font|b|i|strong|em|pre|blockquote)[\s/>]",
    re.IGNORECASE,
)
_MD_ATX = re.compile(r" {0,3}#{1,6}[ \t]+\S")
_MD_LINK = re.compile(r"!?\[[^\]\n]{1,200}\]\([^)\s]{1,500}\)")
_MD_STRONG = re.compile(r"\*\*[^*\n]{1,200}\*\*|__[^_\n]{1,200}__")
_MD_CODE_SPAN = re.compile(r"`[^`\n]{1,200}`")


@dataclass(frozen=True)
class Sniffed:
    """The detected type; for Markdown and text also the decoded text, decoded once."""

    content_type: str
    text: str | None = None
    encoding: str | None = None


def sniff_content_type(data: bytes, filename: str | None = None) -> str:
    """The content type of ``data``; raises for empty or unsupported input."""
    return sniff(data, filename).content_type


def sniff(data: bytes, filename: str | None = None) -> Sniffed:
    if not data:
        raise CorruptDocument("empty document")
    if _is_pdf(data):
        return Sniffed(PDF)
    if data.startswith(_ZIP_MAGIC):
        return Sniffed(_sniff_zip(data))
    if data.startswith(b"{\\rtf"):
        return Sniffed(RTF)
    if _is_email(data):
        return Sniffed(EML)
    if data.startswith(_OLE_MAGIC):
        return Sniffed(_sniff_ole(data))
    image = next((kind for magic, kind in _IMAGES if data.startswith(magic)), None)
    if image is not None:
        return Sniffed(image)
    known = _strong_magic(data)
    if known is not None:
        raise _unsupported(known)

    bom = detect_bom(data)
    if bom is None and _looks_binary(data[:_BINARY_PROBE_BYTES]):
        raise _unsupported(_weak_magic(data) or "binary data")

    head = _decode_head(data, bom)
    if _is_wordml(head):
        return Sniffed(WORDML)
    html = _html_strength(head)
    if html == "strong":
        return Sniffed(HTML)

    if html == "weak":
        # A README.md may open with a centred logo in raw HTML; its Markdown
        # headings below say what it really is.
        try:
            text, encoding = decode_text(data)
        except UnsupportedDocument:
            return Sniffed(HTML)  # BeautifulSoup has its own ways to find the encoding
        if markdown_score(text) >= 2:
            return Sniffed(MARKDOWN, text, encoding)
        return Sniffed(HTML)

    text, encoding = decode_text(data)
    if markdown_score(text) >= 2 or _has_markdown_suffix(filename):
        return Sniffed(MARKDOWN, text, encoding)
    return Sniffed(TEXT, text, encoding)


def markdown_score(text: str) -> int:
    """How strongly the start of ``text`` looks like Markdown; 2 or more is decisive."""
    head = text[:_MARKDOWN_PROBE_CHARS]
    score = 0
    previous_blank = True
    for line in head.split("\n", _MARKDOWN_PROBE_LINES)[:_MARKDOWN_PROBE_LINES]:
        stripped = line.strip()
        if _MD_ATX.match(line):
            score += 2
        elif stripped.startswith(("```", "~~~")):
            score += 1
        elif not previous_blank and len(stripped) >= 3 and set(stripped) in ({"="}, {"-"}):
            score += 2  # setext underline
        previous_blank = not stripped
        if score >= 6:
            return score
    score += min(len(_MD_LINK.findall(head)), 3)
    score += min(len(_MD_STRONG.findall(head)), 2)
    score += min(len(_MD_CODE_SPAN.findall(head)), 1)
    return score


def _is_pdf(data: bytes) -> bool:
    """PDF readers accept the header anywhere in the first KiB; past offset 0, an
    object marker is required too, so prose that quotes ``%PDF-`` stays prose."""
    if data.startswith(b"%PDF-"):
        return True
    if b"%PDF-" not in data[:_PDF_MAGIC_WINDOW]:
        return False
    return _PDF_OBJECT.search(data, 0, _PDF_OBJECT_WINDOW) is not None


def _has_markdown_suffix(filename: str | None) -> bool:
    return filename is not None and filename.lower().endswith(_MARKDOWN_SUFFIXES)


def _unsupported(description: str) -> UnsupportedDocument:
    return UnsupportedDocument(f"unsupported document type (looks like {description})")


def _strong_magic(data: bytes) -> str | None:
    for magic, description in _MAGIC:
        if data.startswith(magic):
            return description
    if data.startswith(b"RIFF") and data[8:12] in _RIFF_KINDS:
        return _RIFF_KINDS[data[8:12]]
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "a HEIF image"
        if brand == b"avif":
            return "an AVIF image"
        return "an MP4/QuickTime video"
    return None


def _weak_magic(data: bytes) -> str | None:
    for magic, description in _WEAK_MAGIC:
        if data.startswith(magic):
            return description
    return None


def _looks_binary(probe: bytes) -> bool:
    if b"\x00" in probe:
        return True
    controls = len(probe) - len(probe.translate(None, _CONTROL_BYTES))
    return controls > len(probe) * _MAX_CONTROL_RATIO


def _sniff_zip(data: bytes) -> str:
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        # No readable central directory: a truncated package still names its parts
        # in the local headers; its parser then reports it as corrupt, not unsupported.
        truncated = _truncated_package(data)
        if truncated is not None:
            return truncated
        raise _unsupported("a ZIP archive") from None
    if "word/document.xml" in names:
        return DOCX
    office = _office_zip(data, names)
    if office is not None:
        return office
    raise _unsupported(_describe_zip(names))


def _office_zip(data: bytes, names: set[str]) -> str | None:
    if "ppt/presentation.xml" in names:
        return PPTX
    if "xl/workbook.xml" in names:
        return XLSX
    if "mimetype" in names:
        declared = _zip_mimetype(data)
        if declared.startswith(EPUB):
            return EPUB
        for prefix in (ODS, ODP, ODT):
            if declared.startswith(prefix):
                return prefix
    if "META-INF/container.xml" in names:
        return EPUB
    return None


# Parts each package names in its local headers, in the order they are told apart.
_PACKAGE_PARTS = (
    ((b"word/document.xml", b"word/_rels/"), DOCX),
    ((b"ppt/presentation.xml", b"ppt/slides/"), PPTX),
    ((b"xl/workbook.xml", b"xl/worksheets/"), XLSX),
)
_MIMETYPE_WINDOW = 256


def _truncated_package(data: bytes) -> str | None:
    """The package type of a ZIP without a central directory: from the ``mimetype``
    member ODF and EPUB store first, uncompressed, or from OOXML part names."""
    head = data[:_MIMETYPE_WINDOW]
    at = head.find(b"mimetype")
    if at >= 0:
        declared = head[at + len(b"mimetype") :]
        for content_type in (EPUB, ODS, ODP, ODT):
            if declared.startswith(content_type.encode("ascii")):
                return content_type
    for names, content_type in _PACKAGE_PARTS:
        if any(name in data for name in names):
            return content_type
    return None


def _zip_mimetype(data: bytes) -> str:
    """The ``mimetype`` member ODF and EPUB carry; read only when it is small."""
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if archive.getinfo("mimetype").file_size > 256:
                return ""
            return archive.read("mimetype").decode("ascii", "replace").strip()
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError, RuntimeError):
        return ""


def _is_xls(data: bytes) -> bool:
    """An OLE compound file with a ``Workbook`` (BIFF8) or ``Book`` (BIFF5) stream, named
    in UTF-16 in its directory; Word, PowerPoint and Outlook files have neither."""
    return "Workbook".encode("utf-16-le") in data or b"B\x00o\x00o\x00k\x00\x00\x00" in data


def _sniff_ole(data: bytes) -> str:
    """A legacy binary Office file, by the stream names in its directory (UTF-16).

    Embedded objects bring their own streams: an Outlook .msg (``__substg1.0_*``)
    may attach a .doc, Word keeps embedded objects under ``ObjectPool`` and Excel
    in ``MBD*`` storages, while PowerPoint packs its own into its main stream. So
    the message decides first, then Word with objects, then the readable formats;
    a presentation is one only when nothing else claims the file.
    """
    if _MSG_STREAM in data:
        return MSG
    word = _WORD_STREAM in data
    if word and _WORD_OBJECTS in data:
        return DOC
    if _is_xls(data):
        return XLS
    if word:
        return DOC
    if _PPT_STREAM in data:
        return PPT
    raise _unsupported(_OLE_UNKNOWN)


def _is_wordml(head: str) -> bool:
    """Word 2003 XML: an XML declaration, then Word's processing instruction or root."""
    lowered = head.lstrip("\ufeff \t\r\n")[:_HTML_PROBE_BYTES].lower()
    return lowered.startswith("<?xml") and any(mark in lowered for mark in _WORDML_MARKS)


def _is_email(data: bytes) -> bool:
    """Two or more RFC 822 header lines before the first blank line, one of them From:."""
    head = data[:8192]
    end = head.find(b"\n\n") if b"\r\n\r\n" not in head else head.find(b"\r\n\r\n")
    if end <= 0:
        return False
    lines = [line for line in head[:end].splitlines() if line and line[:1] not in b" \t"]
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]  # an mbox envelope line
    if len(lines) < 2 or not all(b":" in line for line in lines):
        return False
    known = [line for line in lines if _EML_HEADER.match(line)]
    return len(known) >= 2 and any(line.lower().startswith(b"from:") for line in known)


def _describe_zip(names: set[str]) -> str:
    if "xl/workbook.xml" in names:
        return "an Excel workbook (.xlsx)"
    if "ppt/presentation.xml" in names:
        return "a PowerPoint presentation (.pptx)"
    if "[Content_Types].xml" in names:
        return "an Office Open XML package other than DOCX"
    if "mimetype" in names and "content.xml" in names:
        return "an OpenDocument file (.odt/.ods/.odp)"
    if "META-INF/container.xml" in names:
        return "an EPUB e-book"
    if "META-INF/MANIFEST.MF" in names:
        return "a Java archive (.jar)"
    return "a ZIP archive"


def _decode_head(data: bytes, bom: tuple[str, int] | None) -> str:
    """Enough of the start to look for tags; exact decoding does not matter here."""
    if bom is not None:
        encoding, skip = bom
        return data[skip : skip + _HTML_PROBE_BYTES].decode(encoding, errors="replace")
    return data[:_HTML_PROBE_BYTES].decode("latin-1")


def _html_strength(head: str) -> str | None:
    """``"strong"`` for an unmistakable HTML start, ``"weak"`` for a bare tag, else None."""
    text = head.lstrip("\ufeff \t\r\n")
    while text.startswith("<!--"):
        end = text.find("-->")
        if end < 0:
            break
        text = text[end + 3 :].lstrip()
    lowered = text.lower()
    if _HTML_STRONG.match(text):
        return "strong"
    if lowered.startswith("<?xml"):
        if "<!doctype html" in lowered or "<html" in lowered:
            return "strong"
        if "<svg" in lowered:
            raise _unsupported("an SVG image")
        raise _unsupported("an XML document")
    if lowered.startswith("<svg"):
        raise _unsupported("an SVG image")
    if _HTML_TAG.match(text):
        return "weak"
    return None
