"""The one chart of the evidence report: violations per day (or per week over long
spans) by platform, one point per violation when there are few, monitoring gaps shaded.

Drawn once with reportlab; the PDF embeds the drawing, the HTML report gets the same
drawing rendered as SVG (``renderSVG``), so both reports show the same picture.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import TYPE_CHECKING

from reportlab.graphics import renderSVG
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Circle, Drawing, Rect, String
from reportlab.lib import colors

if TYPE_CHECKING:
    from service.report import Fonts, Summary

CHART_TITLE = "Violations per day by platform"
WEEKLY_TITLE = "Violations per week by platform"
GAP_FILL = "#dddddd"  # monitoring gaps, behind the bars
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")


def chart_title(summary: Summary) -> str:
    return WEEKLY_TITLE if summary.weekly else CHART_TITLE


def chart_caption(summary: Summary, timezone: str) -> str:
    days = summary.days()
    span = f"from {days[0].isoformat()} to {days[-1].isoformat()}, " if days else ""
    unit = "week (from Monday)" if summary.weekly else "day"
    points = " One point per violation." if summary.few else ""
    gaps = " Shaded: a monitoring gap." if summary.gap_days else ""
    return f"Violations within the order period per {unit}, {span}days in {timezone}.{points}{gaps}"


def _day_label(day: date) -> str:
    return day.strftime("%m-%d")


def chart_drawing(summary: Summary, fonts: Fonts, width: float) -> Drawing:
    buckets = summary.buckets()
    days = [day for day, _ in buckets]
    drawing = Drawing(width, 230)
    drawing.add(String(0, 215, chart_title(summary), fontName=fonts.bold, fontSize=11))
    if not days:
        drawing.add(String(0, 180, "No violations within the order period.",
                           fontName=fonts.regular, fontSize=9))  # fmt: skip
        return drawing
    platforms = summary.platforms
    chart = VerticalBarChart()
    chart.x, chart.y, chart.height = 30, 50, 150
    chart.width = int(width - 40)
    chart.data = [[counts.get(p, 0) for _, counts in buckets] for p in platforms]
    chart.categoryAxis.style = "stacked"
    every = max(1, len(days) // 15)
    chart.categoryAxis.categoryNames = [
        _day_label(day) if i % every == 0 else "" for i, day in enumerate(days)
    ]
    chart.categoryAxis.labels.fontName = fonts.regular
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.labels.angle = 45
    chart.categoryAxis.labels.boxAnchor = "ne"
    chart.valueAxis.labels.fontName = fonts.regular
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    peak = max(1, max(sum(c.values()) for _, c in buckets))
    chart.valueAxis.valueStep = max(1, peak // 5)
    chart.valueAxis.valueMax = peak
    step = chart.width / len(days)
    for index, day in enumerate(days):
        if summary.has_gap(day):  # shaded behind the bars: a monitoring gap
            shade = Rect(chart.x + index * step, chart.y, step, chart.height)
            shade.fillColor, shade.strokeColor = colors.HexColor(GAP_FILL), None
            drawing.add(shade)
    for index in range(len(platforms)):
        # Few violations: the bars stay invisible and each violation is a point.
        fill = None if summary.few else colors.HexColor(PALETTE[index % len(PALETTE)])
        chart.bars[index].fillColor = fill
        chart.bars[index].strokeColor = None
    drawing.add(chart)
    if summary.few:
        _points(drawing, chart, buckets, platforms, peak)
    legend = Legend()
    legend.x, legend.y = 30, 12
    legend.fontName = fonts.regular
    legend.fontSize = 8
    legend.alignment = "right"
    legend.columnMaximum = 1
    legend.colorNamePairs = [
        (colors.HexColor(PALETTE[i % len(PALETTE)]), p) for i, p in enumerate(platforms)
    ]
    drawing.add(legend)
    return drawing


def _points(
    drawing: Drawing,
    chart: VerticalBarChart,
    buckets: list[tuple[date, Counter[str]]],
    platforms: list[str],
    peak: int,
) -> None:
    step, unit = chart.width / len(buckets), chart.height / peak
    radius = max(2.0, min(step / 2 - 0.5, unit / 2 - 0.5, 5.0))
    for index, (_, counts) in enumerate(buckets):
        y = chart.y + unit / 2
        for number, platform in enumerate(platforms):
            for _ in range(counts.get(platform, 0)):
                dot = Circle(chart.x + (index + 0.5) * step, y, radius)
                dot.fillColor = colors.HexColor(PALETTE[number % len(PALETTE)])
                dot.strokeColor = None
                drawing.add(dot)
                y += unit


def chart_svg(summary: Summary) -> str:
    """The PDF's chart drawing, rendered as inline SVG: one drawing for both reports."""
    from service.report import pdf_fonts  # the PDF's fonts, registered once there

    fonts = pdf_fonts()
    svg = renderSVG.drawToString(chart_drawing(summary, fonts, 640))
    # Inline SVG in HTML takes no XML prolog or DOCTYPE; the PDF's embedded font names
    # mean nothing to a browser, so name the same faces the way CSS does.
    svg = svg[svg.index("<svg") :]
    svg = svg.replace("<title>...</title>", f"<title>{chart_title(summary)}</title>", 1)
    svg = svg.replace("<desc>...</desc>", "", 1)
    family = "font-family: 'DejaVu Sans', Arial, sans-serif"
    svg = svg.replace(f"font-family: {fonts.bold};", f"{family}; font-weight: bold;")
    return svg.replace(f"font-family: {fonts.regular};", f"{family};")
