"""The evidence store on SQLite and PostgreSQL: dedup, versions, the hash chain,
violation grouping, the outbox, watcher state and the timeline contract."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from service import evidence
from service.coverage import Watched
from service.db import StoreError, make_engine, migrate
from service.hits import Hit, ViolationKind
from service.models import (
    ChainHead,
    CoverageState,
    Evidence,
    OutboxAlert,
    SeenItem,
    Violation,
    ViolationEvidence,
    WatcherState,
)
from service.planner import AlertPlanner
from service.retention import Retention, marker
from service.settings import CaseSettings, Route, Severity
from service.store import PollRecord, RecordResult, Store
from watchers.base import Observation

NOW = datetime(2026, 5, 1, 10, 0, 0, 654321, tzinfo=UTC)
CASE_ID = "smith-v-doe"


def make_case(
    case_id: str = CASE_ID,
    alert: Sequence[str] = ("phone", "lawyer"),
    window: timedelta = timedelta(minutes=10),
) -> CaseSettings:
    return CaseSettings.model_validate(
        {
            "id": case_id,
            "order": {
                "effective": date(2026, 1, 15),
                "expires": date(2027, 1, 15),
                "reference": "PO-2026-1234",
                "terms": ["no_contact", "no_mention"],
            },
            "protected": {"names": ["Alex Smith"], "handles": {"reddit": ["alex_smith"]}},
            "restrained": {"names": ["John Doe"], "handles": {"reddit": ["jdoe"]}},
            "alert": list(alert),
            "group_window": window,
        }
    )


ROUTES: dict[str, Route] = {
    "phone": Route(urls=["ntfys://s3cr3t-topic"], min_severity="low"),
    "lawyer": Route(
        urls=["json://127.0.0.1:9/s3cr3t"], min_severity="high", group_wait=timedelta(0)
    ),
}
CASES: dict[str, CaseSettings] = {CASE_ID: make_case()}


def make_obs(
    native_id: str = "t1_abc",
    text: str = "Alex, answer me",
    *,
    platform: str = "reddit",
    author: str = "jdoe",
    posted_at: datetime | None = NOW,
    raw: bytes = b'{"id": "abc"}',
) -> Observation:
    return Observation(
        platform=platform,
        native_id=native_id,
        kind="reply",
        raw=raw,
        watcher=f"{platform}-watcher",
        url=f"https://{platform}.example/{native_id}",
        author_handle=author,
        author_id=f"id-{author}",
        addressed_to=("alex_smith",),
        text=text,
        posted_at=posted_at,
    )


def make_hit(
    kind: ViolationKind = "contact",
    severity: Severity = "high",
    *,
    author_key: str = "jdoe",
    in_order_period: bool = True,
    suspected: bool = False,
    score: float | None = None,
    case_id: str = CASE_ID,
) -> Hit:
    return Hit(
        case_id=case_id,
        kind=kind,
        severity=severity,
        suspected=suspected,
        reason=f"{kind} by {author_key}",
        author_key=author_key,
        author_class="suspected_alt" if suspected else "restrained",
        target="contact" if kind in ("contact", "suspected_alt") else "mention",
        in_order_period=in_order_period,
        score=score,
    )


def record(
    store: Store,
    observations: Sequence[Observation],
    hits: Mapping[int, Sequence[Hit]] | None = None,
    *,
    now: datetime = NOW,
    watcher: str = "reddit",
    state: dict[str, Any] | None = None,
    cases: Mapping[str, CaseSettings] = CASES,
) -> RecordResult:
    # The store as the service builds it: with the cases and an alert planner.
    configured = Store(
        store.engine, cases=cases.values(), planner=AlertPlanner(cases.values(), ROUTES)
    )
    return configured.record_poll(
        PollRecord(
            watcher=watcher,
            watcher_type="reddit",
            observations=observations,
            hits=hits or {},
            state=state or {"after": "t1_abc"},
            status_notes=["budget 90%"],
            now=now,
        )
    )


def count(engine: Engine, model: type[Any]) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def violations(engine: Engine) -> list[Violation]:
    with Session(engine) as session:
        return list(session.scalars(select(Violation).order_by(Violation.first_seen)))


def outbox(engine: Engine) -> list[OutboxAlert]:
    with Session(engine) as session:
        return list(session.scalars(select(OutboxAlert).order_by(OutboxAlert.id)))


# ---------------------------------------------------------------- evidence


def test_same_observation_twice_is_stored_once(store: Store, engine: Engine) -> None:
    first = record(store, [make_obs()], {0: [make_hit()]})
    # The feed's raw bytes differ on every poll; that is not a new version.
    again = make_obs(raw=b'{"id": "abc", "fetched": 2}')
    assert store.new_observations([again]) == []
    second = record(store, [again], {0: [make_hit()]}, now=NOW + timedelta(minutes=5))

    assert (first.new_evidence, first.new_versions, first.new_violations) == (1, 0, 1)
    assert (second.new_evidence, second.new_versions, second.new_violations) == (0, 0, 0)
    assert second.queued_alerts == 0
    assert count(engine, Evidence) == 1
    assert count(engine, Violation) == 1


def test_new_observations_keeps_only_unstored_content_in_order(store: Store) -> None:
    stored, edited, other = make_obs("a"), make_obs("a", "edited text"), make_obs("b")
    record(store, [stored])
    assert store.new_observations([other, stored, edited, other]) == [other, edited]


def test_screen_leaves_out_stored_content_and_remembered_markers(
    store: Store, engine: Engine
) -> None:
    stored, edited, marked, other = (
        make_obs("a"),
        make_obs("a", "edited text"),
        make_obs("m", "nothing to see"),
        make_obs("b"),
    )
    record(store, [stored])
    Retention(engine).remember([marker(marked)], NOW)

    screened = store.screen([other, stored, marked, edited, other])
    assert screened.fresh == [other, edited]
    assert screened.held == {("reddit", "a")}


def test_an_edit_becomes_version_two_and_both_are_kept(store: Store, engine: Engine) -> None:
    record(store, [make_obs(text="original words")])
    result = record(store, [make_obs(text="edited words")], now=NOW + timedelta(minutes=1))

    assert (result.new_evidence, result.new_versions) == (0, 1)
    with Session(engine) as session:
        rows = session.execute(
            select(Evidence.version, Evidence.text).order_by(Evidence.version)
        ).all()
    assert [tuple(row) for row in rows] == [(1, "original words"), (2, "edited words")]


def test_duplicates_and_edits_inside_one_poll(store: Store, engine: Engine) -> None:
    result = record(store, [make_obs(), make_obs(), make_obs(text="edit"), make_obs()])
    assert (result.new_evidence, result.new_versions) == (1, 1)
    assert count(engine, Evidence) == 2


def test_hash_chain_recomputes_with_the_evidence_functions(store: Store, engine: Engine) -> None:
    record(store, [make_obs("a"), make_obs("b", "Ünïcödé ✓")])
    record(store, [make_obs("a", "edited")], now=NOW + timedelta(seconds=30))
    record(store, [make_obs("c", posted_at=None)], now=NOW + timedelta(minutes=2))

    with Session(engine) as session:
        rows = list(session.scalars(select(Evidence).order_by(Evidence.seq)))
        head = session.get(ChainHead, 1)
    assert [row.seq for row in rows] == [1, 2, 3, 4]
    previous = evidence.GENESIS_CHAIN
    for row in rows:
        assert row.captured_at.microsecond == 0
        assert row.raw_sha256 == evidence.sha256_hex(row.raw)
        record_hash = evidence.record_sha256(
            {
                "seq": row.seq,
                "platform": row.platform,
                "native_id": row.native_id,
                "version": row.version,
                "url": row.url,
                "author_handle": row.author_handle,
                "author_id": row.author_id,
                "posted_at": evidence.format_time(row.posted_at),
                "captured_at": evidence.format_time(row.captured_at),
                "text": row.text,
                "raw_sha256": row.raw_sha256,
            }
        )
        assert row.sha256 == record_hash
        previous = evidence.chain_sha256(previous, record_hash)
        assert row.chain_sha256 == previous
    assert head is not None
    assert (head.seq, head.chain_sha256) == (4, previous)
    assert rows[0].captured_at == evidence.truncate_to_second(NOW)


DAY = timedelta(days=1)


def test_markers_and_coverage_are_committed_with_the_poll_or_not_at_all(
    store: Store, engine: Engine
) -> None:
    watched = Watched(timedelta(minutes=5), (CASE_ID,))
    poll = PollRecord(
        "reddit", "reddit", [make_obs()], {}, {}, [], NOW, markers=["a" * 64], watched=watched
    )
    store.record_poll(poll)
    assert (count(engine, SeenItem), count(engine, CoverageState)) == (1, 1)

    with Session(engine) as session, session.begin():
        session.execute(update(ChainHead).values(id=2))  # the next poll's write fails
    later = dataclasses.replace(
        poll, observations=[make_obs("t1_new", "other")], markers=["b" * 64], now=NOW + DAY
    )
    with pytest.raises(StoreError):
        store.record_poll(later)
    assert (count(engine, SeenItem), count(engine, Evidence)) == (1, 1)
    with Session(engine) as session:
        coverage = session.get(CoverageState, "reddit")
        assert coverage is not None
        assert coverage.last_success == NOW


# ---------------------------------------------------------------- violations


def test_hits_of_one_author_group_within_the_window_and_split_outside(
    store: Store, engine: Engine
) -> None:
    record(store, [make_obs("a", "one")], {0: [make_hit()]})
    later = NOW + timedelta(minutes=7)
    joined = record(store, [make_obs("b", "two", posted_at=later)], {0: [make_hit()]}, now=later)
    far = NOW + timedelta(minutes=40)
    split = record(store, [make_obs("c", "three", posted_at=far)], {0: [make_hit()]}, now=far)

    assert (joined.new_violations, joined.joined_violations) == (0, 1)
    assert (split.new_violations, split.joined_violations) == (1, 0)
    first, second = violations(engine)
    assert (first.first_seen, first.last_seen) == (NOW, later)
    assert (second.first_seen, second.last_seen) == (far, far)
    assert count(engine, ViolationEvidence) == 3


def test_hits_of_one_poll_group_as_they_would_across_polls(store: Store, engine: Engine) -> None:
    # The poll's index of violations grows as its hits widen them: the item at +16 min
    # is near only once the one at +8 min has widened the stored violation.
    record(store, [make_obs("a", "zero", posted_at=NOW - timedelta(minutes=8))], {0: [make_hit()]})
    minutes = (0, 8, 16, 40)
    batch = [make_obs(f"b{m}", f"at {m}", posted_at=NOW + timedelta(minutes=m)) for m in minutes]
    result = record(store, batch, {index: [make_hit()] for index in range(len(batch))})

    assert (result.new_violations, result.joined_violations) == (1, 1)
    first, second = violations(engine)
    assert (first.first_seen, first.last_seen) == (
        NOW - timedelta(minutes=8),
        NOW + timedelta(minutes=16),
    )
    assert (second.first_seen, second.last_seen) == (NOW + timedelta(minutes=40),) * 2
    assert count(engine, ViolationEvidence) == 5


def test_same_text_on_two_platforms_in_one_poll_joins_one_violation(
    store: Store, engine: Engine
) -> None:
    api = make_obs("109876", "Alex,  you can't hide", platform="mastodon")
    mirror = make_obs("m-109876", "alex, you can't hide", platform="rss", author="John Doe")
    result = record(store, [api, mirror], {0: [make_hit()], 1: [make_hit(author_key="john doe")]})

    assert (result.new_violations, result.joined_violations) == (1, 0)
    [violation] = store.timeline(CASE_ID, include_outside=False)
    assert [item["platform"] for item in violation["evidence"]] == ["mastodon", "rss"]


def test_other_authors_do_not_group(store: Store, engine: Engine) -> None:
    record(
        store,
        [make_obs("a", "one"), make_obs("b", "two", author="jdoe_friend")],
        {0: [make_hit()], 1: [make_hit("third_party", "medium", author_key="jdoefriend")]},
    )
    assert count(engine, Violation) == 2


def test_same_text_through_two_platforms_joins_one_violation(store: Store, engine: Engine) -> None:
    api = make_obs("109876", "Alex,  you can't hide", platform="mastodon", author="jdoe")
    mirror = make_obs(
        "https://social.example/@jdoe/109876",
        "alex, you can't hide",
        platform="rss",
        author="John Doe",
        posted_at=NOW + timedelta(seconds=1),
    )
    record(store, [api], {0: [make_hit()]}, watcher="mastodon")
    result = record(store, [mirror], {0: [make_hit(author_key="john doe")]}, watcher="rss")

    assert (result.new_violations, result.joined_violations) == (0, 1)
    [violation] = store.timeline(CASE_ID, include_outside=False)
    assert [item["platform"] for item in violation["evidence"]] == ["mastodon", "rss"]


def test_same_short_text_a_week_later_is_a_new_violation_and_alerts(
    store: Store, engine: Engine
) -> None:
    record(store, [make_obs("a", "hi")], {0: [make_hit()]})
    week = NOW + timedelta(days=7)
    result = record(
        store, [make_obs("b", "hi", platform="x", posted_at=week)], {0: [make_hit()]}, now=week
    )
    assert result.new_violations == 1
    assert result.queued_alerts == 2


def test_observation_outside_the_order_period_is_kept_but_not_alerted(
    store: Store, engine: Engine
) -> None:
    before = datetime(2025, 12, 1, tzinfo=UTC)
    result = record(
        store,
        [make_obs(posted_at=before)],
        {0: [make_hit(in_order_period=False)]},
    )
    assert (result.new_evidence, result.new_violations, result.queued_alerts) == (1, 1, 0)
    [violation] = violations(engine)
    assert violation.in_order_period is False
    assert outbox(engine) == []
    assert store.timeline(CASE_ID, include_outside=False) == []
    [shown] = store.timeline(CASE_ID, include_outside=True)
    assert shown["in_order_period"] is False


def test_suspected_only_while_every_hit_is_suspected(store: Store, engine: Engine) -> None:
    record(
        store,
        [make_obs("a", author="j0hn_doe")],
        {0: [make_hit("suspected_alt", author_key="johndoe", suspected=True, score=91.0)]},
    )
    [violation] = violations(engine)
    assert (violation.kind, violation.suspected, violation.score) == ("suspected_alt", True, 91.0)

    record(
        store,
        [make_obs("b", "again", author="j0hn_doe")],
        {0: [make_hit("contact", author_key="johndoe")]},
        now=NOW + timedelta(minutes=1),
    )
    [violation] = violations(engine)
    assert (violation.kind, violation.suspected, violation.score) == ("contact", False, 91.0)


# ---------------------------------------------------------------- outbox


def test_one_alert_per_route_honouring_min_severity(store: Store, engine: Engine) -> None:
    result = record(store, [make_obs()], {0: [make_hit("mention", "medium")]})
    [violation] = violations(engine)
    [alert] = outbox(engine)

    assert result.queued_alerts == 1
    assert alert.dedup_key == f"violation:{violation.id}:phone"
    assert (alert.route, alert.category, alert.state) == ("phone", "violation", "pending")
    assert (alert.violation_id, alert.severity, alert.attempts) == (violation.id, "medium", 0)
    assert alert.due_at == NOW + timedelta(seconds=60)
    assert alert.next_attempt_at == alert.due_at
    assert alert.created_at == NOW


def test_high_severity_alerts_every_route(store: Store, engine: Engine) -> None:
    result = record(store, [make_obs()], {0: [make_hit()]})
    assert result.queued_alerts == 2
    assert sorted(alert.route for alert in outbox(engine)) == ["lawyer", "phone"]


def test_severity_upgrade_adds_the_missing_route_once(store: Store, engine: Engine) -> None:
    record(store, [make_obs("a")], {0: [make_hit("mention", "medium")]})
    upgraded = record(
        store, [make_obs("b", "second")], {0: [make_hit()]}, now=NOW + timedelta(minutes=2)
    )
    again = record(
        store, [make_obs("c", "third")], {0: [make_hit()]}, now=NOW + timedelta(minutes=3)
    )

    assert (upgraded.joined_violations, upgraded.queued_alerts) == (1, 1)
    assert (again.joined_violations, again.queued_alerts) == (1, 0)
    [violation] = violations(engine)
    assert (violation.kind, violation.severity) == ("contact", "high")
    assert sorted(alert.route for alert in outbox(engine)) == ["lawyer", "phone"]


def test_outbox_summary(store: Store, engine: Engine) -> None:
    record(store, [make_obs()], {0: [make_hit()]})
    summary = store.outbox_summary(NOW + timedelta(seconds=1))
    # lawyer has no group_wait: due at once; phone waits 60 s.
    assert (summary.pending, summary.due_now, summary.failing) == (2, 1, 0)
    assert summary.oldest_pending_at == NOW
    with Session(engine) as session, session.begin():
        session.execute(update(OutboxAlert).where(OutboxAlert.route == "phone").values(attempts=1))
        session.execute(
            update(OutboxAlert).where(OutboxAlert.route == "lawyer").values(state="sent")
        )
    summary = store.outbox_summary(NOW + timedelta(minutes=5))
    assert (summary.pending, summary.due_now, summary.failing) == (1, 1, 1)


# ---------------------------------------------------------------- watcher state


def test_failures_count_up_and_a_successful_poll_resets_them(store: Store, engine: Engine) -> None:
    record(store, [], state={"after": "t1_first"})
    for expected in (1, 2, 3):
        failure = store.record_failure(
            "reddit", "reddit", "HTTP 503", NOW + timedelta(minutes=expected), disable=False
        )
        assert (failure.consecutive_failures, failure.failing_alerted) == (expected, False)
    with Session(engine) as session, session.begin():  # as the planner would have
        session.execute(update(WatcherState).values(failing_alerted=True))
    view = store.watcher_state("reddit")
    assert view is not None
    assert (view.consecutive_failures, view.failing_alerted, view.last_error) == (
        3,
        True,
        "HTTP 503",
    )
    # A failed poll keeps the cursor, so nothing is skipped after recovery.
    assert view.cursor == {"after": "t1_first"}

    later = NOW + timedelta(hours=1)
    result = record(store, [], state={"after": "t1_next"}, now=later)
    assert result.recovered is True
    view = store.watcher_state("reddit")
    assert view is not None
    assert (view.consecutive_failures, view.failing_alerted, view.last_error) == (0, False, None)
    assert (view.cursor, view.status_notes) == ({"after": "t1_next"}, ("budget 90%",))
    assert view.last_poll_at == view.last_success_at == later


def test_failure_of_a_new_watcher_and_disabling(store: Store) -> None:
    assert store.watcher_state("x") is None
    failure = store.record_failure("x", "x", "credentials rejected", NOW, disable=True)
    assert (failure.consecutive_failures, failure.disabled_reason) == (1, "credentials rejected")
    [view] = store.watcher_statuses()
    assert (view.name, view.type, view.disabled_reason, view.last_success_at) == (
        "x",
        "x",
        "credentials rejected",
        None,
    )
    assert record(store, [], watcher="x").recovered is False


def test_sync_cases_inserts_then_updates(store: Store, engine: Engine) -> None:
    from service.models import Case

    store.sync_cases([make_case()], NOW)
    changed = make_case(alert=["phone"])
    store.sync_cases([changed], NOW + timedelta(days=1))
    with Session(engine) as session:
        [row] = session.scalars(select(Case))
    assert row.definition == changed.model_dump(mode="json")
    assert (row.reference, row.effective, row.expires) == (
        "PO-2026-1234",
        date(2026, 1, 15),
        date(2027, 1, 15),
    )
    assert row.updated_at == NOW + timedelta(days=1)


def test_sync_cases_upserts_many_cases_in_batches(
    store: Store, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service import store as store_module
    from service.models import Case

    monkeypatch.setattr(store_module, "_CASES_PER_BATCH", 2)  # five cases: three batches
    store.sync_cases([make_case(f"case-{n}") for n in (3, 1, 4)], NOW)
    later = NOW + timedelta(hours=1)
    store.sync_cases([make_case(f"case-{n}", alert=["phone"]) for n in (5, 4, 2, 1, 3)], later)
    with Session(engine) as session:
        rows = {row.id: row for row in session.scalars(select(Case))}
    assert sorted(rows) == [f"case-{n}" for n in range(1, 6)]
    assert all(row.updated_at == later for row in rows.values())
    assert all(row.definition["alert"] == ["phone"] for row in rows.values())


# ---------------------------------------------------------------- timeline

CONTRACT_KEYS = {
    "id",
    "case",
    "kind",
    "severity",
    "suspected",
    "reason",
    "first_seen",
    "last_seen",
    "alerted",
    "evidence",
}
EXTRA_KEYS = {"in_order_period", "score"}
EVIDENCE_KEYS = {
    "platform",
    "native_id",
    "url",
    "author",
    "kind",
    "posted_at",
    "captured_at",
    "sha256",
    "text",
    "version",
    # Null until a re-check finds the item gone (DESIGN, second release).
    "deleted_at",
    "deleted_between",
}
EVIDENCE_EXTRA_KEYS = {"seq", "chain_sha256", "author_id", "raw_sha256"}


def test_timeline_has_the_contract_shape(store: Store, engine: Engine) -> None:
    later = NOW + timedelta(hours=2)
    record(store, [make_obs("late", "later one", posted_at=later)], {0: [make_hit()]}, now=later)
    record(
        store,
        [make_obs("b", "second"), make_obs("a", "first", posted_at=NOW - timedelta(minutes=1))],
        {0: [make_hit()], 1: [make_hit()]},
        now=later + timedelta(seconds=1),
    )
    with Session(engine) as session, session.begin():
        sent_violation = session.scalar(
            select(Violation.id).where(Violation.first_seen == NOW - timedelta(minutes=1))
        )
        session.execute(
            update(OutboxAlert)
            .where(OutboxAlert.violation_id == sent_violation, OutboxAlert.route == "phone")
            .values(state="sent")
        )

    timeline = store.timeline(None, include_outside=False)
    json.dumps(timeline)  # the CLI prints it as JSON as it is
    assert [entry["first_seen"] for entry in timeline] == [
        "2026-05-01T09:59:00Z",
        "2026-05-01T12:00:00Z",
    ]
    first = timeline[0]
    assert set(first) == CONTRACT_KEYS | EXTRA_KEYS
    assert (first["id"], first["case"], first["kind"], first["severity"]) == (
        sent_violation,
        CASE_ID,
        "contact",
        "high",
    )
    assert (first["suspected"], first["alerted"], first["last_seen"]) == (
        False,
        True,
        "2026-05-01T10:00:00Z",
    )
    assert (first["in_order_period"], first["score"]) == (True, None)
    # Evidence in chain order: "b" was appended before "a".
    assert [item["native_id"] for item in first["evidence"]] == ["b", "a"]
    item = first["evidence"][1]
    assert set(item) == EVIDENCE_KEYS | EVIDENCE_EXTRA_KEYS
    assert item == {
        "platform": "reddit",
        "native_id": "a",
        "url": "https://reddit.example/a",
        "author": "jdoe",
        "kind": "reply",
        "posted_at": "2026-05-01T09:59:00Z",
        "captured_at": "2026-05-01T12:00:01Z",
        "sha256": item["sha256"],
        "text": "first",
        "version": 1,
        "seq": 3,
        "chain_sha256": item["chain_sha256"],
        "author_id": "id-jdoe",
        "raw_sha256": evidence.sha256_hex(b'{"id": "abc"}'),
        "deleted_at": None,
        "deleted_between": None,
    }
    assert len(item["sha256"]) == len(item["chain_sha256"]) == 64
    assert timeline[1]["alerted"] is False
    assert store.timeline("another-case", include_outside=True) == []


def test_timeline_pages_through_many_violations(store: Store) -> None:
    # Two authors' violations share each first_seen, so paging must also order by id.
    moments = [NOW + timedelta(hours=index // 2) for index in range(23)]
    observations = [
        make_obs(f"n{index}", f"text {index}", posted_at=moment)
        for index, moment in enumerate(moments)
    ]
    hits = {index: [make_hit(author_key=f"author{index % 2}")] for index in range(23)}
    record(store, observations, hits)
    timeline = list(store.iter_timeline(CASE_ID, page_size=5))
    assert [entry["first_seen"] for entry in timeline] == [
        evidence.format_time(moment) for moment in moments
    ]
    assert len({entry["id"] for entry in timeline}) == len(moments)
    assert timeline == store.timeline(CASE_ID)


# ---------------------------------------------------------------- database


def test_sqlite_files_are_private(tmp_path: Path) -> None:
    engine = make_engine("sqlite:///data/evidence.db", tmp_path)
    try:
        migrate(engine)
        store = Store(engine)
        with engine.connect():  # an open connection keeps the -wal file in place
            record(store, [make_obs()], {0: [make_hit()]})
            names = ("evidence.db", "evidence.db-wal", "evidence.db-shm")
            files = [tmp_path / "data" / name for name in names]
            for path in files:
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    finally:
        engine.dispose()


def test_store_error_never_shows_the_password(tmp_path: Path) -> None:
    engine = make_engine("postgresql://alex:s3cr3t-db-password@127.0.0.1:1/nocontact", tmp_path)
    assert engine.url.drivername == "postgresql+psycopg"
    with pytest.raises(StoreError) as caught:
        migrate(engine)
    message = str(caught.value)
    assert message.startswith("cannot open database at postgresql+psycopg://alex:***@127.0.0.1:1")
    assert "s3cr3t" not in message
    assert "\n" not in message
    with pytest.raises(StoreError) as caught:
        make_engine("nosuchdb://alex:s3cr3t-db-password@host/db", tmp_path)
    assert "s3cr3t" not in str(caught.value)
    assert "alex:***@host" in str(caught.value)


@pytest.mark.timeout(60)
def test_concurrent_replicas_store_an_observation_once(database_url: str, tmp_path: Path) -> None:
    engines = [make_engine(database_url, tmp_path) for _ in range(2)]
    migrate(engines[0])
    stores = [Store(engine) for engine in engines]
    errors: list[BaseException] = []
    rounds = 5
    barrier = threading.Barrier(len(stores))

    def replica(store: Store) -> None:
        try:
            for round_ in range(rounds):
                observations = [
                    make_obs(f"r{round_}-{n}", f"round {round_} #{n}") for n in range(3)
                ]
                barrier.wait(timeout=20)
                record(store, observations, {n: [make_hit()] for n in range(3)})
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=replica, args=(store,)) for store in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=50)
        assert errors == []
        assert count(engines[0], Evidence) == rounds * 3
        # Every poll of a round falls in one author's window: one violation in all,
        # with one alert per route.
        assert count(engines[0], Violation) == 1
        assert count(engines[0], OutboxAlert) == 2
        with Session(engines[0]) as session:
            seqs = list(session.scalars(select(Evidence.seq).order_by(Evidence.seq)))
        assert seqs == list(range(1, rounds * 3 + 1))
    finally:
        for engine in engines:
            engine.dispose()


def test_watcher_state_rows_are_created_once_under_concurrency(
    store: Store, engine: Engine
) -> None:
    threads = [
        threading.Thread(
            target=store.record_failure,
            args=("rss", "rss", "timeout", NOW),
            kwargs={"disable": False},
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert count(engine, WatcherState) == 1
    view = store.watcher_state("rss")
    assert view is not None
    assert view.consecutive_failures == 4


def test_database_errors_are_one_line_store_errors_without_evidence_text(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url, tmp_path)  # not migrated: no tables
    try:
        store = Store(engine)
        with pytest.raises(StoreError) as caught:
            record(store, [make_obs(text="Alex, answer me s3cr3t")], {0: [make_hit()]})
        message = str(caught.value)
        assert message.startswith("database error at ")
        assert "\n" not in message
        assert "answer me" not in message
        assert "s3cr3t" not in message
        with pytest.raises(StoreError):
            store.timeline()
    finally:
        engine.dispose()


def test_naive_times_are_refused_before_anything_is_stored(store: Store, engine: Engine) -> None:
    with pytest.raises(ValueError, match="aware"):
        record(store, [make_obs()], {0: [make_hit()]}, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="aware"):
        store.record_failure("rss", "rss", "down", NOW.replace(tzinfo=None), disable=False)
    assert count(engine, Evidence) == 0
    assert store.watcher_state("rss") is None


def test_an_unknown_route_is_logged_and_the_others_still_alert(
    store: Store, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    cases = {CASE_ID: make_case(alert=["nosuch", "phone"])}
    result = record(store, [make_obs()], {0: [make_hit()]}, cases=cases)
    assert result.queued_alerts == 1
    assert [alert.route for alert in outbox(engine)] == ["phone"]
    assert "unknown alert route nosuch" in caplog.text


def test_an_existing_database_readable_by_others_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    make_engine("sqlite:///shared.db", tmp_path).dispose()
    assert "readable by others (mode 644)" in caplog.text


def test_a_hit_for_a_case_missing_from_config_keeps_the_evidence(
    store: Store, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    result = record(store, [make_obs()], {0: [make_hit(case_id="gone")]})
    assert (result.new_evidence, result.new_violations) == (1, 0)
    assert count(engine, Evidence) == 1
    assert "hit for case gone" in caplog.text
