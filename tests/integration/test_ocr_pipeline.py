"""A scanned PDF (no text layer) goes through the real pipeline and is found by search."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw, ImageFont
from reportlab.pdfgen import canvas
from sqlalchemy import select

from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document
from ragstream.embedding import make_embedder
from ragstream.parsing import ocr
from ragstream.search import search
from ragstream.settings import Settings
from ragstream.state import DocumentStatus
from tests.integration.test_api_documents import run_stages
from tests.pipeline import prepare

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _tesseract() -> None:
    """OCR is a service these tests need: its absence fails them, it never skips them."""
    if ocr._binary() is None:
        pytest.fail("tesseract-ocr is not installed (apt-get install tesseract-ocr)")


SENTENCE = "The lighthouse keeper paints the iron railings every spring"


def image_only_pdf(text: str) -> bytes:
    font = ImageFont.load_default(size=44)
    image = Image.new("L", (1500, 200), 255)
    ImageDraw.Draw(image).text((60, 70), text, fill=0, font=font)
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=(612, 792))
    width, height = image.width * 72 / 300, image.height * 72 / 300
    pdf.drawInlineImage(image, 36, 792 - 36 - height, width, height)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def test_an_image_only_pdf_completes_and_is_found_by_search(settings: Settings) -> None:
    submitter = prepare(settings)
    document_id = submitter.submit(image_only_pdf(SENTENCE), filename="scan.pdf").document_id
    run_stages(settings, documents=1)
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            status = conn.execute(
                select(Document.status).where(Document.id == document_id)
            ).scalar_one()
            parsers = set(conn.execute(select(ChunkBuffer.parser)).scalars())
        assert status == DocumentStatus.COMPLETE.value
        assert parsers == {"pypdfium2+tesseract"}
        hits = search(engine, make_embedder(settings), SENTENCE, tenant=settings.tenant, k=3).hits
        assert hits and hits[0].document_id == document_id
        assert "lighthouse keeper paints" in hits[0].text.lower()
    finally:
        engine.dispose()
