"""Errors in the right place (#10 item 3): only the watcher's own call is a watcher
failure. A store or matcher error is a service error: logged with its cause, alerted
to the operator once, never counted against the watcher; a poll past its deadline
fails with one line; the matcher alone writes the lookup-failure note."""

from __future__ import annotations

import itertools
import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from service.config import parse_config
from service.db import StoreError, session_factory
from service.models import OutboxAlert, WatcherState
from service.pipeline import Pipeline, _lookup
from service.planner import AlertPlanner
from service.store import Store
from watchers.base import AccountInfo, WatcherError

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
FEEDS = Path(__file__).resolve().parent / "fixtures" / "feeds"


def _settings(tmp_path: Path) -> Any:
    feed = tmp_path / "feed.xml"
    shutil.copy(FEEDS / "rss20.xml", feed)
    return parse_config(
        f"""\
cases:
  - id: one
    order: {{effective: 2026-01-15}}
    protected: {{names: ["Alex Smith"], handles: {{rss: [alex_smith]}}}}
    restrained: {{names: ["John Doe"], handles: {{rss: [jdoe]}}}}
    alert: [ops]
watchers:
  - {{type: rss, name: first, url: "file://{feed}", every: 5m}}
  - {{type: rss, name: second, url: "file://{feed}", every: 5m}}
alerts:
  ops: {{urls: ["json://127.0.0.1:9/hook"], operator: true}}
"""
    )


def _pipeline(engine: Engine, tmp_path: Path, **kwargs: Any) -> tuple[Pipeline, Store]:
    settings = _settings(tmp_path)
    store = Store(engine, cases=settings.cases, planner=AlertPlanner.from_settings(settings))
    store.sync_cases(settings.cases, NOW)
    return Pipeline(settings, store, clock=lambda: NOW, **kwargs), store


def _state(engine: Engine, name: str) -> WatcherState | None:
    with session_factory(engine)() as session:
        return session.get(WatcherState, name)


def _service_alerts(engine: Engine) -> list[str]:
    with session_factory(engine)() as session:
        keys = session.scalars(select(OutboxAlert.dedup_key)).all()
    return [key for key in keys if ":service_error:" in key]


def test_a_store_error_is_a_service_error_alerted_once_and_the_next_watcher_runs(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    pipeline, store = _pipeline(engine, tmp_path)
    real = store.record_poll

    def broken(poll: Any) -> Any:
        if poll.watcher == "first":
            raise StoreError("the database refused the write: disk I/O error")
        return real(poll)

    monkeypatch.setattr(store, "record_poll", broken)
    with caplog.at_level(logging.ERROR, logger="service.pipeline"):
        first = pipeline.poll("first")
        again = pipeline.poll("first")
    second = pipeline.poll("second")

    assert not first.ok
    assert first.service_error
    assert first.error is not None
    assert "StoreError" in first.error
    assert "disk I/O error" in first.error
    assert "\n" not in first.error
    assert not again.ok
    assert second.ok
    assert second.new_evidence > 0
    # Never counted against the watcher: no failure, no "failing" state.
    state = _state(engine, "first")
    assert state is None or state.consecutive_failures == 0
    assert _service_alerts(engine) == [
        "health:first:service_error:storing its results:StoreError:ops"
    ]
    assert any("disk I/O error" in r.getMessage() for r in caplog.records)


def test_a_matcher_bug_is_a_service_error_not_a_watcher_failure(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, _ = _pipeline(engine, tmp_path)

    def bug(*_args: Any, **_kwargs: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(pipeline.matcher, "match", bug)
    outcome = pipeline.poll("first")

    assert outcome.service_error
    assert outcome.error is not None
    assert "ZeroDivisionError" in outcome.error
    state = _state(engine, "first")
    assert state is None or state.consecutive_failures == 0
    assert len(_service_alerts(engine)) == 1


def test_a_poll_past_its_deadline_fails_with_one_line_and_stores_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    ticks = itertools.count(0, 100)  # every look at the clock is 100 s later
    pipeline, _ = _pipeline(
        engine, tmp_path, monotonic=lambda: float(next(ticks)), poll_deadline=timedelta(seconds=30)
    )
    outcome = pipeline.poll("first")

    assert not outcome.ok
    assert not outcome.service_error
    assert outcome.error is not None
    assert outcome.error.startswith("poll took longer than its deadline of 30s")
    state = _state(engine, "first")
    assert state is not None
    assert state.consecutive_failures == 1
    assert state.last_success_at is None


class _Broken:
    name = "broken"

    def lookup_account(self, handle: str) -> AccountInfo | None:
        raise KeyError(handle)


class _Failing:
    name = "failing"

    def lookup_account(self, handle: str) -> AccountInfo | None:
        raise WatcherError("HTTP 503 from the platform")


def test_a_failed_lookup_reaches_the_matcher_as_a_watcher_error() -> None:
    # The matcher turns a WatcherError into the "account age unknown" note; the
    # pipeline no longer swallows it first, and a bug becomes a WatcherError too.
    with pytest.raises(WatcherError, match="HTTP 503"):
        _lookup(_Failing())("jd0e")  # type: ignore[arg-type]
    with pytest.raises(WatcherError, match="unexpected KeyError in the account lookup"):
        _lookup(_Broken())("jd0e")  # type: ignore[arg-type]
