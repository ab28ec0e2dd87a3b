"""Alerts a frightened person can live with (#18), through `run` as a user runs it.

The service runs continuously in this process (``Service.run_forever`` in a thread, with
short delivery and heartbeat intervals and an injected clock that the test can move
forward); a local feed server plays the platform, the local webhook receiver plays the
phone. Watchers poll every 10 s, the shortest interval the config allows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from service import models
from service.config import load_config
from service.scheduler import Service
from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.fakes.webhook_receiver import (  # noqa: F401
    ReceivedRequest,
    WebhookReceiver,
    webhook_receiver,
)
from tests.test_end_to_end import item, rss

pytestmark = pytest.mark.timeout(180)

SHORT = (timedelta(seconds=0.5), timedelta(seconds=0.5))


class ShiftClock:
    """The wall clock moved to ``start``; ``jump_to`` moves it again."""

    def __init__(self, start: datetime) -> None:
        self._lock = threading.Lock()
        self._offset = start - datetime.now(UTC)

    def __call__(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def jump_to(self, moment: datetime) -> None:
        with self._lock:
            self._offset = moment - datetime.now(UTC)


def write_config(tmp_path: Path, feed_url: str, routes: str, *, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""\
database: sqlite:///nocontact.db
{extra}
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15, expires: 2027-01-15, terms: [no_contact, no_mention]}}
    protected: {{names: ["Alex Smith"], handles: {{rss: [alex_smith]}}}}
    restrained: {{names: ["John Doe"], handles: {{rss: [jdoe]}}}}
    alert: [phone]
    timezone: Europe/Berlin
watchers:
  - {{type: rss, name: forum, url: "{feed_url}", every: 10s, timeout: 5s}}
alerts:
{routes}
""",
        encoding="utf-8",
    )
    return path


@contextmanager
def running(config: Path, clock: ShiftClock) -> Iterator[Service]:
    service = Service(load_config(config), clock=clock, intervals=SHORT)
    stop = threading.Event()
    thread = threading.Thread(target=service.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        stop.set()
        thread.join(timeout=60)
        service.close()


def wait_for(check: Callable[[], bool], seconds: float = 40.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not true within {seconds}s: {check}")


def messages(receiver: WebhookReceiver, path: str = "/phone") -> list[dict[str, Any]]:
    found: list[ReceivedRequest] = [r for r in receiver.accepted if r.path == path]
    return [r.json for r in found]


def rfc822(moment: datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


def test_a_follow_up_within_the_group_window_is_one_update_after_group_interval(
    tmp_path: Path,
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    start = datetime(2026, 5, 1, 20, 10, tzinfo=UTC)
    outside = item("p1", "jdoe", "hi", "@alex_smith I'm outside", rfc822(start))
    feed_server.set("/feed.xml", rss(outside))
    feed_server.set("/ping/hc-uuid", b"OK")
    routes = f"""\
  phone: {{urls: ["{webhook_receiver.json_url("/phone")}"], group_wait: 1s,
           group_interval: 10s}}"""
    extra = f'heartbeat_url: "{feed_server.url("/ping/hc-uuid")}"'
    config = write_config(tmp_path, feed_server.url("/feed.xml"), routes, extra=extra)

    with running(config, ShiftClock(start + timedelta(minutes=8))):
        wait_for(lambda: len(messages(webhook_receiver)) == 1)
        # The restrained party writes again, 6.5 minutes later: the same violation.
        at = [rfc822(start + timedelta(seconds=s)) for s in (390, 420)]
        later = [
            item("p2", "jdoe", "hi", "@alex_smith we need to talk", at[0]),
            item("p3", "jdoe", "hi", "@alex_smith answer", at[1]),
        ]
        feed_server.set("/feed.xml", rss(outside, *later))
        changed = time.monotonic()
        wait_for(lambda: len(messages(webhook_receiver)) == 2)
        waited = time.monotonic() - changed
        polls = len(feed_server.requests_for("/feed.xml"))
        wait_for(lambda: len(feed_server.requests_for("/feed.xml")) > polls + 1, seconds=30)
        time.sleep(1.5)  # a few delivery rounds

    first, update = messages(webhook_receiver)
    assert first["title"] == "nocontact: HIGH — contact by restrained party (smith-v-doe)"
    assert update["title"].startswith(
        "nocontact: HIGH — update: 2 more messages from jdoe since 22:16"
    )
    assert "Update on an alert already sent" in update["message"]
    assert "we need to talk" not in update["message"]  # no quotes unless include_content
    assert waited >= 10  # group_interval, not one push per message
    assert len(messages(webhook_receiver)) == 2
    # The dead-man's switch was pinged by the running service.
    assert feed_server.requests_for("/ping/hc-uuid")


def lookalike(n: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "jdoe_" + letters[n // 676] + letters[n // 26 % 26] + letters[n % 26]


def test_a_pile_on_of_2000_look_alikes_is_at_most_max_per_hour_plus_one_messages(
    tmp_path: Path,
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    posted = datetime(2026, 5, 1, 10, 55, tzinfo=UTC)
    pile = [
        item(f"x{n}", lookalike(n), "x", f"@alex_smith #{n}", rfc822(posted + timedelta(seconds=n)))
        for n in range(2000)
    ]
    feed_server.set("/feed.xml", rss(*pile))
    routes = f"""\
  phone: {{urls: ["{webhook_receiver.json_url("/phone")}"], group_wait: 1s, max_per_hour: 12}}"""
    config = write_config(tmp_path, feed_server.url("/feed.xml"), routes)
    clock = ShiftClock(datetime(2026, 5, 1, 11, 58, 30, tzinfo=UTC))

    with running(config, clock) as service:
        wait_for(lambda: len(messages(webhook_receiver)) == 1, seconds=120)
        time.sleep(2)
        assert len(messages(webhook_receiver)) == 1  # the rest wait for the hour's end
        clock.jump_to(datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC))
        wait_for(lambda: len(messages(webhook_receiver)) == 2)
        time.sleep(1.5)
        sessions = service.sessions

    first, folded = messages(webhook_receiver)
    assert len(messages(webhook_receiver)) <= 12 + 1
    assert first["title"] == "nocontact: HIGH — 12 alerts (smith-v-doe)"
    # Look-alikes whose names fold to the same skeleton share a violation: every
    # item is counted, in one message or the other.
    first_items = sum(
        int(line.split()[1])
        for line in first["message"].splitlines()
        if line.startswith("Evidence:")
    )
    body = folded["message"]
    held = int(body.split(" alert(s) held back")[0])
    assert folded["title"] == f"nocontact: HIGH — {held} alerts in one message (smith-v-doe)"
    assert f"{held} alert(s) held back (more than 12 alerts in an hour)" in body
    assert f"{2000 - first_items} item(s) from {2000 - first_items} account(s)" in body
    assert f"{held} × possible alternate accounts" in body
    assert f"Items by author ({2000 - first_items}):" in body
    assert "See them: nocontact timeline --case smith-v-doe" in body
    attempt, outbox = models.DeliveryAttempt, models.OutboxAlert
    with sessions() as session:
        log = session.execute(select(attempt.outbox_id, attempt.message)).all()
        unsent = select(func.count()).select_from(outbox).where(outbox.state != "sent")
        pending = session.scalar(unsent)
    # Every alert recorded once for the one target, and which message carried it.
    assert len(log) == len({outbox_id for outbox_id, _ in log}) == 12 + held
    per_message = [sum(1 for _, m in log if m == message) for message in {m for _, m in log}]
    assert sorted(per_message) == [12, held]
    assert pending == 0


def test_quiet_hours_hold_a_medium_alert_until_morning_and_a_high_one_breaks_through(
    tmp_path: Path,
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    night = datetime(2026, 5, 1, 21, 30, tzinfo=UTC)  # 23:30 in Berlin
    mention_at, contact_at = (rfc822(night - timedelta(minutes=m)) for m in (30, 5))
    feed_server.set(
        "/feed.xml",
        rss(
            item("m1", "jdoe", "x", "Everyone, Alex Smith lied", mention_at),
            item("c1", "jdoe", "x", "@alex_smith open the door", contact_at),
        ),
    )
    routes = f"""\
  phone: {{urls: ["{webhook_receiver.json_url("/phone")}"], group_wait: 1s,
           quiet_hours: "22:00-07:00", break_through: high}}"""
    config = write_config(tmp_path, feed_server.url("/feed.xml"), routes)
    clock = ShiftClock(night)

    with running(config, clock):
        wait_for(lambda: len(messages(webhook_receiver)) == 1)
        time.sleep(2)
        assert len(messages(webhook_receiver)) == 1
        clock.jump_to(datetime(2026, 5, 2, 5, 0, 1, tzinfo=UTC))  # 07:00:01 in Berlin
        wait_for(lambda: len(messages(webhook_receiver)) == 2)

    urgent, morning = messages(webhook_receiver)
    assert urgent["title"] == "nocontact: HIGH — contact by restrained party (smith-v-doe)"
    assert morning["title"] == "nocontact: MEDIUM — mention by restrained party (smith-v-doe)"


def test_the_daily_digest_arrives_with_watcher_health_once_even_across_a_restart(
    tmp_path: Path,
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    morning = datetime(2026, 5, 2, 5, 59, 50, tzinfo=UTC)  # 07:59:50 in Berlin
    feed_server.set("/feed.xml", rss())
    routes = f"""\
  phone: {{urls: ["{webhook_receiver.json_url("/phone")}"], digest: "08:00"}}"""
    config = write_config(tmp_path, feed_server.url("/feed.xml"), routes)
    clock = ShiftClock(morning)

    with running(config, clock):
        wait_for(lambda: len(feed_server.requests_for("/feed.xml")) >= 1)
        time.sleep(1)
        assert messages(webhook_receiver) == []
        clock.jump_to(morning + timedelta(seconds=11))
        wait_for(lambda: len(messages(webhook_receiver)) == 1)
    with running(config, ShiftClock(morning + timedelta(minutes=20))):
        wait_for(lambda: len(feed_server.requests_for("/feed.xml")) >= 2)
        time.sleep(1.5)

    [digest] = messages(webhook_receiver)
    assert digest["title"] == "nocontact: daily digest — 0 violation(s) in 24 h"
    assert "Last 24 hours: no violations recorded." in digest["message"]
    assert "Sources: all 1 checked in the last hour." in digest["message"]
    assert digest["type"] == "info"


def test_a_health_alert_goes_to_the_operator_route_only_and_never_says_high(
    tmp_path: Path,
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    feed_server.set("/feed.xml", b"no", status=401)
    feed_server.set("/ping/hc-uuid", b"OK")
    routes = f"""\
  phone: {{urls: ["{webhook_receiver.json_url("/phone")}"]}}
  ops: {{urls: ["{webhook_receiver.json_url("/ops")}"], operator: true}}"""
    extra = f'heartbeat_url: "{feed_server.url("/ping/hc-uuid")}"'
    config = write_config(tmp_path, feed_server.url("/feed.xml"), routes, extra=extra)

    with running(config, ShiftClock(datetime(2026, 5, 1, 10, 0, tzinfo=UTC))):
        wait_for(lambda: len(messages(webhook_receiver, "/ops")) == 1)
        time.sleep(1.5)  # heartbeat rounds: none may ping, every watcher fails

    [health] = messages(webhook_receiver, "/ops")
    assert health["title"] == "nocontact: source forum is disabled"
    assert "HIGH" not in health["title"] + health["message"]
    assert "not a violation" in health["message"]
    assert messages(webhook_receiver, "/phone") == []
    assert feed_server.requests_for("/ping/hc-uuid") == []
