"""The Reddit watcher, through the real praw/prawcore, against a local fake Reddit."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from tests.fakes.reddit_server import (
    ACCESS_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USERNAME,
    FakeReddit,
    as_author,
    handcrafted,
    recorded_body,
    recorded_children,
    reddit_server,  # noqa: F401
)
from watchers.base import (
    AuthError,
    Observation,
    RateLimitedError,
    Targets,
    TransientError,
    Watcher,
)
from watchers.reddit import ReadOnlyViolation, RedditSettings, RedditWatcher

TARGETS = Targets(
    protected_handles=frozenset({USERNAME}),
    protected_names=frozenset({"Alex Smith"}),
    restrained_handles=frozenset({"jdoe"}),
    associate_handles=frozenset({"jdoe_friend"}),
    restrained_names=frozenset({"John Doe"}),
)
INBOX_ONLY = Targets(protected_handles=frozenset({USERNAME}))
PROTECTED_ONLY = Targets(
    protected_handles=frozenset({USERNAME}), protected_names=frozenset({"Alex Smith"})
)
SECRET_MARKER = "s3cr3t"


def populate(fake: FakeReddit) -> None:
    """Recorded things (older) under handcrafted 2026 ones (newer), newest first."""
    fake.set_listing(
        "/message/inbox",
        handcrafted("inbox_2026.json") + recorded_children("TestInbox.test_all", "/message/inbox"),
    )
    fake.set_listing(
        "/message/mentions",
        handcrafted("mentions_2026.json")
        + recorded_children("TestInbox.test_mentions", "/message/mentions"),
    )
    spez_comments = recorded_children(
        "TestRedditorListings.test_comments__new", "/user/spez/comments"
    )
    fake.set_listing(
        "/user/jdoe/comments",
        handcrafted("jdoe_comments_2026.json") + as_author(spez_comments, "jdoe"),
    )
    spez_posts = recorded_children(
        "TestRedditorListings.test_submissions__new", "/user/spez/submitted"
    )
    fake.set_listing("/user/jdoe/submitted", as_author(spez_posts, "jdoe"))
    fake.set_listing("/user/jdoe_friend/comments", [])
    fake.set_listing("/user/jdoe_friend/submitted", [])
    fake.add_things(handcrafted("parents_2026.json"))
    fake.set_listing(
        "/r/all/search",
        handcrafted("search_2026.json")
        + recorded_children("TestSubreddit.test_search", "/r/all/search"),
    )
    for name, about in handcrafted("accounts.json").items():
        fake.set_account(name, about)
    fake.set_account(
        "PyAPITestUser3",
        recorded_body("TestRedditor.test_fullname_init", "/user/PyAPITestUser3/about"),
    )


def settings(fake: FakeReddit, **overrides: Any) -> RedditSettings:
    values: dict[str, Any] = {
        "type": "reddit",
        "name": "reddit-test",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "username": USERNAME,
        "password": PASSWORD,
        "user_agent": "nocontact-tests (by u/alex_smith)",
        "oauth_url": fake.base_url,
        "reddit_url": fake.base_url,
        "timeout": "5s",
    }
    values.update(overrides)
    return RedditSettings.model_validate(values)


@pytest.fixture
def fake(reddit_server: FakeReddit) -> FakeReddit:  # noqa: F811
    populate(reddit_server)
    return reddit_server


def watcher_for(fake: FakeReddit, targets: Targets = TARGETS, /, **overrides: Any) -> RedditWatcher:
    return RedditWatcher(settings(fake, **overrides), targets)


def by_id(observations: list[Observation]) -> dict[str, Observation]:
    ids = [o.native_id for o in observations]
    assert len(ids) == len(set(ids)), "a thing was emitted twice in one poll"
    return {o.native_id: o for o in observations}


def listing_gets(fake: FakeReddit) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in fake.requests:
        if request.method == "GET" and request.path not in ("/api/info",):
            counts[request.path] = counts.get(request.path, 0) + 1
    return counts


def test_watcher_protocol_and_settings(fake: FakeReddit) -> None:
    watcher = watcher_for(fake)
    assert isinstance(watcher, Watcher)
    assert (watcher.type_name, watcher.platform) == ("reddit", "reddit")
    assert watcher.settings.secret_fields() == {"client_secret", "password"}
    assert SECRET_MARKER not in repr(watcher.settings)
    assert watcher.name == "reddit-test"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"password": None}, "both username and password"),
        ({"oauth_url": "http://oauth.example.org"}, "use https"),
        ({"user_agent": "ua"}, "at least 7"),
        ({"subreddits": ["ok_name", "not a sub"]}, "not subreddit names"),
        ({"backlog": 0}, "greater than or equal to 1"),
    ],
)
def test_settings_reject_unworkable_values(
    fake: FakeReddit, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(fake, **overrides)


def test_blank_username_means_no_inbox(fake: FakeReddit) -> None:
    s = settings(fake, username="", password="")
    assert (s.username, s.password) == (None, None)


def test_inbox_items_address_the_protected_person(fake: FakeReddit) -> None:
    watcher = watcher_for(fake, INBOX_ONLY)
    result = watcher.poll({})
    seen = by_id(result.observations)

    dm = seen["t4_3nc0m01"]
    assert dm.kind == "direct_message"
    assert dm.addressed_to == (USERNAME,)
    assert (dm.author_handle, dm.author_id) == ("jdoe", "t2_nc0jdoe")
    assert dm.text == "hey\n\nWe need to talk."
    assert dm.url == "https://www.reddit.com/message/messages/3nc0m01"
    assert dm.posted_at == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert dm.capture_method == "Reddit API (praw) GET /message/inbox"

    reply = seen["t1_n0c4l01"]
    assert (reply.kind, reply.addressed_to, reply.author_handle) == (
        "reply",
        (USERNAME,),
        "j0hn_d0e",
    )
    assert reply.url == (
        "https://www.reddit.com/r/Springfield/comments/nc0p01/local_news_thread/n0c4l01/"
    )

    mention = seen["t1_n0c4m01"]  # listed by both /message/inbox and /message/mentions
    assert (mention.kind, mention.addressed_to) == ("mention", (USERNAME,))

    deleted = seen["t1_n0c4d01"]
    assert (deleted.author_handle, deleted.author_id) == ("[deleted]", None)

    recorded_mentions = [o for o in result.observations if o.native_id == "t1_ekftbox"]
    assert [o.kind for o in recorded_mentions] == ["mention"]
    kinds = {o.kind for o in result.observations}
    assert kinds == {"reply", "mention", "direct_message"}
    assert all(o.addressed_to[0] == USERNAME for o in result.observations)
    assert all(o.platform == "reddit" and o.watcher == "reddit-test" for o in result.observations)

    served = {c["data"]["name"]: c for c in handcrafted("inbox_2026.json")}
    assert json.loads(dm.raw) == served["t4_3nc0m01"]
    assert list(json.loads(dm.raw)["data"]) == list(served["t4_3nc0m01"]["data"])  # key order

    inbox_gets = [r for r in fake.requests if r.path.startswith("/message/")]
    assert inbox_gets
    assert all(r.query.get("mark") == "false" for r in inbox_gets)
    assert {r.path for r in inbox_gets} == {"/message/inbox", "/message/mentions"}
    assert all(r.authorized for r in fake.requests if r.method == "GET")


def test_protected_persons_own_messages_are_not_contact(fake: FakeReddit) -> None:
    own = handcrafted("inbox_2026.json")[3]
    own["data"].update(name="t4_3nc0own", id="3nc0own", author=USERNAME, dest="jdoe")
    own["data"]["created_utc"] = 1778500000.0
    fake.prepend("/message/inbox", [own])
    seen = by_id(watcher_for(fake, INBOX_ONLY).poll({}).observations)
    assert "t4_3nc0own" not in seen
    assert "t4_3nc0m01" in seen


def test_restrained_comments_resolve_parent_author(fake: FakeReddit) -> None:
    watcher = watcher_for(fake, username=None, password=None)  # app-only: no inbox
    result = watcher.poll({})
    seen = by_id(result.observations)

    reply = seen["t1_n0c4r02"]
    assert reply.kind == "reply"
    assert reply.addressed_to == (USERNAME,)  # parent t1_n0c4p01 is alex_smith's comment
    assert reply.author_handle == "jdoe"
    assert reply.url == (
        "https://www.reddit.com/r/Springfield/comments/nc0p01/local_news_thread/n0c4r02/"
    )
    assert reply.capture_method == "Reddit API (praw) GET /user/jdoe/comments"

    top_level = seen["t1_n0c4r01"]
    assert top_level.kind == "comment"
    assert top_level.addressed_to == ("someone_else",)  # the post's author
    assert "Alex Smith" in top_level.text

    posts = [o for o in result.observations if o.kind == "post"]
    assert len(posts) == 100
    assert all(o.author_handle == "jdoe" for o in posts)
    post = seen["t3_434h6c"]
    assert post.text.startswith("Reddit in 2016\n\nHi All,")
    assert post.url == "https://www.reddit.com/r/announcements/comments/434h6c/reddit_in_2016/"

    assert not [r for r in fake.requests if r.path.startswith("/message/")]
    token_posts = [r for r in fake.requests if r.method == "POST"]
    assert len(token_posts) == 1

    info = fake.gets("/api/info")
    asked = [i for r in info for i in r.query["id"].split(",")]
    assert all(len(r.query["id"].split(",")) <= 100 for r in info)
    assert len(asked) == len(set(asked))
    assert {"t1_n0c4p01", "t3_nc0p01"} <= set(asked)


def test_second_poll_adds_nothing_and_stops_at_the_cursor(fake: FakeReddit) -> None:
    watcher = watcher_for(fake, search=True)
    first = watcher.poll({})
    assert first.observations
    state = json.loads(json.dumps(first.state))  # what the store keeps is JSON
    before = listing_gets(fake)
    info_before = len(fake.gets("/api/info"))

    second = watcher.poll(state)
    assert second.observations == []
    after = listing_gets(fake)
    assert {path: after[path] - before.get(path, 0) for path in after} == dict.fromkeys(after, 1)
    last_page_requests = fake.requests[-len(after) :]
    assert all("after" not in r.query for r in last_page_requests)
    assert len(fake.gets("/api/info")) == info_before

    new = handcrafted("jdoe_comments_2026.json")[0]
    new["data"].update(name="t1_n0c4r03", id="n0c4r03", body="again", created_utc=1778200000.0)
    fake.prepend("/user/jdoe/comments", [new])
    third = watcher.poll(second.state)
    assert [o.native_id for o in third.observations] == ["t1_n0c4r03"]
    assert third.observations[0].addressed_to == (USERNAME,)  # parent author from cache
    assert len(fake.gets("/api/info")) == info_before


def test_cursor_item_deleted_still_stops(fake: FakeReddit) -> None:
    watcher = watcher_for(fake, INBOX_ONLY)
    state = watcher.poll({}).state
    inbox = fake.listings["/message/inbox"]
    newest = inbox[0]["data"]["name"]
    fake.listings["/message/inbox"] = [c for c in inbox if c["data"]["name"] != newest]
    assert watcher.poll(state).observations == []


def test_backlog_limits_the_first_poll(fake: FakeReddit) -> None:
    watcher = watcher_for(fake, backlog=5)
    result = watcher.poll({})
    per_listing: dict[str, int] = {}
    for obs in result.observations:
        per_listing[obs.capture_method] = per_listing.get(obs.capture_method, 0) + 1
    assert per_listing["Reddit API (praw) GET /user/jdoe/comments"] == 5
    assert per_listing["Reddit API (praw) GET /user/jdoe/submitted"] == 5
    assert per_listing["Reddit API (praw) GET /message/inbox"] == 5
    listing_requests = [r for r in fake.requests if r.method == "GET" and r.path != "/api/info"]
    assert all(r.query["limit"] == "5" for r in listing_requests)

    fresh = watcher_for(fake, INBOX_ONLY, backlog=150)
    inbox = fresh.poll({}).observations
    assert len([o for o in inbox if o.capture_method.endswith("/message/inbox")]) == 105
    pages = fake.gets("/message/inbox")[-2:]
    assert [p.query["limit"] for p in pages] == ["100", "50"]
    assert pages[1].query["after"] == fake.listings["/message/inbox"][99]["data"]["name"]


def test_search_finds_posts_naming_the_protected_person(fake: FakeReddit) -> None:
    watcher = watcher_for(fake, PROTECTED_ONLY, username=None, password=None, search=True)
    result = watcher.poll({})
    seen = by_id(result.observations)
    post = seen["t3_nc0s01"]
    assert (post.kind, post.author_handle) == ("post", "j0hn_d0e")
    assert post.text == "Anyone know Alex Smith from Springfield?\n\nAsking for a friend."
    assert post.url == (
        "https://www.reddit.com/r/Springfield/comments/nc0s01/anyone_know_alex_smith_from_springfield/"
    )
    assert len(result.observations) == 7
    (request,) = fake.gets("/r/all/search")
    assert request.query["q"] == '"Alex Smith" OR "alex_smith"'
    assert (request.query["sort"], request.query["restrict_sr"]) == ("new", "off")


def test_search_restricted_to_subreddits(fake: FakeReddit) -> None:
    fake.set_listing("/r/Springfield+news/search", handcrafted("search_2026.json"))
    watcher = watcher_for(
        fake,
        PROTECTED_ONLY,
        username=None,
        password=None,
        search=True,
        subreddits=["Springfield", "r/news"],
    )
    assert [o.native_id for o in watcher.poll({}).observations] == ["t3_nc0s01"]
    (request,) = fake.gets("/r/Springfield+news/search")
    assert request.query["restrict_sr"] == "on"


def test_lookup_account(fake: FakeReddit) -> None:
    watcher = watcher_for(fake)
    look = watcher.lookup_account("j0hn_d0e")
    assert look is not None
    assert (look.status, look.account_id) == ("active", "t2_nc0look")
    assert look.created_at == datetime(2026, 4, 20, 8, 0, tzinfo=UTC)

    old = watcher.lookup_account("u/PyAPITestUser3")
    assert old is not None
    assert old.status == "active"
    assert old.created_at is not None
    assert old.created_at.year == 2011

    suspended = watcher.lookup_account("suspended_user")
    assert suspended is not None
    assert suspended.status == "suspended"
    missing = watcher.lookup_account("nobody_here")
    assert missing is not None
    assert missing.status == "not_found"

    requests_so_far = len(fake.requests)
    deleted = watcher.lookup_account("[deleted]")
    assert deleted is not None
    assert deleted.status == "deleted"
    again = watcher.lookup_account("J0HN_D0E")  # cached, whatever the case
    assert again == look
    assert len(fake.requests) == requests_so_far


def test_unavailable_account_listing_is_a_note_not_a_failure(fake: FakeReddit) -> None:
    del fake.listings["/user/jdoe_friend/comments"]
    result = watcher_for(fake).poll({})
    assert any("u/jdoe_friend's comments unavailable (HTTP 404)" in n for n in result.status_notes)
    assert "t1_n0c4r02" in by_id(result.observations)
    assert "user/jdoe_friend/comments" not in result.state["cursors"]


def test_rate_limited(fake: FakeReddit) -> None:
    fake.fail(
        "/message/inbox",
        429,
        headers={
            "retry-after": "42",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "600",
            "x-ratelimit-reset": "42",
        },
    )
    watcher = watcher_for(fake)
    with pytest.raises(RateLimitedError) as raised:
        watcher.poll({})
    assert raised.value.retry_after == 42
    assert "429" in str(raised.value)

    # The window is used up: the next poll fails fast instead of sleeping in prawcore.
    count = len(fake.requests)
    with pytest.raises(RateLimitedError) as again:
        watcher.poll({})
    assert again.value.retry_after is not None
    assert 30 < again.value.retry_after <= 42
    assert len(fake.requests) == count


def test_server_error_is_transient(fake: FakeReddit) -> None:
    fake.fail("/user/jdoe/comments", 500, body=b"<html>oops</html>", times=3)
    with pytest.raises(TransientError) as raised:
        watcher_for(fake).poll({})
    assert not isinstance(raised.value, RateLimitedError)
    assert str(raised.value) == "reddit: server error 500 on GET /user/jdoe/comments"
    assert len(fake.gets("/user/jdoe/comments")) == 3  # prawcore retried twice


def test_timeout_setting_is_applied(fake: FakeReddit) -> None:
    # praw 8 does not pass its own timeout to prawcore (which waits 16 s): the watcher's
    # must hold, so a slow answer is abandoned and retried.
    fake.delay("/message/inbox", 1.5)
    result = watcher_for(fake, INBOX_ONLY, timeout="1s").poll({})
    assert "t4_3nc0m01" in by_id(result.observations)
    assert len(fake.gets("/message/inbox")) == 2


def test_garbage_is_transient(fake: FakeReddit) -> None:
    fake.fail("/message/inbox", 200, headers={"content-type": "text/html"}, body=b"<html>")
    with pytest.raises(TransientError, match="garbage"):
        watcher_for(fake).poll({})
    fake.fail("/message/inbox", 200, body=b'{"kind": "t2", "data": {}}')
    with pytest.raises(TransientError, match="unexpected response to GET /message/inbox"):
        watcher_for(fake).poll({})


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"client_secret": "s3cr3t-wrong-secret"}, "token request answered 401"),
        ({"password": "s3cr3t-wrong-password"}, "invalid_grant"),
    ],
)
def test_bad_credentials_are_an_auth_error(
    fake: FakeReddit, overrides: dict[str, str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    watcher = watcher_for(fake, **overrides)
    with pytest.raises(AuthError) as raised:
        watcher.poll({})
    message = str(raised.value)
    assert message.startswith("reddit: credentials rejected for u/alex_smith: ")
    assert reason in message
    assert "REDDIT_" in message
    assert "\n" not in message
    assert SECRET_MARKER not in message
    assert all(SECRET_MARKER not in r.getMessage() for r in caplog.records)
    assert [r for r in fake.requests if r.method == "GET"] == []


def test_app_only_bad_secret_is_an_auth_error(fake: FakeReddit) -> None:
    watcher = watcher_for(fake, username=None, password=None, client_secret="s3cr3t-nope")
    with pytest.raises(AuthError, match="credentials rejected for the app"):
        watcher.poll({})


def test_token_refused_on_resources_is_an_auth_error(fake: FakeReddit) -> None:
    unauthorized = {"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'}
    fake.fail("/message/inbox", 401, headers=unauthorized, times=3)
    with pytest.raises(AuthError, match="access token refused"):
        watcher_for(fake).poll({})
    # prawcore fetched a fresh token once before giving up.
    assert len([r for r in fake.requests if r.method == "POST"]) >= 2


def test_forbidden_inbox_is_an_auth_error(fake: FakeReddit) -> None:
    fake.fail("/message/inbox", 403, body=b'{"message": "Forbidden", "error": 403}')
    with pytest.raises(AuthError, match="403 on GET /message/inbox"):
        watcher_for(fake).poll({})


def test_writes_are_refused_before_they_leave(fake: FakeReddit) -> None:
    watcher = watcher_for(fake)
    reddit = watcher._client()
    with pytest.raises(ReadOnlyViolation):
        reddit.inbox.mark_all_read()
    with pytest.raises(ReadOnlyViolation):
        reddit.post("api/read_all_messages")
    assert [r.path for r in fake.requests if r.method != "GET"] in ([], ["/api/v1/access_token"])
    watcher.close()


def test_no_secret_in_logs_or_errors(fake: FakeReddit, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    watcher = watcher_for(fake, search=True)
    state = watcher.poll({}).state
    watcher.poll(state)
    watcher.lookup_account("j0hn_d0e")
    watcher.close()
    fake.fail("/message/inbox", 429, headers={"retry-after": "5"})
    with pytest.raises(RateLimitedError) as limited:
        watcher_for(fake).poll({})
    with pytest.raises(AuthError) as raised:
        watcher_for(fake, client_secret="s3cr3t-rejected").poll({})
    assert caplog.records  # praw/prawcore did log at DEBUG
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET_MARKER not in logged
    assert ACCESS_TOKEN not in logged
    assert SECRET_MARKER not in str(raised.value) + str(limited.value)


def test_observations_through_the_matcher(fake: FakeReddit) -> None:
    from service.matching import Matcher
    from service.settings import CaseSettings

    case = CaseSettings.model_validate(
        {
            "id": "smith-v-doe",
            "order": {"effective": "2026-01-15", "terms": ["no_contact", "no_mention"]},
            "protected": {"names": ["Alex Smith"], "handles": {"reddit": [USERNAME]}},
            "restrained": {
                "names": ["John Doe"],
                "handles": {"reddit": ["jdoe"]},
                "associates": {"reddit": ["jdoe_friend"]},
            },
        }
    )
    matcher = Matcher([case], clock=lambda: datetime(2026, 6, 1, tzinfo=UTC))
    watcher = watcher_for(fake, search=True)
    observations = watcher.poll({}).observations
    hits = {
        obs.native_id: found
        for obs in observations
        if (found := matcher.match(obs, account_lookup=watcher.lookup_account))
    }

    def only(native_id: str) -> Any:
        (hit,) = hits[native_id]
        return hit

    dm = only("t4_3nc0m01")
    assert (dm.kind, dm.severity, dm.in_order_period) == ("contact", "high", True)
    reply = only("t1_n0c4r02")  # jdoe answering alex_smith's comment
    assert (reply.kind, reply.target, reply.in_order_period) == ("contact", "contact", True)
    assert USERNAME in reply.reason
    named = only("t1_n0c4r01")  # jdoe naming Alex Smith under someone else's post
    assert (named.kind, named.severity) == ("mention", "medium")
    friend = only("t1_n0c4m01")
    assert (friend.kind, friend.author_class) == ("third_party", "associate")
    look = only("t1_n0c4l01")
    assert (look.kind, look.suspected) == ("suspected_alt", True)
    assert "j0hn_d0e" in look.reason
    assert look.score is not None
    assert only("t3_nc0s01").kind == "suspected_alt"  # found by search
    early = only("t1_n0c4e01")  # jdoe's reply of 2026-01-10, before the order
    assert (early.kind, early.in_order_period) == ("contact", False)
    # Recorded bot traffic (AutoModerator, reddit, ...) is nobody in this case.
    assert set(hits) <= {
        "t4_3nc0m01",
        "t1_n0c4r02",
        "t1_n0c4r01",
        "t1_n0c4m01",
        "t1_n0c4l01",
        "t3_nc0s01",
        "t1_n0c4e01",
        "t1_n0c4d01",
    }


def test_built_from_config_like_the_service_does(
    fake: FakeReddit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.config import parse_config
    from service.pipeline import build_watcher

    monkeypatch.setenv("REDDIT_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("REDDIT_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("REDDIT_USERNAME", USERNAME)
    monkeypatch.setenv("REDDIT_PASSWORD", PASSWORD)
    config = parse_config(
        f"""
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15}}
    protected: {{names: ["Alex Smith"], handles: {{reddit: [alex_smith]}}}}
    restrained: {{handles: {{reddit: [jdoe]}}, associates: {{reddit: [jdoe_friend]}}}}
watchers:
  - type: reddit
    every: 5m
    client_id: ${{REDDIT_CLIENT_ID}}
    client_secret: ${{REDDIT_CLIENT_SECRET}}
    username: ${{REDDIT_USERNAME}}
    password: ${{REDDIT_PASSWORD}}
    user_agent: "nocontact (by u/alex_smith)"
    oauth_url: {fake.base_url}
    reddit_url: {fake.base_url}
    search: true
"""
    )
    watcher = build_watcher(config, config.watchers[0])
    try:
        assert isinstance(watcher, RedditWatcher)
        seen = by_id(watcher.poll({}).observations)
        assert {"t4_3nc0m01", "t1_n0c4r02", "t3_nc0s01"} <= set(seen)
    finally:
        watcher.close()
    assert {r.path for r in fake.requests if r.method == "GET"} >= {
        "/message/inbox",
        "/user/jdoe/comments",
        "/user/jdoe_friend/submitted",
        "/r/all/search",
    }


def test_fake_server_flags_requests_that_could_change_state(fake: FakeReddit) -> None:
    import requests

    bearer = {"Authorization": f"bearer {ACCESS_TOKEN}"}
    requests.post(f"{fake.base_url}/api/read_all_messages", headers=bearer, timeout=5)
    requests.get(f"{fake.base_url}/message/inbox/", headers=bearer, timeout=5)
    requests.delete(f"{fake.base_url}/api/del_msg", headers=bearer, timeout=5)
    assert fake.violations == [
        "POST /api/read_all_messages",
        "GET /message/inbox without mark=false would mark messages read",
        "DELETE /api/del_msg",
    ]
    fake.violations.clear()  # seen and asserted: let the fixture's teardown pass
