"""The continuous service with a hostile feed and a stuck one (#10 item 1): the service
(``Service.run_forever`` in a thread, heartbeat every 0.5 s) polls a feed with a 1 MB
author, a feed whose server never answers within the test, and a normal feed. The
normal feed's evidence and the hostile feed's cut entry are stored while the stuck
poll waits, and the heartbeat keeps beating throughout, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from service import models
from service.config import load_config
from service.db import session_factory
from service.scheduler import Service
from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.test_end_to_end import FORUM_FEED
from tests.test_hostile_feeds import HOSTILE

pytestmark = pytest.mark.timeout(120)

SHORT = (timedelta(seconds=0.5), timedelta(seconds=0.5))


@pytest.mark.postgres
def test_a_hostile_and_a_stuck_feed_stop_neither_the_others_nor_the_heartbeat(
    tmp_path: Path,
    database_url: str,
    feed_server: FeedServer,  # noqa: F811
) -> None:
    feed_server.set("/good.xml", body=FORUM_FEED)
    feed_server.set("/bad.xml", body=HOSTILE["author_1mb"])
    feed_server.set("/stuck.xml", body=FORUM_FEED, delay=10)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""\
database: {database_url}
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15, terms: [no_contact, no_mention]}}
    protected: {{names: ["Alex Smith"], handles: {{rss: [alex_smith]}}}}
    restrained: {{names: ["John Doe"], handles: {{rss: [jdoe]}}}}
watchers:
  - {{type: rss, name: stuck, url: "{feed_server.url("/stuck.xml")}", every: 10s,
      timeout: 30s, deadline: 30s}}
  - {{type: rss, name: hostile, url: "{feed_server.url("/bad.xml")}", every: 10s}}
  - {{type: rss, name: forum, url: "{feed_server.url("/good.xml")}", every: 10s}}
""",
        encoding="utf-8",
    )
    service = Service(load_config(config), intervals=SHORT)
    sessions = session_factory(service.engine)
    stop = threading.Event()
    thread = threading.Thread(target=service.run_forever, args=(stop,), daemon=True)
    thread.start()
    beats: list[float] = []  # when a new heartbeat was seen
    last = None
    stored: set[str] = set()
    try:
        end = time.monotonic() + 12
        while time.monotonic() < end:
            with sessions() as session:
                beat = session.scalar(select(models.Heartbeat.beat_at))
                stored = set(session.scalars(select(models.Evidence.watcher)).all())
            if beat is not None and beat != last:
                beats.append(time.monotonic())
                last = beat
            if {"forum", "hostile"} <= stored and time.monotonic() > end - 6:
                break
            time.sleep(0.1)
        stuck_requests = feed_server.requests_for("/stuck.xml")
    finally:
        stop.set()
        thread.join(timeout=60)
        service.close()

    assert stuck_requests, "the stuck feed was being polled meanwhile"
    assert {"forum", "hostile"} <= stored
    assert len(beats) >= 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
    assert max(gaps) < 3.0, f"heartbeat gap {max(gaps):.1f}s"
    with sessions() as session:
        methods = session.scalars(
            select(models.Evidence.capture_method).where(models.Evidence.watcher == "hostile")
        ).all()
    assert any("cut before parsing: <author> text over 320" in m for m in methods)
