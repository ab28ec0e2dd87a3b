"""The PDF's plain-text blocks and log table: wrapping, page splits, keep rules."""

from __future__ import annotations

import io
import re

from pypdf import PdfReader
from reportlab.lib.pagesizes import A4
from reportlab.platypus import Flowable, SimpleDocTemplate, Spacer

from service.report import pdf_lines
from service.report_pdf import pdf_fonts
from service.report_pdf_block import BLACK, MARK, Box, Look, TextBlock, wrap_lines
from service.report_pdf_table import LogTable


def _look(font: str, *, size: float = 9, leading: float = 12, indent: float = 17) -> Look:
    return Look(font, size, leading, indent=indent, back=None, pad=3, before=4, after=4)


def _pages(story: list[Flowable]) -> list[str]:
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4)
    doc.build(story)
    return [page.extract_text() for page in PdfReader(io.BytesIO(out.getvalue())).pages]


def test_a_long_text_split_over_pages_keeps_every_word_in_order() -> None:
    fonts = pdf_fonts()
    words = [f"w{n:05d}" for n in range(6000)]
    text = " ".join(words[:3000]) + "\n\n" + " ".join(words[3000:])
    look = _look(fonts.mono, size=8.5, leading=11)
    lines = tuple(tuple((p, look.font, BLACK) for p, _ in line) for line in pdf_lines(text))
    block = TextBlock([Box(look, lines, whole=False)], A4[1])
    pages = _pages([block])
    assert len(pages) > 3
    assert re.findall(r"w\d{5}", "".join(pages)) == words


def test_a_word_longer_than_a_line_is_cut_and_keeps_its_space() -> None:
    fonts = pdf_fonts()
    look = _look(fonts.mono)
    lines = wrap_lines([[("Alex " + "x" * 300, look.font, BLACK)]], look, 400)
    flat = [line[0][0] for line in lines]
    assert flat[0].startswith("Alex x")
    assert "".join(flat) == "Alex " + "x" * 300
    assert len(lines) >= 4


def test_control_marks_stay_red_and_words_keep_their_pieces() -> None:
    fonts = pdf_fonts()
    look = _look(fonts.regular)
    frags = [(p, look.font, MARK if mark else BLACK) for p, mark in pdf_lines("a\u202egpj b")[0]]
    (line,) = wrap_lines([frags], look, 400)
    assert line == (("a", look.font, BLACK), ("⟨U+202E⟩", look.font, MARK),
                    ("gpj b", look.font, BLACK))  # fmt: skip


def test_a_heading_is_never_alone_at_the_foot_of_a_page() -> None:
    fonts = pdf_fonts()
    body = _look(fonts.regular)
    heading = Box(_look(fonts.bold, size=11, leading=14), ((("HEADING", fonts.bold, BLACK),),),
                  glue=True)  # fmt: skip
    fields = Box(body, tuple(((f"field {n}", body.font, BLACK),) for n in range(5)))
    text = Box(body, tuple(((f"line {n}", body.font, BLACK),) for n in range(80)), whole=False)
    # Leave room for the heading and two lines only: the heading moves with its fields.
    frame = A4[1] - 72 * 2 - 12
    pages = _pages([Spacer(1, frame - 14 - 24 - 8), TextBlock([heading, fields, text], A4[1])])
    assert "HEADING" not in pages[0]
    assert pages[1].index("HEADING") < pages[1].index("field 4") < pages[1].index("line 0")
    lines = re.findall(r"line \d+", "".join(pages))
    assert lines == [f"line {n}" for n in range(80)]


def test_the_log_table_repeats_its_head_on_each_page_and_keeps_every_row() -> None:
    fonts = pdf_fonts()
    rows = [(str(n), f"2026-05-01 {n % 24:02d}:00", "reddit", "jdoe", "contact (high)",
             f"excerpt {n} " + "lorem ipsum " * 8) for n in range(1, 301)]  # fmt: skip
    head = ("No.", "Local date and time", "Platform", "Account", "Kind", "Excerpt")
    table = LogTable(
        head,
        rows,
        (28, 78, 50, 70, 78, None),
        _look(fonts.regular, size=7.5, leading=9, indent=0),
        pdf_lines,
    )
    pages = _pages([table])
    assert len(pages) > 3
    assert all(page.lstrip().startswith("No.") for page in pages)
    numbers = re.findall(r"^(\d+) 2026-05-01", "\n".join(pages), flags=re.MULTILINE)
    assert numbers == [str(n) for n in range(1, 301)]
