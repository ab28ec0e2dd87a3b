"""The timeline chart is readable for 3 and for 3,000 violations (#14 item 6): one
point per violation when few, weekly bars over a long span, gaps shaded."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta

import pypdfium2
from reportlab.lib.pagesizes import A4
from reportlab.platypus import SimpleDocTemplate

from service.report import Summary, chart_caption, chart_drawing, chart_svg, pdf_fonts

START = date(2026, 1, 20)
BLUE = (0x1F, 0x77, 0xB4)


def summary_of(days: list[date], gaps: set[date] = frozenset()) -> Summary:  # type: ignore[assignment]
    summary = Summary()
    for day in days:
        summary.add("contact", "high", "reddit", day, True)
    summary.gap_days = set(gaps)
    return summary


def blue_pixels(summary: Summary) -> int:
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4)
    doc.build([chart_drawing(summary, pdf_fonts(), doc.width)])
    document = pypdfium2.PdfDocument(out.getvalue())
    try:
        image = document[0].render(scale=2).to_pil().convert("RGB")
        return sum(count for count, colour in image.getcolors(1 << 24) or [] if colour == BLUE)
    finally:
        document.close()


def test_three_violations_over_230_days_are_three_points() -> None:
    few = summary_of([START, START + timedelta(days=100), START + timedelta(days=229)])
    svg = chart_svg(few)
    assert svg.count("<circle") == 3
    assert "Violations per week by platform" in svg
    assert len(re.findall(r"<rect [^>]*fill=\"#1f77b4\"><title>", svg)) == 0, "no bars"
    assert "One point per violation" in chart_caption(few, "UTC")
    assert blue_pixels(few) > 3 * 100, "three visible points in the PDF"


def test_three_thousand_violations_are_weekly_bars() -> None:
    many = summary_of([START + timedelta(days=n % 230) for n in range(3000)])
    svg = chart_svg(many)
    assert "<circle" not in svg
    bars = re.findall(r"<rect [^>]*fill=\"#1f77b4\"><title>(\S+) reddit: (\d+)", svg)
    assert 30 <= len(bars) <= 35, "one bar per week"
    assert sum(int(count) for _, count in bars) == 3000
    assert all(date.fromisoformat(day).weekday() == 0 for day, _ in bars), "weeks from Monday"
    width = float(re.search(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    assert width >= 15, "bars are not hairlines"
    assert blue_pixels(many) > 5000


def test_a_short_span_stays_daily_and_gaps_are_shaded() -> None:
    days = [START + timedelta(days=n) for n in range(0, 10, 3)]
    daily = summary_of(days, gaps={START + timedelta(days=1)})
    svg = chart_svg(daily)
    assert "Violations per day by platform" in svg
    assert svg.count("monitoring gap</title>") == 1
