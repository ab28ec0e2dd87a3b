"""Crash cycles (#10 item 4): ``nocontact run --once`` is killed with SIGKILL at random
points (starting, polling, storing, sending to a slow receiver) and started again,
until a run ends by itself. Then no evidence and no alert is lost, and each kill has
cost at most one duplicated message: every alert is marked sent, every target has
received every violation, and the messages that carried nothing new number no more
than the kills."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from service import models
from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import FORUM_FEED, Runner, nocontact, timeline, write_config  # noqa: F401

pytestmark = pytest.mark.timeout(240)

KILLS = 5
TARGETS = ("/a", "/b", "/c")
_SHOW = re.compile(r"nocontact show ([0-9a-f-]{36})")


def _start(config: Path) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NOCONTACT_")}
    return subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "service", "run", "-c", str(config), "--once"],
        cwd=config.parent,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _outbox(database_url: str) -> list[tuple[str, str, str | None]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            row = models.OutboxAlert
            found = connection.execute(select(row.state, row.category, row.violation_id)).all()
            return [(r.state, r.category, r.violation_id) for r in found]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_sigkill_at_random_points_loses_nothing_and_duplicates_at_most_one_message_per_kill(
    tmp_path: Path,
    database_url: str,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    feed_server.set("/forum.xml", body=FORUM_FEED)
    webhook_receiver.delay = 0.4
    config = write_config(
        tmp_path / "config.yaml",
        database_url,
        {"forum": feed_server.url("/forum.xml")},
        {"phone": {"urls": [webhook_receiver.json_url(path) for path in TARGETS]}},
    )
    chance = random.Random(10)
    kills = 0
    for _ in range(KILLS):
        child = _start(config)
        time.sleep(chance.uniform(0.3, 3.0))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait()
    for _ in range(3):  # runs to their end: each takes what the killed ones left
        _start(config).wait(timeout=120)

    # No evidence lost: the feed's four order-period violations and the old one.
    rows = timeline(nocontact, config, "--all")
    assert len(rows) == 4
    assert sum(len(row["evidence"]) for row in rows) == 4
    in_period = {row["id"] for row in rows if row["in_order_period"]}
    assert len(in_period) == 3
    # No alert lost: every violation alert is sent, and every target received each.
    outbox = _outbox(database_url)
    assert {v for _, category, v in outbox if category == "violation"} == in_period
    assert all(state == "sent" for state, _, _ in outbox), outbox
    duplicates = 0
    for path in TARGETS:
        received: set[str] = set()
        for request in (r for r in webhook_receiver.requests if r.path == path):
            carried = set(_SHOW.findall(request.body.decode("utf-8")))
            if carried and carried <= received:
                duplicates += 1
            received |= carried
        assert received == in_period, path
    assert duplicates <= kills
