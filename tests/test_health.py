"""service.health: heartbeat freshness and watcher failures decide `status --health`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from service.health import beat, check_health
from service.models import Base, Heartbeat, WatcherState
from tests.fakes.secret_scan import restore_logging  # noqa: F401

NOW = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)
STALE = timedelta(seconds=90)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'health.db'}")
    Base.metadata.create_all(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def add_watcher(sessions: sessionmaker[Session], name: str, **fields: object) -> None:
    values: dict[str, object] = {
        "name": name,
        "type": "rss",
        "cursor": {},
        "consecutive_failures": 0,
        "last_success_at": NOW - timedelta(minutes=5),
    }
    values.update(fields)
    with sessions.begin() as session:
        session.add(WatcherState(**values))


def test_no_heartbeat_at_all_is_unhealthy(sessions: sessionmaker[Session]) -> None:
    report = check_health(sessions, now=NOW, stale_after=STALE)
    assert not report.ok
    assert report.lines == ["UNHEALTHY heartbeat: none recorded; is `nocontact run` running?"]


def test_fresh_heartbeat_is_healthy(sessions: sessionmaker[Session]) -> None:
    beat(sessions, "host:1", NOW - timedelta(hours=1), NOW - timedelta(seconds=30))
    report = check_health(sessions, now=NOW, stale_after=STALE)
    assert report.ok
    assert report.lines == ["ok heartbeat: host:1 beat 30s ago, running since 2026-05-01T09:00:00Z"]


def test_heartbeat_exactly_at_the_limit_is_still_fresh(sessions: sessionmaker[Session]) -> None:
    beat(sessions, "host:1", NOW, NOW - STALE)
    assert check_health(sessions, now=NOW, stale_after=STALE).ok


def test_stopped_heartbeat_turns_unhealthy_and_recovers(sessions: sessionmaker[Session]) -> None:
    started = NOW - timedelta(hours=2)
    beat(sessions, "host:1", started, NOW - timedelta(minutes=10))
    report = check_health(sessions, now=NOW, stale_after=STALE)
    assert not report.ok
    assert report.lines == [
        "UNHEALTHY heartbeat: stale; newest from host:1 at 2026-05-01T09:50:00Z "
        "(10m ago, limit 90s)"
    ]
    beat(sessions, "host:1", started, NOW)  # the service beats again: same row, updated
    assert check_health(sessions, now=NOW, stale_after=STALE).ok
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Heartbeat)) == 1
        row = session.get(Heartbeat, "host:1")
        assert row is not None
        assert row.beat_at == NOW


def test_one_live_replica_is_enough(sessions: sessionmaker[Session]) -> None:
    beat(sessions, "old:1", NOW - timedelta(days=1), NOW - timedelta(hours=5))
    beat(sessions, "new:2", NOW - timedelta(minutes=1), NOW - timedelta(seconds=5))
    report = check_health(sessions, now=NOW, stale_after=STALE)
    assert report.ok
    assert report.lines == ["ok heartbeat: new:2 beat 5s ago, running since 2026-05-01T09:59:00Z"]


def test_watcher_failing_past_threshold_is_unhealthy(sessions: sessionmaker[Session]) -> None:
    beat(sessions, "host:1", NOW, NOW)
    add_watcher(sessions, "reddit", consecutive_failures=2, last_error="HTTP 503")
    assert check_health(sessions, now=NOW, stale_after=STALE, failure_threshold=3).ok
    with sessions.begin() as session:
        state = session.get(WatcherState, "reddit")
        assert state is not None
        state.consecutive_failures = 3
    report = check_health(sessions, now=NOW, stale_after=STALE, failure_threshold=3)
    assert not report.ok
    assert report.lines[-1] == (
        "UNHEALTHY watcher reddit: 3 failed polls in a row "
        "(last success 2026-05-01T09:55:00Z); last error: HTTP 503"
    )


def test_disabled_watcher_is_unhealthy(sessions: sessionmaker[Session]) -> None:
    beat(sessions, "host:1", NOW, NOW)
    add_watcher(sessions, "jdoe-blog")
    add_watcher(sessions, "x", disabled_reason="credentials rejected (HTTP 401)")
    report = check_health(sessions, now=NOW, stale_after=STALE)
    assert not report.ok
    assert report.lines[1:] == [
        "ok watcher jdoe-blog: last success 2026-05-01T09:55:00Z",
        "UNHEALTHY watcher x: disabled: credentials rejected (HTTP 401)",
    ]


def test_only_configured_watchers_count(sessions: sessionmaker[Session]) -> None:
    beat(sessions, "host:1", NOW, NOW)
    add_watcher(sessions, "removed-from-config", consecutive_failures=50, last_success_at=None)
    add_watcher(sessions, "rss")
    report = check_health(sessions, now=NOW, stale_after=STALE, watcher_names=["rss", "new"])
    assert report.ok
    assert report.lines[1:] == [
        "ok watcher rss: last success 2026-05-01T09:55:00Z",
        "ok watcher new: not polled yet",
    ]
    everything = check_health(sessions, now=NOW, stale_after=STALE)
    assert not everything.ok
    assert "last success never" in everything.lines[1]


def test_a_watcher_that_never_succeeds_since_start_is_unhealthy(
    sessions: sessionmaker[Session],
) -> None:
    """A source that has failed only twice (below the failure threshold), or was never
    polled, is still unhealthy once the service has run for 2 × its interval."""
    started = NOW - timedelta(minutes=25)
    beat(sessions, "host:1", started, NOW)
    add_watcher(sessions, "blog", consecutive_failures=2, last_success_at=started - timedelta(1))
    add_watcher(sessions, "fresh", last_success_at=NOW - timedelta(minutes=1))
    every = {"blog": timedelta(minutes=10), "fresh": timedelta(minutes=10)}
    names = ["blog", "fresh", "never"]
    report = check_health(
        sessions,
        now=NOW,
        stale_after=STALE,
        watcher_names=names,
        watcher_every=every | {"never": timedelta(minutes=10)},
    )
    assert not report.ok
    assert report.lines[1] == (
        "UNHEALTHY watcher blog: no successful poll since the service started at "
        "2026-05-01T09:35:00Z (25m ago; it polls every 600s)"
    )
    assert report.lines[2] == "ok watcher fresh: last success 2026-05-01T09:59:00Z"
    assert report.lines[3].startswith("UNHEALTHY watcher never: no successful poll since")
    # Within 2 × every of the start, a watcher still gets its chance.
    relaxed = {name: timedelta(minutes=15) for name in names}
    assert check_health(
        sessions, now=NOW, stale_after=STALE, watcher_names=names, watcher_every=relaxed
    ).ok


# --- through the CLI: `nocontact status --health` -----------------------------------------

CONFIG = """
database: sqlite:///store.db
cases:
  - id: smith-v-doe
    order: {effective: 2026-01-15}
    protected: {names: ["Alex Smith"]}
    restrained: {names: ["John Doe"]}
"""


def test_status_health_exit_code_follows_the_heartbeat(
    tmp_path: Path,
    restore_logging: None,  # noqa: F811 - the imported fixture
) -> None:
    from click.testing import CliRunner

    from service.cli import cli
    from service.db import make_engine, migrate, session_factory

    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    engine = make_engine("sqlite:///store.db", tmp_path)
    migrate(engine)
    store_sessions = session_factory(engine)
    runner = CliRunner()
    args = ["status", "--health", "-c", str(config)]

    now = datetime.now(UTC)
    beat(store_sessions, "host:1", now - timedelta(hours=1), now)
    alive = runner.invoke(cli, args)
    assert alive.exit_code == 0, alive.output
    assert "ok heartbeat: host:1" in alive.output

    # The service stops beating: ten minutes later the heartbeat is stale.
    beat(store_sessions, "host:1", now - timedelta(hours=1), now - timedelta(minutes=10))
    stopped = runner.invoke(cli, args)
    assert stopped.exit_code == 1, stopped.output
    assert "UNHEALTHY heartbeat: stale" in stopped.output
    engine.dispose()
