"""The timeline chart is readable for 3 and for 3,000 violations (#14 item 6): one
point per violation when few, weekly bars over a long span, gaps shaded."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pypdfium2
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Rect
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.platypus import SimpleDocTemplate

from service.chart import GAP_FILL, chart_caption, chart_drawing, chart_svg
from service.report import Summary, pdf_fonts

START = date(2026, 1, 20)
BLUE = (0x1F, 0x77, 0xB4)


def summary_of(days: list[date], gaps: set[date] = frozenset()) -> Summary:  # type: ignore[assignment]
    summary = Summary()
    for day in days:
        summary.add("contact", "high", "reddit", day, True)
    summary.gap_days = set(gaps)
    return summary


# How the one drawing's gap shading reads once rendered as SVG (service.chart).
SVG_GAP_FILL = "fill: rgb(86%,86%,86%)"


def drawn(summary: Summary) -> tuple[VerticalBarChart, list[Rect]]:
    """The bar chart and the gap shades of the one drawing both reports use."""
    drawing = chart_drawing(summary, pdf_fonts(), 640)
    chart = next(part for part in drawing.contents if isinstance(part, VerticalBarChart))
    shades = [
        part
        for part in drawing.contents
        if isinstance(part, Rect) and part.fillColor == colors.HexColor(GAP_FILL)
    ]
    return chart, shades


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
    assert drawn(few)[0].bars[0].fillColor is None, "no bars"
    assert "One point per violation" in chart_caption(few, "UTC")
    assert blue_pixels(few) > 3 * 100, "three visible points in the PDF"


def test_three_thousand_violations_are_weekly_bars() -> None:
    many = summary_of([START + timedelta(days=n % 230) for n in range(3000)])
    svg = chart_svg(many)
    assert "<circle" not in svg
    chart, _ = drawn(many)
    bars = chart.data[0]
    assert 30 <= len(bars) <= 35, "one bar per week"
    assert sum(bars) == 3000
    assert all(day.weekday() == 0 for day, _ in many.buckets()), "weeks from Monday"
    assert chart.width / len(bars) >= 15, "bars are not hairlines"
    assert blue_pixels(many) > 5000


def test_a_short_span_stays_daily_and_gaps_are_shaded() -> None:
    days = [START + timedelta(days=n) for n in range(0, 10, 3)]
    daily = summary_of(days, gaps={START + timedelta(days=1)})
    svg = chart_svg(daily)
    assert "Violations per day by platform" in svg
    assert len(drawn(daily)[1]) == 1
    assert svg.count(SVG_GAP_FILL) == 1
