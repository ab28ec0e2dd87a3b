"""Re-check of captured Bluesky posts (#13, #14 item 2) through the real atproto client
against the fake AppView's ``app.bsky.feed.getPosts``: a post it no longer has is
deleted, a rewritten record (new CID) is the next version, 25 URIs a call."""

from __future__ import annotations

import json

from tests.fakes.bluesky_server import (
    FakeBluesky,
    bluesky_server_fixture,  # noqa: F401
)
from tests.test_bluesky import JDOE_DID, at, make, populate, record, settings, watchers  # noqa: F401
from watchers.base import Observation, RecheckItem
from watchers.bluesky import BlueskyWatcher


def item_of(observation: Observation) -> RecheckItem:
    return RecheckItem(observation.native_id, observation.url, observation.text, observation.raw)


def test_a_missing_post_is_deleted_and_a_new_cid_is_an_edit(
    bluesky_server: FakeBluesky,
    watchers: list[BlueskyWatcher],  # noqa: F811
) -> None:
    populate(bluesky_server)
    watcher = make(watchers, settings(bluesky_server))
    captured = {o.native_id: o for o in watcher.poll({}).observations}
    gone = f"at://{JDOE_DID}/app.bsky.feed.post/3jdoe1"
    rewritten = f"at://{JDOE_DID}/app.bsky.feed.post/3jdoe2"
    assert {gone, rewritten} <= set(captured)
    bluesky_server.delete_post(JDOE_DID, "3jdoe1")
    view = next(p for p in bluesky_server.posts if p["uri"] == rewritten)
    view.update(cid="bafyreinewcid", record=record("Alex Smith is a liar and a thief", at(2)))

    results = {r.native_id: r for r in watcher.recheck([item_of(o) for o in captured.values()])}
    assert results[gone].outcome == "deleted"
    edited = results[rewritten]
    assert edited.outcome == "edited"
    assert edited.observation is not None
    assert edited.observation.text == "Alex Smith is a liar and a thief"
    assert json.loads(edited.observation.raw)["cid"] == "bafyreinewcid"
    assert "getPosts" in edited.observation.capture_method
    others = [r.outcome for k, r in results.items() if k not in (gone, rewritten)]
    assert others
    assert set(others) == {"unchanged"}
    assert bluesky_server.write_attempts == []


def test_posts_are_asked_for_25_at_a_time_and_other_items_are_left_out(
    bluesky_server: FakeBluesky,
    watchers: list[BlueskyWatcher],  # noqa: F811
) -> None:
    populate(bluesky_server)
    for n in range(30):
        bluesky_server.add_post(JDOE_DID, f"3many{n}", record(f"post {n}", at(5)), at(5))
    watcher = make(watchers, settings(bluesky_server, identifier=None, app_password=None))
    uris = [f"at://{JDOE_DID}/app.bsky.feed.post/3many{n}" for n in range(30)]
    items = [
        RecheckItem(u, None, f"post {n}", json.dumps({"cid": f"bafyrei3many{n}cid"}).encode())
        for n, u in enumerate(uris)
    ]
    items.append(RecheckItem(f"{JDOE_DID}#identity-5", None, "a handle change"))
    results = watcher.recheck(items)
    assert [(r.native_id, r.outcome) for r in results] == [(u, "unchanged") for u in uris]
    calls = [r for r in bluesky_server.requests if r.nsid == "app.bsky.feed.getPosts"]
    assert [len(c.params["uris"]) for c in calls] == [25, 5]
