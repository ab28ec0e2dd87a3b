"""Re-check for deletions and edits (#14 item 2), through the real praw against the
fake Reddit server's ``/api/info``, and an RSS entry's page answering 410."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import sessionmaker

from service.export import export_case
from service.models import ChainRecord, Evidence, OutboxAlert, ViolationEvidence
from service.recheck import Rechecker
from service.store import Store
from service.verify import verify_store
from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.fakes.reddit_server import FakeReddit, handcrafted, reddit_server  # noqa: F401
from tests.test_reddit import settings
from tests.test_store import CASE_ID, CASES, make_hit, record
from watchers.base import Observation, RecheckItem, Targets
from watchers.reddit import RedditWatcher
from watchers.reddit_recheck import recheck_things
from watchers.rss import RssSettings, RssWatcher

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
WINDOW = timedelta(days=30)
TEXTS = {
    "t1_keep": "you cannot hide from me",
    "t1_gone": "I know where you are",
    "t1_mod": "answer me or else",
    "t1_edit": "see you tomorrow",
}


def thing(name: str, body: str, author: str = "jdoe") -> dict[str, Any]:
    made = copy.deepcopy(handcrafted("jdoe_comments_2026.json")[0])
    made["data"].update(name=name, id=name[3:], body=body, author=author,
                        permalink=f"/r/Springfield/comments/nc0p01/_/{name[3:]}/")  # fmt: skip
    return made


def observation(name: str) -> Observation:
    return Observation(
        platform="reddit",
        native_id=name,
        kind="reply",
        raw=json.dumps(thing(name, TEXTS[name])).encode(),
        watcher="reddit-test",
        url=f"https://www.reddit.com/r/Springfield/comments/nc0p01/_/{name[3:]}/",
        author_handle="jdoe",
        author_id="t2_jdoe",
        addressed_to=("alex_smith",),
        text=TEXTS[name],
        posted_at=T0 - timedelta(minutes=5),
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def count(engine: Engine, query: Any) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(query.subquery())) or 0)


def test_deletions_removals_and_edits_found_through_api_info(
    engine: Engine,
    store: Store,
    reddit_server: FakeReddit,  # noqa: F811
    tmp_path: Path,
) -> None:
    names = list(TEXTS)
    record(store, [observation(n) for n in names], {i: [make_hit()] for i in range(4)}, now=T0)
    alerts_before = count(engine, select(OutboxAlert.id))
    reddit_server.add_things(
        [
            thing("t1_keep", TEXTS["t1_keep"]),
            thing("t1_gone", "[deleted]", author="[deleted]"),
            thing("t1_mod", "[removed]"),
            thing("t1_edit", "see you tomorrow at your door"),
        ]
    )
    watcher = RedditWatcher(settings(reddit_server), Targets())
    clock = Clock()
    sessions = sessionmaker(engine, expire_on_commit=False)
    rechecker = Rechecker(sessions, store, lambda name: watcher, clock=clock)
    try:
        clock.now = T0 + timedelta(minutes=30)
        assert rechecker.run(WINDOW) == [], "nothing is due before an hour"
        clock.now = T0 + timedelta(hours=2)
        changes = {c.native_id: c for c in rechecker.run(WINDOW)}
        assert {n: c.outcome for n, c in changes.items()} == {
            "t1_gone": "deleted",
            "t1_mod": "removed",
            "t1_edit": "edited",
        }
        assert changes["t1_gone"].between == ("2026-05-01T10:00:00Z", "2026-05-01T12:00:00Z")
        (info,) = reddit_server.gets("/api/info")
        assert sorted(info.query["id"].split(",")) == sorted(names)

        clock.now = T0 + timedelta(hours=3)
        assert rechecker.run(WINDOW) == [], "the next look is after 6 h"
        clock.now = T0 + timedelta(hours=7)
        rechecker.run(WINDOW)
        assert sorted(reddit_server.gets("/api/info")[-1].query["id"].split(",")) == [
            "t1_edit",
            "t1_keep",
        ], "a deleted or removed item is not read again"
    finally:
        watcher.close()

    assert count(engine, select(OutboxAlert.id)) == alerts_before, "nothing alerted at once"
    outcomes = [
        json.loads(data)["outcome"]
        for (data,) in engine.connect().execute(
            select(ChainRecord.data)
            .where(ChainRecord.record == "recheck")
            .order_by(ChainRecord.seq)
        )
    ]
    assert sorted(outcomes[:4]) == ["deleted", "edited", "removed", "unchanged"]
    with engine.connect() as connection:
        versions = connection.execute(
            select(Evidence.version, Evidence.text, ViolationEvidence.violation_id)
            .join(ViolationEvidence, ViolationEvidence.evidence_id == Evidence.id)
            .where(Evidence.native_id == "t1_edit")
            .order_by(Evidence.version)
        ).all()
    assert [(v, t) for v, t, _ in versions] == [
        (1, "see you tomorrow"),
        (2, "see you tomorrow at your door"),
    ]
    assert versions[0][2] == versions[1][2], "the new version joins the same violation"
    assert verify_store(sessions).ok

    timeline = store.timeline(CASE_ID)
    items = {e["native_id"]: e for v in timeline for e in v["evidence"]}
    assert items["t1_gone"]["deleted_at"] == "2026-05-01T12:00:00Z"
    assert items["t1_gone"]["deleted_between"] == ["2026-05-01T10:00:00Z", "2026-05-01T12:00:00Z"]
    assert items["t1_keep"]["deleted_at"] is None
    assert items["t1_gone"]["text"] == TEXTS["t1_gone"], "the stored copy is kept"

    out = tmp_path / "packet"
    export_case(sessions, CASES[CASE_ID], out, now=T0 + timedelta(days=1))
    html = (out / "report.html").read_text()
    assert "Re-check: DELETED (deleted by its author) between 2026-05-01T10:00:00Z" in html
    assert "Re-check: REMOVED (removed by a moderator or Reddit)" in html
    packet = json.loads((out / "evidence.json").read_text())
    listed = {e["native_id"]: e for v in packet["violations"] for e in v["evidence"]}
    assert listed["t1_gone"]["deleted_between"] == items["t1_gone"]["deleted_between"]
    assert listed["t1_keep"]["deleted_at"] is None


def test_api_info_is_read_100_at_a_time() -> None:
    asked: list[list[str]] = []

    def info(fullnames: list[str]) -> list[dict[str, Any]]:
        asked.append(fullnames)
        return [thing(name, "same") for name in fullnames]

    items = [RecheckItem(f"t1_{n:04d}", None, "same") for n in range(250)]
    results = recheck_things(info, [*items, RecheckItem("t4_msg", None, "x")], "reddit")
    assert [len(batch) for batch in asked] == [100, 100, 50]
    assert {r.outcome for r in results} == {"unchanged"}
    assert len(results) == 250, "private messages cannot be read again and are left out"


def test_an_rss_entry_whose_page_answers_410_is_removed(feed_server: FeedServer) -> None:  # noqa: F811
    feed_server.set("/posts/1", status=410, body=b"gone")
    feed_server.set("/posts/2", body=b"<html>still here</html>")
    watcher = RssWatcher(
        RssSettings.model_validate({"type": "rss", "url": feed_server.url("/feed.xml")}),
        Targets(),
    )
    try:
        results = watcher.recheck(
            [
                RecheckItem("e1", feed_server.url("/posts/1"), "a"),
                RecheckItem("e2", feed_server.url("/posts/2"), "b"),
                RecheckItem("e3", None, "no page"),
            ]
        )
    finally:
        watcher.close()
    assert [(r.native_id, r.outcome, r.detail) for r in results] == [
        ("e1", "removed", "its page answers HTTP 410"),
        ("e2", "unchanged", ""),
    ]
    assert feed_server.requests_for("/feed.xml") == [], "the feed itself is not asked"
