"""The one chart of the evidence report: violations per day by platform.

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
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors

if TYPE_CHECKING:
    from service.report import Fonts, Summary

CHART_TITLE = "Violations per day by platform"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")


def chart_caption(summary: Summary, timezone: str) -> str:
    days = summary.days()
    span = f"from {days[0].isoformat()} to {days[-1].isoformat()}, " if days else ""
    return f"Violations within the order period per day, {span}days in {timezone}."


def _day_label(day: date) -> str:
    return day.strftime("%m-%d")


def chart_drawing(summary: Summary, fonts: Fonts, width: float) -> Drawing:
    days = summary.days()
    drawing = Drawing(width, 230)
    drawing.add(String(0, 215, CHART_TITLE, fontName=fonts.bold, fontSize=11))
    if not days:
        drawing.add(String(0, 180, "No violations within the order period.",
                           fontName=fonts.regular, fontSize=9))  # fmt: skip
        return drawing
    platforms = summary.platforms
    chart = VerticalBarChart()
    chart.x, chart.y, chart.height = 30, 50, 150
    chart.width = int(width - 40)
    chart.data = [
        [summary.per_day.get(day, Counter()).get(p, 0) for day in days] for p in platforms
    ]
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
    chart.valueAxis.valueStep = max(1, max(sum(c.values()) for c in summary.per_day.values()) // 5)
    for index in range(len(platforms)):
        chart.bars[index].fillColor = colors.HexColor(PALETTE[index % len(PALETTE)])
        chart.bars[index].strokeColor = None
    drawing.add(chart)
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


def chart_svg(summary: Summary) -> str:
    """The PDF's chart drawing, rendered as inline SVG: one drawing for both reports."""
    from service.report import pdf_fonts  # the PDF's fonts, registered once there

    fonts = pdf_fonts()
    svg = renderSVG.drawToString(chart_drawing(summary, fonts, 640))
    # Inline SVG in HTML takes no XML prolog or DOCTYPE; the PDF's embedded font names
    # mean nothing to a browser, so name the same faces the way CSS does.
    svg = svg[svg.index("<svg") :]
    svg = svg.replace("<title>...</title>", f"<title>{CHART_TITLE}</title>", 1)
    svg = svg.replace("<desc>...</desc>", "", 1)
    family = "font-family: 'DejaVu Sans', Arial, sans-serif"
    svg = svg.replace(f"font-family: {fonts.bold};", f"{family}; font-weight: bold;")
    return svg.replace(f"font-family: {fonts.regular};", f"{family};")
