"""The Bluesky watcher against the local fake Bluesky (XRPC through the real atproto
client) and the local fake Jetstream (WebSocket)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fakes.bluesky_server import (
    APP_PASSWORD,
    IDENTIFIER,
    PROTECTED_DID,
    FakeBluesky,
    FakeJetstream,
    bluesky_server_fixture,  # noqa: F401
    fixture,
    jetstream_fixture,  # noqa: F401
    jsonl,
    time_us,
)
from watchers.base import AuthError, RateLimitedError, Targets, TransientError
from watchers.bluesky import BlueskySettings, BlueskyWatcher, ReadOnlyViolation
from watchers.bluesky_stream import REWIND_US, parse_event, us_to_datetime

JDOE_DID = "did:plc:johndoe00000000000000001"
FRIEND_DID = "did:plc:jdoefriend00000000000001"
ALT_DID = "did:plc:j0hnd0e00000000000000001"
STRANGER_DID = "did:plc:stranger0000000000000001"
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
TARGETS = Targets(
    protected_handles=frozenset({IDENTIFIER}),
    protected_names=frozenset({"Alex Smith"}),
    restrained_handles=frozenset({"johndoe.bsky.social"}),
    associate_handles=frozenset({"jdoefriend.bsky.social"}),
    restrained_names=frozenset({"John Doe"}),
)


def at(minutes: int) -> datetime:
    return NOW - timedelta(hours=1) + timedelta(minutes=minutes)


def live(minutes: int) -> datetime:
    """A moment after the tests' start (Jetstream stamps events as it receives them)."""
    return NOW + timedelta(minutes=minutes)


def following(jet: FakeJetstream) -> Callable[[], datetime]:
    """A clock just after the newest event Jetstream has sent: time passes with events."""
    return lambda: max(NOW, jet.latest + timedelta(seconds=1))


def record(text: str, when: datetime, **extra: Any) -> dict[str, Any]:
    return {"$type": "app.bsky.feed.post", "text": text, "createdAt": when.isoformat(), **extra}


def reply_to(did: str, rkey: str) -> dict[str, Any]:
    ref = {"uri": f"at://{did}/app.bsky.feed.post/{rkey}", "cid": f"bafyrei{rkey}cid"}
    return {"root": ref, "parent": ref}


def mention_facet(did: str, start: int, end: int) -> list[dict[str, Any]]:
    return [
        {
            "$type": "app.bsky.richtext.facet",
            "index": {"byteStart": start, "byteEnd": end},
            "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}],
        }
    ]


def populate(server: FakeBluesky) -> None:
    server.add_account(JDOE_DID, "johndoe.bsky.social", "John Doe", "2023-02-01T00:00:00.000Z")
    server.add_account(FRIEND_DID, "jdoefriend.bsky.social", "Jim", "2023-03-01T00:00:00.000Z")
    server.add_account(ALT_DID, "j0hnd0e.bsky.social", "J", "2026-04-20T00:00:00.000Z")
    server.add_account(STRANGER_DID, "gardener.bsky.social", "G", "2022-01-01T00:00:00.000Z")
    server.add_post(
        JDOE_DID,
        "3jdoe1",
        record("you cannot hide", at(1), reply=reply_to(PROTECTED_DID, "3alex1")),
        at(1),
        notify="reply",
    )
    server.add_post(JDOE_DID, "3jdoe2", record("Alex Smith is a liar", at(2)), at(2))
    server.add_post(FRIEND_DID, "3friend1", record("Tell Alex Smith to call", at(3)), at(3))
    server.add_post(
        ALT_DID,
        "3alt1",
        record("@alex.bsky.social hi", at(4), facets=mention_facet(PROTECTED_DID, 0, 17)),
        at(4),
        notify="mention",
    )


def settings(
    server: FakeBluesky, jet: FakeJetstream | None = None, **extra: Any
) -> BlueskySettings:
    values: dict[str, Any] = {
        "type": "bluesky",
        "identifier": IDENTIFIER,
        "app_password": APP_PASSWORD,
        "service_url": server.base_url,
        "appview_url": server.base_url,
        "jetstream_url": jet.url if jet else "ws://127.0.0.1:9/subscribe",
        "realtime": jet is not None,
        "catchup": "3s",
        "timeout": "5s",
    }
    return BlueskySettings.model_validate(values | extra)


@pytest.fixture
def watchers() -> Iterator[list[BlueskyWatcher]]:
    made: list[BlueskyWatcher] = []
    yield made
    for watcher in made:
        watcher.close()


def make(
    made: list[BlueskyWatcher],
    config: BlueskySettings,
    clock: Callable[[], datetime] = lambda: NOW,
) -> BlueskyWatcher:
    watcher = BlueskyWatcher(config, TARGETS, clock=clock)
    made.append(watcher)
    return watcher


def test_notifications_and_author_feeds_through_the_real_client(
    bluesky_server: FakeBluesky, watchers: list[BlueskyWatcher]
) -> None:
    populate(bluesky_server)
    watcher = make(watchers, settings(bluesky_server))
    result = watcher.poll({})
    by_id = {o.native_id: o for o in result.observations}
    jdoe_reply = by_id[f"at://{JDOE_DID}/app.bsky.feed.post/3jdoe1"]
    assert jdoe_reply.kind == "reply"
    assert jdoe_reply.author_id == JDOE_DID
    assert jdoe_reply.author_handle == "johndoe.bsky.social"
    # The DID replied to is the protected person: named as the case knows them.
    assert jdoe_reply.addressed_to == (IDENTIFIER,)
    assert jdoe_reply.url == f"https://bsky.app/profile/{JDOE_DID}/post/3jdoe1"
    raw = json.loads(jdoe_reply.raw)
    assert raw["uri"] == jdoe_reply.native_id
    assert raw["cid"] == "bafyrei3jdoe1cid"
    assert raw["record"]["text"] == "you cannot hide"
    alt = by_id[f"at://{ALT_DID}/app.bsky.feed.post/3alt1"]
    assert alt.addressed_to == (IDENTIFIER,)
    assert alt.author_created_at == datetime(2026, 4, 20, tzinfo=UTC)
    assert f"at://{FRIEND_DID}/app.bsky.feed.post/3friend1" in by_id
    assert f"at://{JDOE_DID}/app.bsky.feed.post/3jdoe2" in by_id
    # Login once, then only reads; notifications carry the session's token.
    posts = [r for r in bluesky_server.requests if r.method == "POST"]
    assert [r.nsid for r in posts] == ["com.atproto.server.createSession"]
    listed = [r for r in bluesky_server.requests if "listNotifications" in r.nsid]
    assert listed
    assert all(r.authorized for r in listed)
    assert result.state["dids"]["johndoe.bsky.social"] == JDOE_DID
    # Nothing new: only the newest item of each source is read again (an item of the
    # same millisecond is never skipped; the store keeps each once).
    again = watcher.poll(result.state)
    assert {o.native_id.rsplit("/", 1)[1] for o in again.observations} == {
        "3alt1",
        "3jdoe2",
        "3friend1",
    }


def test_recorded_lexicon_shapes_are_read(
    bluesky_server: FakeBluesky, watchers: list[BlueskyWatcher]
) -> None:
    recorded = fixture("app.bsky.notification.listNotifications.json")
    bluesky_server.notifications = recorded["notifications"]
    watcher = make(watchers, settings(bluesky_server, backlog=100))
    result = watcher.poll({})
    wanted = {"reply", "mention", "quote"}
    expected = [n["uri"] for n in recorded["notifications"][:100] if n["reason"] in wanted]
    assert [o.native_id for o in result.observations] == expected
    for obs in result.observations:
        assert obs.url
        assert obs.url.startswith("https://bsky.app/profile/did:plc:")
        assert obs.author_handle
        assert obs.author_id
        assert obs.posted_at


def test_without_credentials_only_public_data_is_read(
    bluesky_server: FakeBluesky, watchers: list[BlueskyWatcher]
) -> None:
    populate(bluesky_server)
    config = settings(bluesky_server, identifier=None, app_password=None)
    result = make(watchers, config).poll({})
    assert result.observations
    assert not any("listNotifications" in r.nsid for r in bluesky_server.requests)
    assert not any(r.method == "POST" for r in bluesky_server.requests)


def test_rejected_app_password_is_an_auth_error_without_the_secret(
    bluesky_server: FakeBluesky, watchers: list[BlueskyWatcher]
) -> None:
    watcher = make(watchers, settings(bluesky_server, app_password="wrong-s3cr3t-pw"))
    with pytest.raises(AuthError) as caught:
        watcher.poll({})
    assert "app password rejected" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


def test_the_client_refuses_every_write(
    bluesky_server: FakeBluesky, watchers: list[BlueskyWatcher]
) -> None:
    watcher = make(watchers, settings(bluesky_server))
    watcher.poll({})
    client = watcher._account
    repo = client.com.atproto.repo
    post = {"$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2026-05-01T00:00:00Z"}
    for write in (
        lambda: repo.create_record(
            {"repo": PROTECTED_DID, "collection": "app.bsky.feed.post", "record": post}
        ),
        lambda: repo.delete_record(
            {"repo": PROTECTED_DID, "collection": "app.bsky.feed.post", "rkey": "3x"}
        ),
        lambda: client.app.bsky.graph.mute_actor({"actor": JDOE_DID}),
        lambda: client.app.bsky.notification.update_seen({"seen_at": "2026-01-01T00:00:00Z"}),
    ):
        with pytest.raises(ReadOnlyViolation):
            write()
    assert bluesky_server.write_attempts == []


def test_missing_app_password_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="identifier and app_password go together"):
        BlueskySettings.model_validate({"type": "bluesky", "identifier": IDENTIFIER})


# ---------------------------------------------------------------- Jetstream


def test_jetstream_follows_the_watched_dids_in_real_time(
    bluesky_server: FakeBluesky, jetstream: FakeJetstream, watchers: list[BlueskyWatcher]
) -> None:
    populate(bluesky_server)
    jetstream.post(JDOE_DID, "3live1", record("Alex Smith again", live(10)), live(10))
    jetstream.post(STRANGER_DID, "3other", record("Alex Smith roses", live(11)), live(11))
    config = settings(bluesky_server, jetstream, identifier=None, app_password=None, backlog=0)
    watcher = make(watchers, config, following(jetstream))
    first = watcher.poll({})
    ids = [o.native_id for o in first.observations]
    assert ids == [f"at://{JDOE_DID}/app.bsky.feed.post/3live1"]
    streamed = first.observations[0]
    assert streamed.author_handle == "johndoe.bsky.social"
    assert json.loads(streamed.raw)["cid"] == "bafyrei3live1cid"
    # The stream is live up to the clock (a second after the last event sent).
    assert first.state["cursor_us"] == time_us(live(11)) + 1_000_000 - REWIND_US
    assert set(jetstream.connections[0]["wantedDids"]) == {JDOE_DID, FRIEND_DID}
    assert jetstream.connections[0]["wantedCollections"] == ["app.bsky.feed.post"]

    # Events arriving between polls are returned by the next poll.
    jetstream.post(FRIEND_DID, "3live2", record("call Alex Smith", live(12)), live(12))
    jetstream.delete(JDOE_DID, "3live1", live(13))
    jetstream.identity(JDOE_DID, "johnny.bsky.social", live(14), seq=77)
    second = poll_until(watcher, first.state, 3)
    kinds = {(o.native_id, o.kind) for o in second.observations}
    assert (f"at://{FRIEND_DID}/app.bsky.feed.post/3live2", "post") in kinds
    # The delete is a fact about the stored post, not a version of it.
    assert streamed.native_id not in {o.native_id for o in second.observations}
    [deletion] = second.gone
    assert deletion.native_id == streamed.native_id
    assert deletion.at == live(13)
    assert json.loads(deletion.raw)["commit"]["operation"] == "delete"
    handle = next(o for o in second.observations if o.kind == "account")
    assert "from @johndoe.bsky.social to @johnny.bsky.social" in handle.text
    assert handle.author_id == JDOE_DID
    assert second.state["cursor_us"] == time_us(live(14))


def poll_until(watcher: BlueskyWatcher, state: dict[str, Any], count: int) -> Any:
    """Poll until ``count`` observations and deletions have arrived (the stream is
    asynchronous)."""
    found: list[Any] = []
    gone: list[Any] = []
    for _attempt in range(100):
        result = watcher.poll(state)
        found += result.observations
        gone += result.gone
        state = result.state
        if len(found) + len(gone) >= count:
            break
        time.sleep(0.05)
    result.observations, result.gone = found, gone
    return result


def test_a_restart_resumes_from_the_cursor(
    bluesky_server: FakeBluesky, jetstream: FakeJetstream, watchers: list[BlueskyWatcher]
) -> None:
    populate(bluesky_server)
    config = settings(bluesky_server, jetstream, identifier=None, app_password=None, backlog=0)
    jetstream.post(JDOE_DID, "3a", record("one", live(10)), live(10))
    first = make(watchers, config, following(jetstream)).poll({})
    assert [o.native_id.rsplit("/", 1)[1] for o in first.observations] == ["3a"]
    watchers.pop().close()
    # While nocontact is down, two more posts.
    jetstream.post(JDOE_DID, "3b", record("two", live(11)), live(11))
    jetstream.post(JDOE_DID, "3c", record("three", live(12)), live(12))
    second = make(watchers, config, following(jetstream)).poll(first.state)
    assert jetstream.connections[-1]["cursor"] == [str(time_us(live(10)) - REWIND_US)]
    rkeys = sorted({o.native_id.rsplit("/", 1)[1] for o in second.observations})
    # 3a is replayed (inside the rewind margin) but recognised as already stored.
    assert rkeys == ["3b", "3c"]
    assert second.state["cursor_us"] == time_us(live(12))


def test_a_cursor_older_than_the_replay_window_is_a_recorded_gap(
    bluesky_server: FakeBluesky, jetstream: FakeJetstream, watchers: list[BlueskyWatcher]
) -> None:
    populate(bluesky_server)
    config = settings(bluesky_server, jetstream, identifier=None, app_password=None, backlog=0)
    old = {"v": 1, "cursor_us": time_us(NOW - timedelta(days=3))}
    result = make(watchers, config).poll(old)
    gaps = [o for o in result.observations if o.native_id.startswith("jetstream-gap:")]
    assert len(gaps) == 1
    assert "replay window" in gaps[0].text
    assert any("Coverage gap" in note for note in result.status_notes)


def test_whole_network_keeps_only_posts_about_the_protected_person(
    bluesky_server: FakeBluesky, jetstream: FakeJetstream, watchers: list[BlueskyWatcher]
) -> None:
    populate(bluesky_server)
    jetstream.post(STRANGER_DID, "3rose", record("The Alex Smithson rose", live(10)), live(10))
    jetstream.post(STRANGER_DID, "3cat", record("my cat", live(11)), live(11))
    reply = record("hi", live(12), reply=reply_to(PROTECTED_DID, "3p"))
    jetstream.post(ALT_DID, "3alt2", reply, live(12))
    jetstream.post(ALT_DID, "3alt3", record("Alex Smith, answer", live(13)), live(13))
    config = settings(
        bluesky_server, jetstream, identifier=None, app_password=None, backlog=0, network="all"
    )
    watcher = make(watchers, config, following(jetstream))
    result = watcher.poll({})
    rkeys = {o.native_id.rsplit("/", 1)[1] for o in result.observations}
    # The prefilter is broad ("Smithson" passes); the matcher decides. The cat does not.
    assert rkeys == {"3rose", "3alt2", "3alt3"}
    assert "wantedDids" not in jetstream.connections[0]
    alt = next(o for o in result.observations if o.native_id.endswith("3alt2"))
    assert alt.author_handle == "j0hnd0e.bsky.social"
    assert alt.author_created_at == datetime(2026, 4, 20, tzinfo=UTC)
    # One profile lookup per new author, however many posts they wrote.
    asked = [
        a
        for r in bluesky_server.requests
        if r.nsid.endswith("getProfiles")
        for a in r.params["actors"]
    ]
    assert asked.count(ALT_DID) == 1
    info = watcher.lookup_account("j0hnd0e.bsky.social")
    assert info is not None
    assert info.account_id == ALT_DID
    # A captured stranger's post that is deleted later is recorded as deleted.
    jetstream.delete(STRANGER_DID, "3rose", live(20))
    jetstream.delete(STRANGER_DID, "3cat", live(21))
    later = poll_until(watcher, result.state, 1)
    assert later.observations == []
    assert [g.native_id.rsplit("/", 1)[1] for g in later.gone] == ["3rose"]


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (500, {"error": "InternalServerError"}, TransientError, "failed (500"),
        (502, {"error": "UpstreamFailure"}, TransientError, "cannot reach"),
        (429, {"error": "RateLimitExceeded"}, RateLimitedError, "rate limited"),
        (200, {"feed": "not a list"}, TransientError, "lexicon's shape"),
    ],
)
def test_xrpc_failures_are_one_line_watcher_errors(
    bluesky_server: FakeBluesky,
    watchers: list[BlueskyWatcher],
    status: int,
    body: dict[str, Any],
    error: type[Exception],
    text: str,
) -> None:
    populate(bluesky_server)
    bluesky_server.fail["app.bsky.feed.getAuthorFeed"] = (status, body)
    # Every source fails (two author feeds, no account): the poll fails.
    watcher = make(watchers, settings(bluesky_server, identifier=None, app_password=None))
    with pytest.raises(error) as caught:
        watcher.poll({})
    message = str(caught.value)
    assert text in message
    assert "\n" not in message
    assert "s3cr3t" not in message
    if isinstance(caught.value, RateLimitedError):
        assert caught.value.retry_after is not None
        assert 0 < caught.value.retry_after <= 60 * 60 * 24 * 365


def test_a_dropped_stream_reconnects_from_where_it_was(
    bluesky_server: FakeBluesky, jetstream: FakeJetstream, watchers: list[BlueskyWatcher]
) -> None:
    populate(bluesky_server)
    config = settings(bluesky_server, jetstream, identifier=None, app_password=None, backlog=0)
    jetstream.post(JDOE_DID, "3a", record("one", live(10)), live(10))
    watcher = make(watchers, config, following(jetstream))
    first = watcher.poll({})
    jetstream.drop()
    jetstream.emit_raw("\x00 not json {")
    jetstream.emit({"did": JDOE_DID, "time_us": time_us(live(11)), "kind": "commit"})
    jetstream.post(JDOE_DID, "3b", record("two", live(12)), live(12))
    second = poll_until(watcher, first.state, 1)
    assert [o.native_id.rsplit("/", 1)[1] for o in second.observations] == ["3b"]
    assert len(jetstream.connections) == 2
    assert jetstream.connections[1]["cursor"] == [str(time_us(live(10)) - REWIND_US)]


def test_a_busy_author_feed_is_read_page_by_page(
    bluesky_server: FakeBluesky, watchers: list[BlueskyWatcher]
) -> None:
    populate(bluesky_server)
    config = settings(bluesky_server, identifier=None, app_password=None)
    watcher = make(watchers, config)
    first = watcher.poll({})
    for index in range(120):
        when = at(20) + timedelta(seconds=index)
        bluesky_server.add_post(JDOE_DID, f"3busy{index}", record(f"post {index}", when), when)
    second = watcher.poll(first.state)
    busy = {o.native_id for o in second.observations if "/3busy" in o.native_id}
    assert len(busy) == 120
    pages = [r for r in bluesky_server.requests if r.params.get("actor") == [JDOE_DID]]
    assert [r.params.get("cursor") for r in pages[1:]] == [None, ["50"], ["100"]]


def test_without_a_watched_account_the_whole_firehose_is_never_opened(
    bluesky_server: FakeBluesky, jetstream: FakeJetstream, watchers: list[BlueskyWatcher]
) -> None:
    # Nobody exists under the configured handles: wantedDids would be empty.
    config = settings(bluesky_server, jetstream, identifier=None, app_password=None)
    watcher = make(watchers, config)
    result = watcher.poll({})
    assert result.observations == []
    assert jetstream.connections == []
    assert any("Jetstream not started" in note for note in result.status_notes)
    assert any("does not resolve" in note for note in result.status_notes)
    # Until the next resolution, every poll's status still says so.
    again = watcher.poll(result.state)
    assert any("does not resolve" in note for note in again.status_notes)


def test_a_quiet_stream_still_moves_the_cursor(
    bluesky_server: FakeBluesky, jetstream: FakeJetstream, watchers: list[BlueskyWatcher]
) -> None:
    """The restrained party may post nothing for days: that is coverage, not a gap."""
    populate(bluesky_server)
    config = settings(bluesky_server, jetstream, identifier=None, app_password=None, backlog=0)
    first = make(watchers, config).poll({})
    assert first.observations == []
    assert first.state["cursor_us"] == time_us(NOW) - REWIND_US
    watchers.pop().close()
    later = make(watchers, config, lambda: NOW + timedelta(hours=20)).poll(first.state)
    assert later.observations == []
    assert jetstream.connections[-1]["cursor"] == [str(time_us(NOW) - 2 * REWIND_US)]


def test_an_expiring_session_is_refreshed_not_recreated(
    bluesky_server: FakeBluesky, watchers: list[BlueskyWatcher]
) -> None:
    populate(bluesky_server)
    bluesky_server.access_ttl = 600  # inside the SDK's 15-minute refresh margin
    watcher = make(watchers, settings(bluesky_server))
    first = watcher.poll({})
    bluesky_server.access_ttl = 7200
    watcher.poll(first.state)
    posts = [r.nsid for r in bluesky_server.requests if r.method == "POST"]
    assert posts[0] == "com.atproto.server.createSession"
    assert "com.atproto.server.refreshSession" in posts
    assert posts.count("com.atproto.server.createSession") == 1
    listed = [r for r in bluesky_server.requests if "listNotifications" in r.nsid]
    assert listed[-1].authorized


def test_handles_are_resolved_again_a_day_later(
    bluesky_server: FakeBluesky, watchers: list[BlueskyWatcher]
) -> None:
    populate(bluesky_server)
    clock = [NOW]
    watcher = make(watchers, settings(bluesky_server), lambda: clock[0])
    state = watcher.poll({}).state

    def resolutions() -> int:
        return sum(r.nsid.endswith("resolveHandle") for r in bluesky_server.requests)

    once = resolutions()
    clock[0] = NOW + timedelta(hours=2)
    state = watcher.poll(state).state
    assert resolutions() == once
    # A day later the handle now points elsewhere: the DID that was followed is kept.
    bluesky_server.rename(JDOE_DID, "johnny.bsky.social")
    bluesky_server.add_account(
        "did:plc:squatter0000000000000001", "johndoe.bsky.social", "X", "2026-05-01T00:00:00.000Z"
    )
    clock[0] = NOW + timedelta(days=1, hours=1)
    result = watcher.poll(state)
    assert resolutions() > once
    assert result.state["dids"]["johndoe.bsky.social"] == JDOE_DID
    assert any("still following " + JDOE_DID in note for note in result.status_notes)


def test_one_failing_source_is_a_status_line_and_the_others_are_kept(
    bluesky_server: FakeBluesky, watchers: list[BlueskyWatcher]
) -> None:
    populate(bluesky_server)
    bluesky_server.fail["app.bsky.notification.listNotifications"] = (
        500,
        {"error": "InternalServerError"},
    )
    watcher = make(watchers, settings(bluesky_server))
    result = watcher.poll({})
    rkeys = {o.native_id.rsplit("/", 1)[1] for o in result.observations}
    assert rkeys == {"3jdoe1", "3jdoe2", "3friend1"}  # the author feeds
    assert any("listNotifications failed (500" in note for note in result.status_notes)
    # The notifications are read from where they were once the server is back.
    assert "notifications_newest" not in {k for k, v in result.state.items() if v}
    del bluesky_server.fail["app.bsky.notification.listNotifications"]
    later = watcher.poll(result.state)
    assert "3alt1" in {o.native_id.rsplit("/", 1)[1] for o in later.observations}


def test_recorded_jetstream_events_are_read_and_uninvolved_ones_leave_nothing(
    bluesky_server: FakeBluesky, jetstream: FakeJetstream, watchers: list[BlueskyWatcher]
) -> None:
    """Jetstream's own golden events (like, reply, repost, follow, block, profile and
    other-collection updates, a delete, identity, account) through the whole-network
    reader: all parse, none concerns the case, so none is kept."""
    golden = jsonl("subscribe_golden_v1.jsonl")
    assert all(parse_event(json.dumps(event)) is not None for event in golden)
    populate(bluesky_server)
    for event in golden:
        jetstream.emit(event)
    config = settings(
        bluesky_server, jetstream, identifier=None, app_password=None, backlog=0, network="all"
    )
    newest = max(e["time_us"] for e in golden)
    clock = lambda: us_to_datetime(newest) + timedelta(seconds=1)  # noqa: E731
    result = make(watchers, config, clock).poll({})
    assert result.observations == []
    # Only posts, identity and account events are asked for (wantedCollections).
    sent = {"wantedCollections": ["app.bsky.feed.post"]}
    assert jetstream.connections == [sent]
    assert result.state["cursor_us"] >= newest - REWIND_US
