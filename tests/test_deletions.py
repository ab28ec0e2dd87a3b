"""``service.deletions.deletions`` reads only the wanted items' re-check records, in
chunks of keys, and still finds each item's first final outcome (#15: a timeline page or
an export must not read every re-check record in the store), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from service import deletions as deletions_module
from service.db import session_factory
from service.deletions import deletions
from service.store import PollRecord, Store
from tests.test_digest_deletions import gone
from tests.test_planner import NOW
from tests.test_store import make_case, make_obs


def test_deletions_are_found_per_chunk_of_keys_and_only_for_the_keys_asked(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(engine, cases=[make_case()])
    store.sync_cases([make_case()], NOW)
    ids = [f"t1_{n}" for n in range(7)]
    store.record_poll(
        PollRecord("reddit", "reddit", [make_obs(i, f"post {i}") for i in ids], {}, {}, [], NOW)
    )
    gone(store, "t1_1", NOW + timedelta(hours=1))
    gone(store, "t1_5", NOW + timedelta(hours=2))
    gone(store, "t1_6", NOW + timedelta(hours=3))
    # Two keys a query, so the asked keys span four queries.
    monkeypatch.setattr(deletions_module, "_KEYS_PER_QUERY", 2)
    asked = [("reddit", i) for i in ids[:6]] + [("reddit", "never_stored"), ("x", "t1_1")]
    with session_factory(engine)() as session:
        found = deletions(session, asked)
    assert set(found) == {("reddit", "t1_1"), ("reddit", "t1_5")}
    assert found[("reddit", "t1_1")]["deleted_at"].startswith(
        (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    )
    assert found[("reddit", "t1_5")]["outcome"] == "deleted"
    assert found[("reddit", "t1_5")]["by_event"] is True
    assert found[("reddit", "t1_1")]["seq"] < found[("reddit", "t1_5")]["seq"]
