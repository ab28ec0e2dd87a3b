"""One poller per watcher across replicas (service.leases), on SQLite and PostgreSQL,
then three real `nocontact run` processes on one PostgreSQL database."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text

from service.db import session_factory
from service.health import beat
from service.leases import Leases
from service.models import WatcherLease
from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import FORUM_FEED
from tests.test_service_lifecycle import CASE, start_service

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
EVERY = timedelta(minutes=5)


def replicas(engine: Engine, *names: str, watchers: int = 2) -> list[Leases]:
    sessions = session_factory(engine)
    for name in names:
        beat(sessions, name, T0, T0)
    return [Leases(sessions, name, watchers) for name in names]


@pytest.mark.postgres
def test_a_held_lease_is_not_taken_until_it_expires(engine: Engine) -> None:
    a, b = replicas(engine, "a", "b")
    assert a.claim("forum", EVERY, T0)
    assert not b.claim("forum", EVERY, T0 + timedelta(seconds=1))
    assert a.claim("forum", EVERY, T0 + EVERY)  # renewed at each poll
    later = T0 + EVERY + 2 * EVERY - timedelta(seconds=1)
    assert not b.claim("forum", EVERY, later)
    # a died: past its lease, b takes the watcher over, and a cannot take it back.
    beat(session_factory(engine), "b", T0, T0 + 4 * EVERY)
    assert b.claim("forum", EVERY, T0 + 4 * EVERY)
    assert not a.claim("forum", EVERY, T0 + 4 * EVERY + timedelta(seconds=1))


@pytest.mark.postgres
def test_free_watchers_spread_across_live_replicas(engine: Engine) -> None:
    a, b = replicas(engine, "a", "b")
    assert a.claim("one", EVERY, T0)
    assert not a.claim("two", EVERY, T0)  # a has its fair share (2 watchers ÷ 2 replicas)
    assert b.claim("two", EVERY, T0 + timedelta(seconds=2))
    with session_factory(engine)() as session:
        rows = session.execute(select(WatcherLease.name, WatcherLease.holder)).all()
    holders = {name: holder for name, holder in rows}
    assert holders == {"one": "a", "two": "b"}


@pytest.mark.postgres
def test_a_free_watcher_nobody_takes_is_taken_beyond_the_share(engine: Engine) -> None:
    a, b = replicas(engine, "a", "b")
    assert b.claim("two", EVERY, T0)
    b.release(["two"])
    assert a.claim("one", EVERY, T0)
    assert not a.claim("two", EVERY, T0)
    # Nobody took "two" for a whole interval (b is gone): a polls it after all.
    assert a.claim("two", EVERY, T0 + 2 * EVERY + EVERY + timedelta(seconds=1))


@pytest.mark.postgres
def test_release_frees_the_watchers_at_once(engine: Engine) -> None:
    (a, b) = replicas(engine, "a", "b", watchers=1)
    assert a.claim("forum", EVERY, T0)
    a.release(["forum"])
    assert b.claim("forum", EVERY, T0 + timedelta(seconds=1))


def _polls(feed_server: FeedServer, paths: list[str]) -> dict[str, int]:  # noqa: F811
    return {path: len(feed_server.requests_for(path)) for path in paths}


def _holder_pid(database: str, name: str) -> int:
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            holder = connection.execute(
                text("SELECT holder FROM watcher_leases WHERE name = :n"), {"n": name}
            ).scalar_one()
    finally:
        engine.dispose()
    return int(str(holder).rsplit(":", 1)[1])


def test_three_replicas_poll_each_feed_as_one_would(
    tmp_path: Path,
    postgres_database: tuple[Engine, object],
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    _engine, url = postgres_database
    database = url.render_as_string(hide_password=False)  # type: ignore[attr-defined]
    paths = ["/a.xml", "/b.xml", "/c.xml"]
    watchers = ""
    for path in paths:
        feed_server.set(path, body=FORUM_FEED)
        name = path.strip("/.xml")
        watchers += f'  - {{type: rss, name: {name}, url: "{feed_server.url(path)}", every: 10s}}\n'
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database: {database}\n{CASE}watchers:\n{watchers}"
        f'alerts:\n  ops:\n    urls: ["{webhook_receiver.json_url("/ops")}"]\n',
        encoding="utf-8",
    )
    processes = [start_service(config) for _ in range(3)]
    try:
        started = time.monotonic()
        time.sleep(42)
        elapsed = time.monotonic() - started
        counts = _polls(feed_server, paths)
        one_process = elapsed / 10 + 1
        for path, count in counts.items():
            assert 1 <= count <= 1.3 * one_process, (path, count, one_process)
        # Kill whoever polls feed a: another replica takes it over within 2 × its lease.
        victim = _holder_pid(database, "a")
        for process in processes:
            if process.pid == victim:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
        before = len(feed_server.requests_for("/a.xml"))
        deadline = time.monotonic() + 2 * 20 + 10
        while len(feed_server.requests_for("/a.xml")) == before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(feed_server.requests_for("/a.xml")) > before
        assert _holder_pid(database, "a") != victim
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            process.communicate(timeout=30)
