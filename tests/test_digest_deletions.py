"""Deletions are listed in the daily digest, not pushed at once (#14 item 2): through
the real store, planner and dispatcher, to a local webhook, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from service.alerts import AlertDispatcher
from service.db import session_factory
from service.messages import render_digest
from service.planner import AlertPlanner
from service.settings import Settings
from service.store import PollRecord, Store
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_planner import NOW, poll
from tests.test_store import make_case, make_hit, make_obs
from watchers.base import Gone


def gone(store: Store, native_id: str, at: datetime) -> None:
    """A platform's delete event for a stored item, recorded by a poll."""
    store.record_poll(
        PollRecord(
            watcher="reddit",
            watcher_type="reddit",
            observations=[],
            hits={},
            state={},
            status_notes=[],
            now=at,
            gone=[Gone("reddit", native_id, at, b'{"deleted": true}')],
        )
    )


def test_a_deletion_waits_for_the_digest_which_lists_it_by_kind_and_platform(
    engine: Engine,
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    settings = Settings.model_validate(
        {
            "database": "sqlite://",
            "cases": [make_case(alert=["phone"]).model_dump()],
            "alerts": {
                "phone": {
                    "urls": [webhook_receiver.json_url()],
                    "group_wait": "0s",
                    "digest": "12:30",
                },
            },
        }
    )
    store = Store(engine, cases=settings.cases, planner=AlertPlanner.from_settings(settings))
    store.sync_cases(settings.cases, NOW)
    dispatcher = AlertDispatcher(settings, session_factory(engine))
    hits = [make_hit("contact", "high"), make_hit("contact", "high", author_key="jdoe")]
    poll(store, [(make_obs("t1_a", "Alex, answer me"), hits[0]),
                 (make_obs("t1_b", "Alex, I am outside"), hits[1])], NOW)  # fmt: skip
    # An item of nobody's case (stored without a hit) is not the digest's business.
    store.record_poll(PollRecord("reddit", "reddit", [make_obs("t1_c", "hello")], {}, {}, [], NOW))
    assert dispatcher.deliver_due(NOW).sent >= 1
    before = len(webhook_receiver.accepted)

    gone(store, "t1_b", NOW + timedelta(minutes=5))  # more than 24 h before the digest
    later = NOW + timedelta(hours=26)
    gone(store, "t1_a", later)
    gone(store, "t1_c", later)
    assert dispatcher.deliver_due(later).sent == 0, "a deletion is never pushed at once"
    assert len(webhook_receiver.accepted) == before

    digest_time = NOW.replace(hour=12, minute=30) + timedelta(days=1)
    assert store.tick(digest_time) == 1
    assert dispatcher.deliver_due(digest_time).sent == 1
    digest = webhook_receiver.accepted[-1].json
    assert "1 item(s) found deleted by their author in the last 24 h:" in digest["message"]
    assert "  1 × reply on reddit" in digest["message"]


def test_the_digest_says_nothing_of_deletions_when_there_were_none() -> None:
    zone = ZoneInfo("UTC")
    quiet = render_digest("phone", Counter(), [], NOW, zone, Counter())
    assert "deleted" not in quiet.body
    busy = render_digest(
        "phone", Counter(), [], NOW, zone, Counter({("post", "bluesky"): 2, ("reply", "reddit"): 1})
    )
    assert "3 item(s) found deleted by their author in the last 24 h:" in busy.body
    assert "  2 × post on bluesky\n  1 × reply on reddit" in busy.body
