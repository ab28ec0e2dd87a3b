"""The report built for a judge (#14 item 6), checked by text extraction and by
rendering its pages to images: the log table first, violations numbered 1..n, the
out-of-period item in Appendix A, headings kept with their content, plain-text
reasons, the verification page and the custodian's certification."""

from __future__ import annotations

import re
from pathlib import Path

import pypdfium2
import pytest
from pypdf import PdfReader

from service.export import export_case
from tests.fakes.evidence_data import EXPORT_TIME, case_settings, populate, sqlite_sessions

FOOTER = re.compile(r"^nocontact evidence report — case .* — page \d+$")


@pytest.fixture(scope="module")
def packet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("judge")
    _, sessions = sqlite_sessions(folder)
    # Eight violations; the first happened before the order took effect.
    populate(sessions, violations=8)
    out = folder / "packet"
    export_case(sessions, case_settings(), out, now=EXPORT_TIME)
    return out


def pages(packet: Path) -> list[str]:
    return [page.extract_text() for page in PdfReader(packet / "report.pdf").pages]


def test_the_log_table_comes_first_and_numbers_only_violations(packet: Path) -> None:
    texts = pages(packet)
    assert "VERIFICATION FAILED" not in texts[0]
    assert "Verification at export: verified" in texts[0]
    log = texts[1]
    assert log.index("Violation log") < log.index("No.") < log.index("Excerpt")
    assert "7 violations within the order period" in log
    assert "1 more items outside the order period are in Appendix A" in log
    # Cells wrap in the extracted text: number, date, time on lines of their own.
    rows = re.findall(r"^(\d)\s+2026-05-0\d\s+\d\d:\d\d", log, flags=re.MULTILINE)
    assert rows == ["1", "2", "3", "4", "5", "6", "7"]
    whole = "\n".join(texts)
    titles = re.findall(r"^(Violation \d+|Appendix item A\d+)", whole, flags=re.MULTILINE)
    assert titles == [f"Violation {n}" for n in range(1, 8)] + ["Appendix item A1"]
    assert whole.index("Violation 7:") < whole.index("Appendix A: recorded outside the order")
    assert "message 0 to Alex Smith" in whole[whole.index("Appendix A: recorded") :]


def test_reasons_are_plain_text(packet: Path) -> None:
    whole = "\n".join(pages(packet))
    assert "`" not in whole
    assert "author “jdoe” is the restrained party" in whole
    html = (packet / "report.html").read_text()
    assert "`" not in html


def test_headings_are_never_alone_at_the_foot_of_a_page(packet: Path) -> None:
    for number, text in enumerate(pages(packet), 1):
        lines = [line for line in text.splitlines() if line.strip() and not FOOTER.match(line)]
        assert lines, f"page {number} is empty"
        assert not re.match(r"^(Violation \d+|Appendix item A\d+|Evidence seq \d+)", lines[-1]), (
            f"page {number} ends with a heading: {lines[-1]!r}"
        )


def test_verification_page_and_certification_template(packet: Path) -> None:
    texts = pages(packet)
    verify_page = next(i for i, t in enumerate(texts) if "How to verify this packet" in t)
    text = " ".join(texts[verify_page].split())
    assert "sha256sum -c MANIFEST.sha256" in text
    assert "Custodian's certification (template)" in text
    assert "I declare under penalty of perjury" in text
    assert re.search(r"chain head at the case's last record is seq \d+, SHA-256 [0-9a-f]{64}", text)
    html = (packet / "report.html").read_text()
    assert html.index("<h2>Violation log</h2>") < html.index("<h2>Summary</h2>")
    assert "How to verify this packet" in html


def test_pages_render_to_images_with_content(packet: Path) -> None:
    document = pypdfium2.PdfDocument(packet / "report.pdf")
    try:
        assert len(document) >= 4
        for index in (0, 1, len(document) - 1):
            image = document[index].render(scale=1).to_pil().convert("L")
            dark = sum(count for count, level in image.getcolors(256) or [] if level < 128)
            assert dark > 500, f"page {index + 1} renders blank"
        # The log table is drawn with grid lines: long runs of grey pixels.
        log = document[1].render(scale=1).to_pil().convert("RGB")
        grid = sum(
            count
            for count, colour in log.getcolors(1 << 24) or []
            if colour[0] == colour[1] == colour[2] and 120 < colour[0] < 200
        )
        assert grid > 300
    finally:
        document.close()
