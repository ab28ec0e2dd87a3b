"""The PDF written page by page (report_pdf_file) is the file reportlab would write."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import pytest
from pypdf import PdfReader
from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate

from service.report_pdf_file import PackedCanvas


def _build(canvasmaker: object) -> bytes:
    out = io.BytesIO()
    style = getSampleStyleSheet()["BodyText"]
    story = [Paragraph(f"paragraph {n} " + "lorem ipsum " * 30, style) for n in range(400)]
    SimpleDocTemplate(out, pagesize=A4, pageCompression=1).build(story, canvasmaker=canvasmaker)
    return out.getvalue()


def test_the_streamed_file_is_byte_for_byte_reportlabs_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rl_config, "invariant", 1)  # fixed dates and document id
    ours = _build(functools.partial(PackedCanvas, scratch=tmp_path))
    theirs = _build(Canvas)
    assert ours == theirs
    reader = PdfReader(io.BytesIO(ours))
    assert len(reader.pages) > 10
    assert "paragraph 399" in reader.pages[-1].extract_text()
    assert list(tmp_path.iterdir()) == []  # the spool file was never visible
