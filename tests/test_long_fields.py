"""Values a hostile platform can send that do not fit a column: a megabyte-long author,
a long guid, a handle that NFKC makes longer. They are cut when the Observation is
made (identifiers keep a hash of the whole value, so distinct ones stay distinct), the
cut is written into the evidence, the raw payload stays whole, and SQLite and
PostgreSQL accept exactly the same values."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import Runner, item, nocontact, rss, timeline, write_config  # noqa: F401
from watchers.base import FIELD_LIMITS, Observation

ODD_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=3000)


@settings(max_examples=60, deadline=None)
@given(handle=ODD_TEXT, native=ODD_TEXT, display=ODD_TEXT, url=ODD_TEXT)
def test_every_field_fits_its_limit(handle: str, native: str, display: str, url: str) -> None:
    obs = Observation(
        platform="rss",
        native_id=native or "x",
        kind="feed_entry",
        raw=b"<raw/>",
        watcher="w",
        author_handle=handle,
        author_display_name=display,
        url=url,
    )
    for name, limit in FIELD_LIMITS.items():
        value = getattr(obs, name)
        assert value is None or len(value) <= limit, name
    cut = len(handle) > 300 or len(native or "x") > 500 or len(display) > 1000
    assert ("cut to fit the store" in obs.capture_method) is cut
    assert obs.raw == b"<raw/>"


def test_long_identifiers_stay_distinct() -> None:
    common = "g" * 600
    first = Observation("rss", common + "1", "feed_entry", b"", "w")
    second = Observation("rss", common + "2", "feed_entry", b"", "w")
    assert len(first.native_id) <= 500
    assert first.native_id != second.native_id
    assert Observation("rss", common + "1", "feed_entry", b"", "w").native_id == first.native_id


def _stored_methods(database_url: str) -> list[str]:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            return [row[0] for row in db.execute("SELECT capture_method FROM evidence")]
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT capture_method FROM evidence"))
            return [row[0] for row in rows]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_long_author_and_guid_are_stored_on_both_stores(
    tmp_path: Path,
    database_url: str,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    long_author = "jdoe" + "x" * 5000  # contains the restrained handle: a suspected alt
    expanding = "jdoe" + "ﷺ" * 290  # fits (294), but NFKC makes each ﷺ 18 characters
    feed = rss(
        item("n1", "jdoe", "hey", "@alex_smith answer me", "Fri, 01 May 2026 10:00:00 GMT"),
        item("g" * 2000, "jdoe", "again", "@alex_smith answer", "Fri, 01 May 2026 11:00:00 GMT"),
        item("a1", long_author, "x", "@alex_smith look", "Fri, 01 May 2026 12:00:00 GMT"),
        item("a2", expanding, "y", "@alex_smith see", "Fri, 01 May 2026 13:00:00 GMT"),
    )
    feed_server.set("/f.xml", body=feed)
    config = write_config(
        tmp_path / "config.yaml",
        database_url,
        {"forum": feed_server.url("/f.xml")},
        {"phone": {"urls": [webhook_receiver.json_url()]}},
    )
    first = nocontact("run", "-c", str(config), "--once")
    assert "forum: 4 item(s) read" in first.stdout
    rows = timeline(nocontact, config)
    evidence = [e for row in rows for e in row["evidence"]]
    assert len(evidence) == 4
    authors = sorted(len(e["author"]) for e in evidence)
    assert authors[-1] <= 300
    assert any(len(e["native_id"]) <= 500 and "sha256:" in e["native_id"] for e in evidence)
    methods = _stored_methods(database_url)
    assert sum("cut to fit the store" in m for m in methods) == 2
    # A second run stores nothing new: the cut values are stable identities.
    nocontact("run", "-c", str(config), "--once")
    assert len([e for row in timeline(nocontact, config) for e in row["evidence"]]) == 4
