"""Monitoring coverage (#14 item 3): watched periods and gaps with their reasons, in
the chain, in the report's "Monitoring coverage" section and shaded in the chart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pypdfium2
from pypdf import PdfReader
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from service.coverage import NOT_POLLED, Coverage, close_open_periods
from service.export import export_case
from service.models import ChainRecord
from service.verify import verify_store
from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.test_end_to_end import item, rss
from tests.test_retention import pipeline

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
EVERY = timedelta(minutes=5)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def coverage_records(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(ChainRecord.data)
            .where(ChainRecord.record == "coverage")
            .order_by(ChainRecord.seq)
        )
        return [json.loads(data) for (data,) in rows]


def test_runs_and_gaps_with_their_reasons_are_chained(engine: Engine) -> None:
    coverage = Coverage(engine)
    cases = ["smith-v-doe"]
    for minutes in (0, 5, 10):
        coverage.success("forum", EVERY, cases, T0 + timedelta(minutes=minutes))
    coverage.failure("forum", "the feed answered HTTP 503")
    coverage.failure("forum", "timed out")  # the first error is the reason
    coverage.success("forum", EVERY, cases, T0 + timedelta(hours=2))
    coverage.success("forum", EVERY, cases, T0 + timedelta(hours=2, minutes=5))
    # Nothing ran for a day: the service was down.
    coverage.success("forum", EVERY, cases, T0 + timedelta(days=1))

    assert coverage_records(engine) == [
        {"watcher": "forum", "cases": cases, "status": "watched",
         "from": "2026-05-01T10:00:00Z", "to": "2026-05-01T10:10:00Z"},
        {"watcher": "forum", "cases": cases, "status": "gap", "from": "2026-05-01T10:10:00Z",
         "to": "2026-05-01T12:00:00Z", "reason": "the feed answered HTTP 503"},
        {"watcher": "forum", "cases": cases, "status": "watched",
         "from": "2026-05-01T12:00:00Z", "to": "2026-05-01T12:05:00Z"},
        {"watcher": "forum", "cases": cases, "status": "gap", "from": "2026-05-01T12:05:00Z",
         "to": "2026-05-02T10:00:00Z", "reason": NOT_POLLED},
    ]  # fmt: skip
    close_open_periods(sessionmaker(engine), T0 + timedelta(days=2))
    assert len(coverage_records(engine)) == 4, "a run of one poll has no length to close"
    report = verify_store(sessionmaker(engine))
    assert report.ok, report.problem_lines()
    assert report.chain_records == 4


def gap_pixels(pdf: Path) -> int:
    document = pypdfium2.PdfDocument(pdf)
    try:
        shaded = 0
        for index in range(min(2, len(document))):
            image = document[index].render(scale=1).to_pil().convert("RGB")
            colours = image.getcolors(maxcolors=1 << 24) or []
            shaded += sum(count for count, colour in colours if colour == (221, 221, 221))
        return shaded
    finally:
        document.close()


def test_a_watcher_down_for_a_day_is_a_gap_in_the_report_and_the_chart(
    engine: Engine,
    feed_server: FeedServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    first = item("p1", "jdoe", "hey", "@alex_smith answer me", "Fri, 01 May 2026 10:00:00 GMT")
    later = item(
        "p2", "jdoe", "again", "@alex_smith where are you", "Sun, 03 May 2026 09:00:00 GMT"
    )
    feed_server.set("/forum.xml", body=rss(first))
    runner = pipeline(engine, feed_server.url("/forum.xml"))
    clock = Clock()
    runner.clock = clock
    try:
        for minutes in (0, 5, 10):
            clock.now = T0 + timedelta(minutes=minutes)
            assert runner.poll("forum").ok
        feed_server.set("/forum.xml", status=500, body=b"down")
        clock.now = T0 + timedelta(minutes=15)
        assert not runner.poll("forum").ok
        feed_server.set("/forum.xml", body=rss(first, later))
        for minutes in (0, 5):
            clock.now = T0 + timedelta(days=2, minutes=minutes)
            assert runner.poll("forum").ok
    finally:
        runner.close()

    sessions = sessionmaker(engine, expire_on_commit=False)
    close_open_periods(sessions, T0 + timedelta(days=3))
    out = tmp_path / "packet"
    export_case(sessions, runner.settings.case("smith-v-doe"), out, now=T0 + timedelta(days=3))

    html = (out / "report.html").read_text()
    section = html[html.index("<h2>Monitoring coverage</h2>") : html.index("<h2>Violations</h2>")]
    assert "Source forum" in section
    assert "watched 2026-05-01T10:00:00Z – 2026-05-01T10:10:00Z" in section
    assert "GAP 2026-05-01T10:10:00Z – 2026-05-03T10:00:00Z: " in section
    assert "HTTP 500" in section
    assert (
        section.index("watched 2026-05-01")
        < section.index("GAP")
        < section.index("watched 2026-05-03")
    )
    chart = html[html.index("<svg") : html.index("</svg>")]
    # The one drawing's gap shade as rendered to SVG (service.chart).
    assert chart.count("fill: rgb(86%,86%,86%)") == 3, "1, 2 and 3 May are shaded"

    text = "\n".join(page.extract_text() for page in PdfReader(out / "report.pdf").pages)
    assert "Monitoring coverage" in text
    assert "GAP 2026-05-01T10:10:00Z" in text
    assert gap_pixels(out / "report.pdf") > 500, "the chart shades the gap"
    data = json.loads((out / "evidence.json").read_text())
    statuses = [r["data"]["status"] for r in data["chain"]["records"] if r["record"] == "coverage"]
    assert statuses == ["watched", "gap", "watched"]
