"""PNG, JPEG and TIFF images to blocks, by OCR (:mod:`ragstream.parsing.ocr`).

An image is a page; a multi-page TIFF is one page per frame.
"""

from __future__ import annotations

import io
import warnings
from functools import cache
from importlib.metadata import version

from PIL import Image, ImageSequence, UnidentifiedImageError

from ragstream.documents import ParsedDocument
from ragstream.errors import CorruptDocument, ParserLimitExceeded
from ragstream.parsing import ocr
from ragstream.parsing.blocks import BlockBuilder

PARSER = "image"
MAX_FRAMES = 500
"""More frames than this in one TIFF fails rather than OCR for hours."""


@cache
def parser_version() -> str:
    return f"pillow/{version('pillow')}"


def parse_image(data: bytes, content_type: str) -> ParsedDocument:
    builder = BlockBuilder()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            frames = getattr(image, "n_frames", 1)
            if frames > MAX_FRAMES:
                raise ParserLimitExceeded(f"parse: image has {frames} frames (limit {MAX_FRAMES})")
            for index, frame in enumerate(ImageSequence.Iterator(image)):
                frame.load()
                ocr.emit(builder, ocr.read_image(frame, page=index + 1), page=index + 1)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ParserLimitExceeded(f"parse: image too large to read: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptDocument(f"image is corrupt or truncated: {exc}") from None
    parser, parser_version_ = ocr.lineage(PARSER, parser_version())
    return ParsedDocument(
        blocks=builder.blocks,
        content_type=content_type,
        parser=parser,
        parser_version=parser_version_,
        page_count=frames,
    )
