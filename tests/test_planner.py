"""The alert planner's decisions, through the real store on SQLite and PostgreSQL: what
is queued, on which route, in which lane, due when (#9, #18)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from service.alerts import AlertDispatcher, with_priority
from service.config import ConfigError, parse_config
from service.db import session_factory
from service.hits import Hit
from service.models import OutboxAlert
from service.planner import AlertPlanner, quiet_until
from service.settings import CaseSettings, Route, Settings
from service.store import PollRecord, RecordResult, Store
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_store import CASE_ID, make_case, make_hit, make_obs

NOW = datetime(2026, 5, 1, 10, 0, 30, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def planner_store(
    engine: Engine, routes: Mapping[str, Route], cases: Sequence[CaseSettings] | None = None
) -> Store:
    cases = cases if cases is not None else [make_case(alert=list(routes))]
    return Store(engine, cases=cases, planner=AlertPlanner(cases, routes))


def poll(store: Store, obs_hits: Sequence[tuple[Any, Hit]], now: datetime) -> RecordResult:
    return store.record_poll(
        PollRecord(
            watcher="reddit",
            watcher_type="reddit",
            observations=[obs for obs, _ in obs_hits],
            hits={index: [hit] for index, (_, hit) in enumerate(obs_hits)},
            state={},
            status_notes=[],
            now=now,
        )
    )


def rows(engine: Engine) -> list[OutboxAlert]:
    with Session(engine) as session:
        found = session.scalars(select(OutboxAlert).order_by(OutboxAlert.id)).all()
        session.expunge_all()
        return list(found)


def mark_sent(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.execute(update(OutboxAlert).values(state="sent", sent_at=NOW))


# ---------------------------------------------------------------- quiet hours


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (datetime(2026, 5, 1, 23, 30, tzinfo=BERLIN), datetime(2026, 5, 2, 7, tzinfo=BERLIN)),
        (datetime(2026, 5, 2, 3, 0, tzinfo=BERLIN), datetime(2026, 5, 2, 7, tzinfo=BERLIN)),
        (datetime(2026, 5, 2, 7, 0, tzinfo=BERLIN), None),  # the end is no longer quiet
        (datetime(2026, 5, 1, 21, 59, tzinfo=BERLIN), None),
    ],
)
def test_quiet_hours_over_midnight_in_the_cases_zone(
    local: datetime, expected: datetime | None
) -> None:
    found = quiet_until((time(22, 0), time(7, 0)), BERLIN, local)
    assert found == (expected.astimezone(UTC) if expected else None)


def test_quiet_hours_within_one_day() -> None:
    quiet = (time(13, 0), time(15, 0))
    assert quiet_until(quiet, BERLIN, datetime(2026, 5, 1, 14, 0, tzinfo=BERLIN)) == datetime(
        2026, 5, 1, 13, 0, tzinfo=UTC
    )
    assert quiet_until(quiet, BERLIN, datetime(2026, 5, 1, 16, 0, tzinfo=BERLIN)) is None


# ---------------------------------------------------------------- follow-ups


def test_an_alerted_violation_gaining_evidence_gets_one_update_after_group_interval(
    engine: Engine,
) -> None:
    route = Route(urls=["json://127.0.0.1:9/a"], group_wait=timedelta(0))
    store = planner_store(engine, {"phone": route})
    poll(store, [(make_obs("a"), make_hit())], NOW)
    poll(store, [(make_obs("b"), make_hit())], NOW + timedelta(seconds=5))
    assert [r.dedup_key.split(":")[0] for r in rows(engine)] == ["violation"]  # still pending

    mark_sent(engine)
    later = NOW + timedelta(minutes=6)
    poll(store, [(make_obs("c"), make_hit())], later)
    poll(store, [(make_obs("d"), make_hit())], later + timedelta(seconds=30))

    _, update_row = rows(engine)
    assert (update_row.category, update_row.due_at) == ("followup", later + timedelta(minutes=5))
    assert update_row.dedup_key.endswith(":phone:1")
    mark_sent(engine)
    poll(store, [(make_obs("e"), make_hit())], later + timedelta(minutes=7))
    assert rows(engine)[-1].dedup_key.endswith(":phone:2")


def test_a_higher_severity_in_an_alerted_violation_goes_out_at_once(engine: Engine) -> None:
    route = Route(urls=["json://127.0.0.1:9/a"], group_wait=timedelta(0))
    store = planner_store(engine, {"phone": route})
    poll(store, [(make_obs("a"), make_hit("mention", "medium"))], NOW)
    mark_sent(engine)
    poll(store, [(make_obs("b"), make_hit("mention", "medium"))], NOW + timedelta(seconds=20))
    poll(store, [(make_obs("c"), make_hit("contact", "high"))], NOW + timedelta(seconds=40))

    _, escalation = rows(engine)
    # The pending update was pulled forward: one message, now, at the new severity.
    assert (escalation.category, escalation.due_at) == ("followup", NOW + timedelta(seconds=40))


# ---------------------------------------------------------------- flood control


def test_past_max_per_hour_alerts_fold_except_contact_and_a_new_kind(engine: Engine) -> None:
    route = Route(urls=["json://127.0.0.1:9/a"], group_wait=timedelta(0), max_per_hour=2)
    store = planner_store(engine, {"phone": route})
    alts = [
        (make_obs(f"s{n}", author=f"alt{n}"), make_hit("suspected_alt", author_key=f"alt{n}"))
        for n in range(4)
    ]
    contact = (make_obs("c1"), make_hit("contact"))
    mention = (make_obs("m1", author="jdoe2"), make_hit("mention", "medium", author_key="j2"))
    poll(store, [*alts, contact, mention], NOW)

    lanes = [(r.category, r.due_at) for r in rows(engine)]
    hour_end = datetime(2026, 5, 1, 11, 0, tzinfo=UTC)
    assert lanes == [
        ("violation", NOW),
        ("violation", NOW),
        ("folded", hour_end),
        ("folded", hour_end),
        ("violation", NOW),  # contact by the restrained party is never folded
        ("violation", NOW),  # the first mention of the hour is not either
    ]


# ---------------------------------------------------------------- quiet hours, health


def test_quiet_hours_hold_low_alerts_and_health_but_not_high(engine: Engine) -> None:
    night = datetime(2026, 5, 1, 21, 30, tzinfo=UTC)  # 23:30 in Berlin
    route = Route(
        urls=["json://127.0.0.1:9/a"],
        group_wait=timedelta(0),
        quiet_hours=(time(22, 0), time(7, 0)),
        break_through="high",
    )
    case = make_case(alert=["phone"]).model_copy(update={"timezone": ZoneInfo("Europe/Berlin")})
    store = planner_store(engine, {"phone": route}, [case])
    poll(store, [(make_obs("a"), make_hit("contact", "high"))], night)
    poll(
        store,
        [(make_obs("b", author="x"), make_hit("mention", "medium", author_key="x"))],
        night,
    )
    for _ in range(3):
        store.record_failure("reddit", "reddit", "HTTP 503", night, disable=False)

    morning = datetime(2026, 5, 2, 5, 0, tzinfo=UTC)
    assert [(r.category, r.severity, r.due_at) for r in rows(engine)] == [
        ("violation", "high", night),
        ("held", "medium", morning),
        ("held", "operator", morning),
    ]


def test_health_alerts_go_to_operator_routes_only_when_one_is_marked(engine: Engine) -> None:
    routes = {
        "phone": Route(urls=["json://127.0.0.1:9/a"]),
        "ops": Route(urls=["json://127.0.0.1:9/b"], operator=True),
    }
    store = planner_store(engine, routes)
    store.record_failure("x", "x", "token rejected", NOW, disable=True)
    [row] = rows(engine)
    assert (row.route, row.severity, row.title) == (
        "ops",
        "operator",
        "nocontact: source x is disabled",
    )


# ---------------------------------------------------------------- the daily digest


def test_the_digest_is_queued_once_a_day_at_its_time_and_not_at_a_random_start(
    engine: Engine,
) -> None:
    route = Route(urls=["json://127.0.0.1:9/a"], digest=time(8, 0))
    case = make_case(alert=["phone"]).model_copy(update={"timezone": ZoneInfo("Europe/Berlin")})
    store = planner_store(engine, {"phone": route}, [case])
    assert store.tick(datetime(2026, 5, 2, 5, 59, tzinfo=UTC)) == 0  # 07:59 in Berlin
    assert store.tick(datetime(2026, 5, 2, 6, 0, tzinfo=UTC)) == 1
    assert store.tick(datetime(2026, 5, 2, 6, 30, tzinfo=UTC)) == 0  # a restart: not again
    assert store.tick(datetime(2026, 5, 2, 12, 0, tzinfo=UTC)) == 0  # started at noon
    assert store.tick(datetime(2026, 5, 3, 6, 5, tzinfo=UTC)) == 1
    assert [r.dedup_key for r in rows(engine)] == [
        "digest:phone:2026-05-02",
        "digest:phone:2026-05-03",
    ]


# ---------------------------------------------------------------- priority and wording


def test_priority_follows_severity_unless_the_url_sets_its_own() -> None:
    assert with_priority("ntfys://topic", "high") == "ntfys://topic?priority=max"
    assert with_priority("ntfy://h/t?tags=x", "medium") == "ntfy://h/t?tags=x&priority=high"
    assert with_priority("ntfy://h/t?priority=min", "high") == "ntfy://h/t?priority=min"
    assert with_priority("pover://u@t", "high") == "pover://u@t?priority=high"
    assert with_priority("pover://u@t", "operator") == "pover://u@t?priority=moderate"
    assert with_priority("json://h/p", "high") == "json://h/p"


def test_a_high_alert_reaches_ntfy_at_urgent_priority_and_health_quietly(
    engine: Engine,
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    settings = Settings.model_validate(
        {
            "database": "sqlite://",
            "cases": [make_case(alert=["phone"]).model_dump()],
            "alerts": {"phone": {"urls": [webhook_receiver.ntfy_url()], "group_wait": "0s"}},
        }
    )
    store = Store(engine, cases=settings.cases, planner=AlertPlanner.from_settings(settings))
    store.sync_cases(settings.cases, NOW)
    poll(store, [(make_obs("a"), make_hit("contact", "high"))], NOW)
    dispatcher = AlertDispatcher(settings, session_factory(engine))
    assert dispatcher.deliver_due(NOW).sent == 1
    store.record_failure("reddit", "reddit", "HTTP 503", NOW, disable=True)
    assert dispatcher.deliver_due(NOW).sent == 1

    priorities = [
        {k.lower(): v for k, v in r.headers.items()}.get("x-priority")
        for r in webhook_receiver.accepted
    ]
    assert priorities == ["max", "low"]  # ntfy's urgent for HIGH, low for health
    contact, health = (r.json for r in webhook_receiver.accepted)
    assert contact["title"].startswith("nocontact: HIGH — contact by restrained party")
    assert health["title"] == "nocontact: source reddit is disabled"


def test_a_third_party_mention_is_never_called_contact() -> None:
    from service.messages import KINDS

    assert "contact" not in KINDS["third_party"].title
    assert "contact" not in KINDS["mention"].title
    assert set(KINDS) >= {"contact", "suspected_alt", "mention", "third_party"}


# ---------------------------------------------------------------- config


def test_new_route_keys_are_validated_with_their_line() -> None:
    text = textwrap.dedent(
        f"""\
        cases:
          - id: {CASE_ID}
            order: {{effective: 2026-01-15}}
            protected: {{names: [A]}}
            restrained: {{names: [B]}}
            alert: [phone]
        alerts:
          phone:
            urls: ["json://127.0.0.1/x"]
            group_interval: 5s
            quiet_hours: "22:00"
            digest: 8:00
            break_through: urgent
            max_per_hour: 0
        heartbeat_url: "ftp://example.org/x"
        """
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config.yaml")
    found = "\n".join(str(p) for p in info.value.problems)
    assert "config.yaml:10: alerts.phone.group_interval: must be at least 10s" in found
    assert 'config.yaml:11: alerts.phone.quiet_hours: write it like "22:00-07:00"' in found
    assert 'alerts.phone.digest: write a time of day in quotes, like "08:00"' in found
    assert "alerts.phone.break_through" in found
    assert "alerts.phone.max_per_hour" in found
    assert "heartbeat_url: must be an http:// or https:// URL" in found


def test_an_empty_heartbeat_url_from_the_environment_is_off() -> None:
    settings = Settings.model_validate(
        {"cases": [make_case(alert=[]).model_dump()], "heartbeat_url": ""}
    )
    assert settings.heartbeat_url is None


def test_the_digest_names_each_source_that_is_not_checked_on_schedule() -> None:
    from collections import Counter

    from service.messages import SourceHealth, render_digest

    sources = [
        SourceHealth("forum", NOW - timedelta(minutes=5), None, timedelta(minutes=10)),
        SourceHealth("daily-blog", NOW - timedelta(hours=20), None, timedelta(hours=12)),
        SourceHealth("x", NOW - timedelta(days=2), "failing: HTTP 503", timedelta(minutes=15)),
    ]
    message = render_digest("phone", Counter({"contact": 2}), sources, NOW, "Europe/Berlin")

    assert message.title == "nocontact: daily digest — 2 violation(s) in 24 h"
    assert "  2 × contact by the restrained party" in message.body
    assert "Sources: 2 of 3 checked on schedule." in message.body
    assert "  x: failing: HTTP 503 (last success 2026-04-29T10:00:30Z)" in message.body
    assert "forum:" not in message.body
    ok = render_digest("phone", Counter(), sources[:2], NOW, "UTC")
    assert "Sources: all 2 checked on schedule." in ok.body
