"""True versions (#14 item 4): a version is what the author wrote, not how we read it.

The same unchanged post read through another endpoint (X mentions, then search), with
another recipients list, or after the author changed their display name, is one
version; an edit of the text is a second one. Rows stored by the first release keep
their content hash (records are never rewritten) and still match what is polled now.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select, update

from service.db import session_factory
from service.evidence import content_sha256, format_time
from service.models import Evidence
from service.store import Store
from service.verify import verify_store
from tests.fakes.x_server import (
    FakeXServer,
    fixture_body,
    x_server_fixture,  # noqa: F401
)
from tests.test_store import NOW, make_obs, record
from tests.test_x import NOW as X_NOW
from tests.test_x import TARGETS, Clock, clock, make_watcher, people, stored  # noqa: F401
from watchers.base import Observation


def versions(engine: Engine) -> list[tuple[str, int, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(Evidence.native_id, Evidence.version, Evidence.kind).order_by(Evidence.seq)
        )
        return [(row.native_id, row.version, row.kind) for row in rows]


def test_endpoint_recipients_url_and_display_name_are_not_edits(
    store: Store, engine: Engine
) -> None:
    first = make_obs("t1_abc", "Alex, answer me")
    record(store, [first])
    same_words = [
        dataclasses.replace(first, kind="mention"),
        dataclasses.replace(first, addressed_to=("alex_smith", "someone_else")),
        dataclasses.replace(first, author_display_name="Johnny D"),
        dataclasses.replace(first, url="https://reddit.example/other/t1_abc"),
        dataclasses.replace(first, raw=b'{"id": "abc", "score": 7}'),
    ]
    assert store.new_observations(same_words) == []
    record(store, same_words, now=NOW + timedelta(hours=1))
    assert versions(engine) == [("t1_abc", 1, "reply")]

    edited = dataclasses.replace(first, text="Alex, answer me now")
    record(store, [edited], now=NOW + timedelta(hours=2))
    assert versions(engine) == [("t1_abc", 1, "reply"), ("t1_abc", 2, "reply")]


def _first_release_hash(obs: Observation) -> str:
    """The content identity the first release stored (kind, recipients, names…)."""
    return content_sha256(
        {
            "kind": obs.kind,
            "url": obs.url,
            "author_handle": obs.author_handle,
            "author_id": obs.author_id,
            "author_display_name": obs.author_display_name,
            "text": obs.text,
            "posted_at": format_time(obs.posted_at),
            "addressed_to": sorted(obs.addressed_to),
        }
    )


def test_rows_of_the_first_release_are_kept_and_still_match(store: Store, engine: Engine) -> None:
    first = make_obs("t1_old", "Alex, I am outside")
    record(store, [first])
    legacy = _first_release_hash(first)
    with engine.begin() as connection:  # the row as the first release wrote it
        connection.execute(update(Evidence).values(content_sha256=legacy))

    renamed = dataclasses.replace(first, kind="comment", author_display_name="J.")
    assert store.new_observations([renamed]) == []
    record(store, [renamed], now=NOW + timedelta(hours=1))

    assert versions(engine) == [("t1_old", 1, "reply")]
    with engine.connect() as connection:
        assert connection.scalar(select(Evidence.content_sha256)) == legacy, "never rewritten"
    assert verify_chain_ok(engine)


def verify_chain_ok(engine: Engine) -> bool:
    return verify_store(session_factory(engine, readonly=True)).ok


def test_x_mentions_then_search_after_a_rename_is_one_version(
    make_watcher: Any,  # noqa: F811
    x_server: FakeXServer,
    people: dict[str, dict[str, Any]],  # noqa: F811
    clock: Clock,  # noqa: F811
    store: Store,
    engine: Engine,
) -> None:
    post = x_server.add_tweet(
        people["john"], "@alexsmith I will wait at your door", X_NOW - timedelta(hours=1)
    )
    watcher = make_watcher(TARGETS)
    x_server.fail_next(500, fixture_body("server_error.json"), path_contains="/search")
    first = watcher.poll({})
    (seen,) = [o for o in first.observations if o.native_id == post["id"]]
    assert seen.kind == "mention"
    record(store, first.observations, now=X_NOW)

    people["john"]["name"] = "Johnny (new name)"
    clock.now = X_NOW + timedelta(minutes=15)
    second = watcher.poll(stored(first.state))
    (again,) = [o for o in second.observations if o.native_id == post["id"]]
    assert (again.kind, again.author_display_name) == ("post", "Johnny (new name)")

    assert store.new_observations(second.observations) == []
    record(store, second.observations, now=clock.now)
    assert [v for v in versions(engine) if v[0] == post["id"]] == [(post["id"], 1, "mention")]
