"""Keep the case, not the world (#14 item 5): a busy forum feed of 50 entries with 2
relevant ones leaves no text of the other 48 anywhere in the store, on SQLite (the
database files' bytes) and on PostgreSQL (every table's rows), and the next poll
neither stores nor alerts anything again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, select

from service.config import parse_config
from service.models import Evidence, OutboxAlert, SeenItem
from service.pipeline import Pipeline
from service.planner import AlertPlanner
from service.store import Store
from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.test_end_to_end import item, rss

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)


def stranger(n: int) -> tuple[str, list[str]]:
    """An uninvolved entry and the words of it that must never be stored."""
    words = [f"Gardenerq{n:02d}", f"Tulipzx{n:02d} bloomed", f"Hedgewq{n:02d}"]
    body = f"{words[1]} today near the {words[2]} path"
    return item(f"g{n}", words[0], f"Spring note {n}", body, "Fri, 08 May 2026 09:00:00 GMT"), words


def forum() -> tuple[bytes, list[str]]:
    entries: list[str] = []
    secrets: list[str] = []
    for n in range(48):
        entry, words = stranger(n)
        entries.append(entry)
        secrets += words
    entries.insert(
        10, item("hit", "jdoe", "hey", "@alex_smith answer me", "Fri, 08 May 2026 10:00:00 GMT")
    )
    # No target, but written by an associate: the case's evidence too.
    entries.insert(
        30, item("assoc", "jdoe_friend", "plans", "road trip soon", "Fri, 08 May 2026 11:00:00 GMT")
    )
    return rss(*entries), secrets


def pipeline(engine: Engine, url: str) -> Pipeline:
    settings = parse_config(
        f"""
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15, terms: [no_contact, no_mention]}}
    protected: {{names: ["Alex Smith"], handles: {{rss: [alex_smith]}}}}
    restrained:
      names: ["John Doe"]
      handles: {{rss: [jdoe]}}
      associates: {{rss: [jdoe_friend]}}
    alert: [phone]
watchers:
  - {{type: rss, name: forum, url: "{url}", every: 5m}}
alerts:
  phone: {{urls: ["json://127.0.0.1:9/unused"]}}
"""
    )
    store = Store(engine, cases=settings.cases, planner=AlertPlanner.from_settings(settings))
    return Pipeline(settings, store, clock=lambda: NOW)


def every_value(engine: Engine) -> list[str]:
    """Every cell of every table as text (bytes decoded), on any backend."""
    metadata = MetaData()
    metadata.reflect(engine)
    values: list[str] = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for cell in row:
                    if isinstance(cell, bytes):
                        values.append(cell.decode("utf-8", "replace"))
                    elif cell is not None:
                        values.append(str(cell))
    return values


def database_files(engine: Engine) -> bytes:
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return b""
    main = Path(engine.url.database)
    return b"".join(p.read_bytes() for p in main.parent.glob(main.name + "*"))


def test_a_busy_feed_keeps_only_the_case(engine: Engine, feed_server: FeedServer) -> None:  # noqa: F811
    body, secrets = forum()
    feed_server.set("/forum.xml", body=body)
    runner = pipeline(engine, feed_server.url("/forum.xml"))
    try:
        first = runner.poll("forum")
        assert (first.ok, first.observations) == (True, 50)
        second = runner.poll("forum")
    finally:
        runner.close()

    with engine.connect() as connection:
        texts = connection.scalars(select(Evidence.text).order_by(Evidence.seq)).all()
        markers = connection.scalar(select(SeenItem.marker).limit(1))
        seen = len(connection.scalars(select(SeenItem.marker)).all())
        alerts = len(connection.scalars(select(OutboxAlert.id)).all())
    assert texts == ["hey\n\n@alex_smith answer me", "plans\n\nroad trip soon"]
    assert seen == 48
    assert len(markers or "") == 64
    assert alerts == 1
    assert (second.ok, second.new_evidence, second.queued_alerts) == (True, 0, 0)

    cells = "\n".join(every_value(engine))
    files = database_files(engine)
    assert "road trip soon" in cells, "the check can see stored text"
    found: list[Any] = [w for w in secrets if w in cells or w.encode() in files]
    assert found == []


def test_an_uninvolved_entry_edited_into_a_hit_is_kept(
    engine: Engine,
    feed_server: FeedServer,  # noqa: F811
) -> None:
    plain = item("e1", "gardener", "roses", "roses are red", "Fri, 08 May 2026 09:00:00 GMT")
    feed_server.set("/forum.xml", body=rss(plain))
    runner = pipeline(engine, feed_server.url("/forum.xml"))
    try:
        assert runner.poll("forum").new_evidence == 0
        feed_server.set("/forum.xml", body=rss(plain.replace("roses are red", "Alex Smith lies")))
        # A stranger naming her is no hit (no known author), so still only a marker.
        assert runner.poll("forum").new_evidence == 0
        feed_server.set("/forum.xml", body=rss(plain.replace("gardener", "jdoe")))
        assert runner.poll("forum").new_evidence == 1
    finally:
        runner.close()
    with engine.connect() as connection:
        assert connection.scalars(select(Evidence.author_handle)).all() == ["jdoe"]
