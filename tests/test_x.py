"""The X watcher, driven through the real tweepy against a local fake X API v2."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.config import load_config, parse_config
from service.db import make_engine, migrate
from service.matching import Matcher
from service.pipeline import Pipeline, build_watcher
from service.planner import AlertPlanner
from service.settings import CaseSettings
from service.store import Store
from tests.fakes.x_server import (
    FAKE_TOKEN,
    FakeXServer,
    fixture_body,
    load_cassette,
    snowflake,
    snowflake_time,
    x_server_fixture,  # noqa: F401
)
from watchers.base import (
    AuthError,
    Observation,
    PollResult,
    RateLimitedError,
    Targets,
    TransientError,
    WatcherConfigError,
)
from watchers.x import (
    CAPTURE_METHOD,
    ReadOnlyViolation,
    XSettings,
    XWatcher,
    build_search_queries,
    poll_allowance,
)

NOW = datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
ORDER_EFFECTIVE = datetime(2026, 1, 15, tzinfo=UTC)
TARGETS = Targets(
    protected_handles=frozenset({"alexsmith"}),
    protected_names=frozenset({"Alex Smith"}),
    restrained_handles=frozenset({"johndoe"}),
    associate_handles=frozenset({"jdoe_friend"}),
    restrained_names=frozenset({"John Doe"}),
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def people(x_server: FakeXServer) -> dict[str, dict[str, Any]]:
    add = x_server.add_user
    return {
        "alex": add("alexsmith", "Alex Smith", datetime(2012, 4, 1, tzinfo=UTC)),
        "john": add("johndoe", "John Doe", datetime(2010, 6, 1, tzinfo=UTC)),
        "friend": add("jdoe_friend", "Jay", datetime(2015, 2, 3, tzinfo=UTC)),
        "alt": add("j0hn_doe", "J", datetime(2026, 3, 2, 9, 30, tzinfo=UTC)),
        "stranger": add("randomperson", "Random", datetime(2019, 1, 1, tzinfo=UTC)),
    }


@pytest.fixture
def posts(x_server: FakeXServer, people: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One post of each kind the watcher must tell apart, an hour before NOW."""
    t = NOW - timedelta(hours=1)
    add = x_server.add_tweet
    return {
        "reply": add(people["john"], "you can't ignore me forever", t, reply_to=people["alex"]),
        "alt": add(people["alt"], "@alexsmith saw you at the park", t + timedelta(minutes=1)),
        "named": add(people["john"], "Alex Smith is a liar", t + timedelta(minutes=2)),
        "friend": add(
            people["friend"], "@alexsmith he just wants to talk", t + timedelta(minutes=3)
        ),
        "stranger": add(people["stranger"], "@alexsmith happy birthday!", t + timedelta(minutes=4)),
        "unrelated": add(people["john"], "nice weather today", t + timedelta(minutes=5)),
    }


@pytest.fixture
def make_watcher(x_server: FakeXServer, clock: Clock) -> Iterator[Callable[..., XWatcher]]:
    made: list[XWatcher] = []

    def make(targets: Targets = TARGETS, **overrides: Any) -> XWatcher:
        settings = XSettings.model_validate(
            {
                "type": "x",
                "bearer_token": x_server.token,
                "base_url": x_server.base_url,
                "every": "15m",
                "monthly_read_budget": 100_000,
                **overrides,
            }
        )
        watcher = XWatcher(settings, targets, clock=clock)
        made.append(watcher)
        return watcher

    yield make
    for watcher in made:
        watcher.close()


def by_id(result: PollResult) -> dict[str, Observation]:
    ids = [o.native_id for o in result.observations]
    assert len(ids) == len(set(ids)), "an observation was emitted twice in one poll"
    return {o.native_id: o for o in result.observations}


def stored(state: dict[str, Any]) -> dict[str, Any]:
    """State goes through the store as JSON."""
    loaded: dict[str, Any] = json.loads(json.dumps(state))
    return loaded


# ---------------------------------------------------------------- settings and helpers


def test_settings_defaults_and_secret_fields() -> None:
    settings = XSettings.model_validate({"type": "x", "bearer_token": "AAAAs3cr3t"})
    assert settings.base_url == "https://api.x.com/2"
    assert settings.monthly_read_budget == 10000
    assert settings.timeout == timedelta(seconds=20)
    assert settings.secret_fields() == frozenset({"bearer_token"})
    assert "s3cr3t" not in repr(settings)
    with pytest.raises(ValueError, match="base_url"):
        XSettings.model_validate({"type": "x", "bearer_token": "t", "base_url": "api.x.com"})
    with pytest.raises(ValueError, match="monthly_read_budget"):
        XSettings.model_validate({"type": "x", "bearer_token": "t", "monthly_read_budget": 0})


def test_allowance_spreads_budget_over_month() -> None:
    every = timedelta(minutes=15)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    # Basic tier, 10,000 posts in a 30-day month, a poll every 15 min: ~3.5 posts a poll.
    assert poll_allowance(10000, 0, start, every) == 3
    # Unspent shares carry over: after a quiet day, a day's worth is available.
    assert poll_allowance(10000, 0, start + timedelta(days=1), every) == 336
    assert poll_allowance(10000, 300, start + timedelta(days=1), every) == 36
    # Ahead of schedule: nothing until the month catches up.
    assert poll_allowance(10000, 5000, start + timedelta(days=2), every) == 0
    # The last poll of the month may spend all that is left, never more.
    assert poll_allowance(10000, 9000, datetime(2026, 11, 30, 23, 50, tzinfo=UTC), every) == 1000
    assert poll_allowance(10000, 10000, datetime(2026, 11, 30, 23, 50, tzinfo=UTC), every) == 0


def test_search_queries_fit_the_length_limit() -> None:
    authors = [f"associate_{i:05d}" for i in range(60)]
    queries = build_search_queries(authors, ["alexsmith"], ["Alex Smith"], max_len=512)
    assert len(queries) > 1
    target = '(to:alexsmith OR @alexsmith OR "Alex Smith")'
    for query in queries:
        assert len(query) <= 512
        assert query.endswith(" " + target)
    covered = [a for q in queries for a in authors if f"from:{a} " in q or f"from:{a})" in q]
    assert sorted(covered) == sorted(authors)
    assert build_search_queries([], ["alexsmith"], []) == []
    assert build_search_queries(["johndoe"], [], []) == []


# ---------------------------------------------------------------- mentions and search


@pytest.mark.usefixtures("posts")
def test_mentions_are_observations_with_expansions(
    make_watcher: Callable[..., XWatcher], posts: dict[str, dict[str, Any]], x_server: FakeXServer
) -> None:
    result = make_watcher().poll({})
    seen = by_id(result)

    alt = seen[posts["alt"]["id"]]
    assert alt.platform == "x"
    assert alt.kind == "mention"
    assert alt.author_handle == "j0hn_doe"
    assert alt.author_display_name == "J"
    assert alt.author_id == x_server.users["j0hn_doe"]["id"]
    assert alt.author_created_at == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    assert alt.addressed_to == ("alexsmith",)
    assert alt.text == "@alexsmith saw you at the park"
    assert alt.posted_at == NOW - timedelta(minutes=59)
    assert alt.url == f"https://x.com/j0hn_doe/status/{posts['alt']['id']}"
    assert alt.capture_method == CAPTURE_METHOD
    assert alt.watcher == "x"

    raw = json.loads(alt.raw)
    assert raw["data"]["id"] == posts["alt"]["id"]
    assert raw["data"]["author_id"] == alt.author_id
    assert raw["includes"]["users"] == [
        {
            "id": alt.author_id,
            "name": "J",
            "username": "j0hn_doe",
            "created_at": "2026-03-02T09:30:00.000Z",
        }
    ]

    reply = seen[posts["reply"]["id"]]
    assert reply.kind == "reply"
    assert reply.author_handle == "johndoe"
    assert reply.addressed_to == ("alexsmith",)
    reply_raw = json.loads(reply.raw)
    assert [u["username"] for u in reply_raw["includes"]["users"]] == ["johndoe", "alexsmith"]

    mention_call = x_server.requests_to("/mentions")[0]
    assert mention_call.path == f"/2/users/{x_server.users['alexsmith']['id']}/mentions"
    assert set(mention_call.params["expansions"].split(",")) >= {"author_id"}
    assert set(mention_call.params["user.fields"].split(",")) >= {"username", "name", "created_at"}
    assert set(mention_call.params["tweet.fields"].split(",")) >= {
        "created_at",
        "author_id",
        "in_reply_to_user_id",
        "referenced_tweets",
        "entities",
        "conversation_id",
    }
    assert any(note.startswith("X read budget: ") for note in result.status_notes)


@pytest.mark.usefixtures("posts")
def test_search_finds_restrained_posts_naming_the_protected_person(
    make_watcher: Callable[..., XWatcher], posts: dict[str, dict[str, Any]], x_server: FakeXServer
) -> None:
    seen = by_id(make_watcher().poll({}))

    (search,) = x_server.requests_to("/tweets/search/recent")
    assert search.params["query"] == (
        '(from:jdoe_friend OR from:johndoe) (to:alexsmith OR @alexsmith OR "Alex Smith")'
    )
    named = seen[posts["named"]["id"]]
    assert named.kind == "post"
    assert named.author_handle == "johndoe"
    assert named.addressed_to == ()
    assert named.text == "Alex Smith is a liar"
    # Read through both endpoints, emitted once.
    assert seen[posts["reply"]["id"]].kind == "reply"
    assert posts["unrelated"]["id"] not in seen
    assert set(seen) == {p["id"] for k, p in posts.items() if k != "unrelated"}


@pytest.mark.usefixtures("posts")
def test_second_poll_adds_nothing_and_third_only_what_is_new(
    make_watcher: Callable[..., XWatcher],
    posts: dict[str, dict[str, Any]],
    people: dict[str, dict[str, Any]],
    x_server: FakeXServer,
    clock: Clock,
) -> None:
    watcher = make_watcher()
    first = watcher.poll({})
    assert len(first.observations) == 5
    clock.now += timedelta(minutes=15)
    second = watcher.poll(stored(first.state))
    assert second.observations == []
    newest_mention = max((posts[k]["id"] for k in ("reply", "alt", "friend", "stranger")), key=int)
    assert x_server.requests_to("/mentions")[-1].params["since_id"] == newest_mention
    assert len(x_server.requests_to("/users/by")) == 1, "the user id is resolved once"

    fresh = x_server.add_tweet(people["john"], "answer me", clock.now, reply_to=people["alex"])
    clock.now += timedelta(minutes=15)
    third = watcher.poll(stored(second.state))
    assert [o.native_id for o in third.observations] == [fresh["id"]]
    # A new watcher with the stored state (a restart) also adds nothing.
    clock.now += timedelta(minutes=15)
    assert make_watcher().poll(stored(third.state)).observations == []


def test_a_gap_larger_than_a_page_is_read_completely(
    make_watcher: Callable[..., XWatcher],
    people: dict[str, dict[str, Any]],
    x_server: FakeXServer,
    clock: Clock,
) -> None:
    watcher = make_watcher(backlog=0)
    state = stored(watcher.poll({}).state)
    assert x_server.requests_to("/mentions") == [], "backlog 0 reads no history"
    added = {
        x_server.add_tweet(
            people["stranger"], f"@alexsmith hello {i}", clock.now + timedelta(seconds=i)
        )["id"]
        for i in range(150)
    }
    seen: list[str] = []
    for _ in range(4):
        clock.now += timedelta(minutes=15)
        result = watcher.poll(state)
        state = stored(result.state)
        seen += [o.native_id for o in result.observations if o.kind == "mention"]
    assert sorted(seen) == sorted(added)
    assert len(seen) == len(set(seen))
    calls = x_server.requests_to("/mentions")
    assert "start_time" in calls[0].params
    assert "until_id" in calls[1].params


def test_first_poll_reads_at_most_the_backlog(
    make_watcher: Callable[..., XWatcher],
    people: dict[str, dict[str, Any]],
    x_server: FakeXServer,
) -> None:
    for i in range(12):
        x_server.add_tweet(
            people["stranger"], f"@alexsmith old {i}", NOW - timedelta(days=1, minutes=i)
        )
    result = make_watcher(backlog=5).poll({})
    assert len(result.observations) == 5
    assert x_server.requests_to("/mentions")[0].params["max_results"] == "5"


def test_recorded_mentions_from_tweepys_cassette(
    make_watcher: Callable[..., XWatcher], x_server: FakeXServer
) -> None:
    (user_call,) = load_cassette("test_client_get_user.yaml")
    (mentions_call,) = load_cassette("test_client_get_users_mentions.yaml")
    twitter = user_call.body["data"]
    x_server.add_user(
        twitter["username"], twitter["name"], datetime(2007, 2, 20, tzinfo=UTC), twitter["id"]
    )
    fan = x_server.add_user("fan", "A Fan", datetime(2020, 1, 1, tzinfo=UTC))
    recorded = mentions_call.body["data"]
    for tweet in recorded:
        # The cassette holds default fields only; add author and time as X would.
        x_server.add_tweet(fan, tweet["text"], snowflake_time(tweet["id"]), tweet_id=tweet["id"])

    watcher = make_watcher(Targets(protected_handles=frozenset({"Twitter"})), backlog=100)
    seen = by_id(watcher.poll({}))
    assert {i: o.text for i, o in seen.items()} == {t["id"]: t["text"] for t in recorded}
    assert {o.author_handle for o in seen.values()} == {"fan"}
    assert all(o.posted_at == snowflake_time(i) for i, o in seen.items())


# ---------------------------------------------------------------- the read budget


def test_a_month_of_polls_never_exceeds_the_budget(
    make_watcher: Callable[..., XWatcher],
    people: dict[str, dict[str, Any]],
    x_server: FakeXServer,
    clock: Clock,
) -> None:
    budget = 1500
    clock.now = datetime(2026, 11, 1, tzinfo=UTC)
    watcher = make_watcher(every="1h", monthly_read_budget=budget)
    state: dict[str, Any] = {}
    notes: list[str] = []
    # Far more arrives than the budget allows: 4 posts an hour, 2,880 in November.
    while clock.now < datetime(2026, 12, 1, tzinfo=UTC):
        for minute in (5, 20, 35):
            x_server.add_tweet(
                people["stranger"], "@alexsmith hi", clock.now + timedelta(minutes=minute)
            )
        x_server.add_tweet(people["john"], "Alex Smith again", clock.now + timedelta(minutes=50))
        result = watcher.poll(state)
        state = stored(result.state)
        notes = result.status_notes
        assert x_server.served_posts <= budget
        if clock.now == datetime(2026, 11, 16, tzinfo=UTC):
            # Spread over the month: half-way through, about half is spent (± a page).
            assert abs(x_server.served_posts - budget / 2) <= 100
        clock.now += timedelta(hours=1)
    assert x_server.served_posts >= budget * 0.95, "the budget should be mostly used"
    assert (
        f"X read budget: {budget - x_server.served_posts} of {budget} posts left this month"
        in notes
    )
    assert x_server.requests_to("/tweets/search/recent"), "search is not starved by mentions"
    assert state["budget"]["2026-11"] == x_server.served_posts

    # A new month has a new budget.
    served_in_november = x_server.served_posts
    result = watcher.poll(state)
    december = x_server.served_posts - served_in_november
    assert f"X read budget: {budget - december} of {budget} posts left this month" in (
        result.status_notes
    )


@pytest.mark.usefixtures("posts")
def test_no_read_when_the_budget_is_spent(
    make_watcher: Callable[..., XWatcher], x_server: FakeXServer
) -> None:
    state = {"budget": {"2026-11": 10000}}
    result = make_watcher(monthly_read_budget=10000).poll(state)
    assert result.observations == []
    assert x_server.requests_to("/mentions") == []
    assert x_server.requests_to("/search") == []
    assert "X read budget: 0 of 10000 posts left this month" in result.status_notes
    assert any("not read this poll" in note for note in result.status_notes)


# ---------------------------------------------------------------- errors


@pytest.mark.usefixtures("posts")
def test_429_is_rate_limited_until_reset(
    make_watcher: Callable[..., XWatcher], x_server: FakeXServer
) -> None:
    reset = int(NOW.timestamp()) + 120
    x_server.fail_next(
        429,
        fixture_body("too_many_requests.json"),
        {"x-rate-limit-reset": str(reset)},
        path_contains="/mentions",
    )
    with pytest.raises(RateLimitedError) as caught:
        make_watcher().poll({})
    assert caught.value.retry_after == 120
    assert "429" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.usefixtures("posts")
def test_rejected_token_is_an_auth_error(
    make_watcher: Callable[..., XWatcher], x_server: FakeXServer, status: int
) -> None:
    if status == 401:
        watcher = make_watcher(bearer_token="AAAAs3cr3tWrongToken")
    else:
        body = b'{"title":"Forbidden","detail":"Forbidden","type":"about:blank","status":403}'
        x_server.fail_next(403, body)
        watcher = make_watcher()
    with pytest.raises(AuthError) as caught:
        watcher.poll({})
    message = str(caught.value)
    assert message.startswith(f"x: bearer token rejected ({status}): ")
    assert message.endswith("fix X_BEARER_TOKEN")
    assert "s3cr3t" not in message


@pytest.mark.usefixtures("posts")
def test_server_errors_and_garbage_are_transient(
    make_watcher: Callable[..., XWatcher], x_server: FakeXServer
) -> None:
    watcher = make_watcher()
    x_server.fail_next(503, fixture_body("server_error.json"), times=3)
    with pytest.raises(TransientError, match=r"server error .*\(503\)"):
        watcher.poll({})
    x_server.faults.clear()
    x_server.fail_next(200, b"<html>upstream hiccup</html>", {"content-type": "text/html"}, times=3)
    with pytest.raises(TransientError, match="not JSON"):
        watcher.poll({})
    x_server.faults.clear()
    x_server.fail_next(200, b'{"data": "what"}', times=3, path_contains="/tweets")
    x_server.fail_next(200, b'{"data": "what"}', times=3, path_contains="/mentions")
    with pytest.raises(TransientError, match="shape"):
        watcher.poll({})


@pytest.mark.usefixtures("posts")
def test_timeout_and_refused_connection_are_transient(
    make_watcher: Callable[..., XWatcher], x_server: FakeXServer
) -> None:
    x_server.fail_next(200, b"{}", delay=1.0, times=2)
    with pytest.raises(TransientError, match="timed out"):
        make_watcher(timeout="0.2s").poll({})
    with pytest.raises(TransientError, match="cannot reach"):
        make_watcher(base_url="http://127.0.0.1:9/2").poll({})


@pytest.mark.usefixtures("posts")
def test_one_failing_endpoint_does_not_hold_back_the_others(
    make_watcher: Callable[..., XWatcher], x_server: FakeXServer, posts: dict[str, dict[str, Any]]
) -> None:
    x_server.fail_next(500, fixture_body("server_error.json"), path_contains="/search")
    result = make_watcher().poll({})
    assert posts["alt"]["id"] in by_id(result)
    assert posts["named"]["id"] not in by_id(result)
    assert any("server error" in note for note in result.status_notes)
    assert not any(
        key.startswith("search:") and value for key, value in result.state["cursors"].items()
    )


@pytest.mark.usefixtures("posts")
def test_token_never_in_logs_or_messages(
    make_watcher: Callable[..., XWatcher], x_server: FakeXServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert "s3cr3t" in FAKE_TOKEN
    result = make_watcher().poll({})
    x_server.fail_next(500, fixture_body("server_error.json"), path_contains="/search")
    make_watcher().poll({})
    with pytest.raises(AuthError) as caught:
        make_watcher(bearer_token="AAAAs3cr3tOther").poll({})
    # tweepy logs its request headers at DEBUG: they must not carry the token.
    assert any("Making API request" in r.getMessage() for r in caplog.records)
    assert "s3cr3t" not in caplog.text
    assert "s3cr3t" not in str(caught.value)
    assert not any("s3cr3t" in note for note in result.status_notes)
    # ...while the server did receive it.
    assert all(r.authorized for r in x_server.requests[:3])


def test_never_a_write_call(make_watcher: Callable[..., XWatcher], x_server: FakeXServer) -> None:
    watcher = make_watcher()
    with pytest.raises(ReadOnlyViolation):
        watcher._client.create_tweet(text="never", user_auth=False)
    assert x_server.write_attempts == []
    assert x_server.requests == []


# ---------------------------------------------------------------- accounts


def test_lookup_account(
    make_watcher: Callable[..., XWatcher],
    people: dict[str, dict[str, Any]],
    x_server: FakeXServer,
) -> None:
    x_server.add_user("gone_doe", "Gone", datetime(2026, 5, 1, tzinfo=UTC))
    x_server.suspended.add("gone_doe")
    watcher = make_watcher()

    info = watcher.lookup_account("j0hn_doe")
    assert info is not None
    assert info.status == "active"
    assert info.account_id == people["alt"]["id"]
    assert info.created_at == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    assert watcher.lookup_account("@J0HN_DOE") == info
    assert len(x_server.requests_to("/users/by/username/")) == 1, "cached"

    suspended = watcher.lookup_account("gone_doe")
    assert suspended is not None
    assert suspended.status == "suspended"
    missing = watcher.lookup_account("nobody_here")
    assert missing is not None
    assert missing.status == "not_found"


@pytest.mark.usefixtures("posts")
def test_authors_seen_in_polls_need_no_lookup(
    make_watcher: Callable[..., XWatcher], x_server: FakeXServer
) -> None:
    watcher = make_watcher()
    watcher.poll({})
    info = watcher.lookup_account("j0hn_doe")
    assert info is not None
    assert info.created_at == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    assert x_server.requests_to("/users/by/username/") == []


def test_lookup_account_failure_raises_and_is_not_cached(
    make_watcher: Callable[..., XWatcher], people: dict[str, dict[str, Any]], x_server: FakeXServer
) -> None:
    watcher = make_watcher()
    x_server.fail_next(503, fixture_body("server_error.json"))
    with pytest.raises(TransientError, match="account lookup"):
        watcher.lookup_account("j0hn_doe")
    info = watcher.lookup_account("j0hn_doe")
    assert info is not None
    assert info.account_id == people["alt"]["id"]


# ---------------------------------------------------------------- through the matcher


@pytest.mark.usefixtures("posts")
def test_hits_through_the_matcher(
    make_watcher: Callable[..., XWatcher], posts: dict[str, dict[str, Any]]
) -> None:
    case = CaseSettings.model_validate(
        {
            "id": "smith-v-doe",
            "order": {"effective": "2026-01-15", "terms": ["no_contact", "no_mention"]},
            "protected": {"names": ["Alex Smith"], "handles": {"x": ["alexsmith"]}},
            "restrained": {
                "names": ["John Doe"],
                "handles": {"x": ["johndoe"]},
                "associates": {"x": ["jdoe_friend"]},
            },
        }
    )
    watcher = make_watcher()
    matcher = Matcher([case], clock=lambda: NOW)
    hits = {
        o.native_id: matcher.match(o, ["smith-v-doe"], account_lookup=watcher.lookup_account)
        for o in watcher.poll({}).observations
    }
    kinds = {
        name: [h.kind for h in hits[post["id"]]]
        for name, post in posts.items()
        if post["id"] in hits
    }
    assert kinds == {
        "reply": ["contact"],
        "alt": ["suspected_alt"],
        "named": ["mention"],
        "friend": ["third_party"],
        "stranger": [],
    }
    (alt,) = hits[posts["alt"]["id"]]
    assert alt.suspected
    assert alt.severity == "high"
    assert "`j0hn_doe` resembles restrained handle `johndoe`" in alt.reason
    assert "account created 2026-03-02, after the order" in alt.reason
    assert all(h.in_order_period for found in hits.values() for h in found)


@pytest.mark.usefixtures("posts")
def test_built_from_config_like_the_service_does(
    x_server: FakeXServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X_BEARER_TOKEN", x_server.token)
    settings = parse_config(
        f"""
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15}}
    protected: {{names: ["Alex Smith"], handles: {{x: [alexsmith]}}}}
    restrained: {{handles: {{x: [johndoe]}}, associates: {{x: [jdoe_friend]}}}}
watchers:
  - {{type: x, every: 15m, bearer_token: "${{X_BEARER_TOKEN}}", base_url: "{x_server.base_url}"}}
"""
    )
    watcher = build_watcher(settings, settings.watchers[0])
    try:
        assert isinstance(watcher, XWatcher)
        assert len(watcher.poll({}).observations) == 5
    finally:
        watcher.close()
    (search,) = x_server.requests_to("/search/recent")
    assert search.params["query"] == (
        '(from:jdoe_friend OR from:johndoe) (to:alexsmith OR @alexsmith OR "Alex Smith")'
    )


# ---------------------------------------------------------------- the whole service


def test_service_puts_x_hits_in_the_timeline_once(
    x_server: FakeXServer,
    people: dict[str, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Config → pipeline → matcher → store, in process, as ``nocontact run`` does."""
    t = NOW - timedelta(hours=4)
    add = x_server.add_tweet
    # An hour apart, so that each author's hits are separate violations.
    add(people["john"], "you can't ignore me forever", t, reply_to=people["alex"])
    add(people["alt"], "@alexsmith saw you at the park", t + timedelta(hours=1))
    add(people["john"], "Alex Smith is a liar", t + timedelta(hours=2))
    add(people["friend"], "@alexsmith he just wants to talk", t + timedelta(hours=3))
    add(people["stranger"], "@alexsmith happy birthday!", t + timedelta(hours=3))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""\
database: sqlite:///{tmp_path / "nocontact.db"}
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15, terms: [no_contact, no_mention]}}
    protected: {{names: ["Alex Smith"], handles: {{x: [alexsmith]}}}}
    restrained:
      names: ["John Doe"]
      handles: {{x: [johndoe]}}
      associates: {{x: [jdoe_friend]}}
watchers:
  - {{type: x, every: 15m, bearer_token: "${{X_BEARER_TOKEN}}", base_url: "{x_server.base_url}"}}
""",
        encoding="utf-8",
    )

    monkeypatch.setenv("X_BEARER_TOKEN", x_server.token)
    settings = load_config(config).settings
    engine = make_engine(settings.database, tmp_path)
    try:
        migrate(engine)
        store = Store(engine, cases=settings.cases, planner=AlertPlanner.from_settings(settings))
        store.sync_cases(settings.cases, NOW)
        pipeline = Pipeline(settings, store, clock=lambda: NOW)
        first = pipeline.poll("x")
        assert first.ok, first.error
        rows = store.timeline()
        found = {(row["kind"], row["evidence"][0]["author"]): row for row in rows}
        assert set(found) == {
            ("contact", "johndoe"),
            ("suspected_alt", "j0hn_doe"),
            ("mention", "johndoe"),
            ("third_party", "jdoe_friend"),
        }
        alt = found[("suspected_alt", "j0hn_doe")]
        assert alt["suspected"] is True
        assert "account created 2026-03-02, after the order" in alt["reason"]
        assert alt["evidence"][0]["url"].startswith("https://x.com/j0hn_doe/status/")
        view = store.watcher_state("x")
        assert view is not None
        left = 10000 - x_server.served_posts
        assert f"X read budget: {left} of 10000 posts left this month" in view.status_notes

        second = pipeline.poll("x")
        assert (second.ok, second.observations, second.new_evidence) == (True, 0, 0)
        assert store.timeline() == rows
        assert "since_id" in x_server.requests_to("/mentions")[-1].params
        pipeline.close()
    finally:
        engine.dispose()


@pytest.mark.usefixtures("posts")
def test_search_cursor_older_than_seven_days_restarts_at_the_window(
    make_watcher: Callable[..., XWatcher], x_server: FakeXServer
) -> None:
    watcher = make_watcher()
    state = stored(watcher.poll({}).state)
    (search_key,) = [key for key in state["cursors"] if key.startswith("search:")]
    # As if the service had been stopped for ten days after that poll.
    state["cursors"][search_key] = {"since_id": snowflake(NOW - timedelta(days=10))}
    watcher.poll(state)
    last = x_server.requests_to("/search/recent")[-1]
    assert "since_id" not in last.params
    assert last.params["start_time"] == "2026-11-14T05:05:00Z"


def test_a_handle_x_cannot_have_is_a_config_error(x_server: FakeXServer) -> None:
    settings = XSettings.model_validate(
        {"type": "x", "bearer_token": x_server.token, "base_url": x_server.base_url}
    )
    with pytest.raises(WatcherConfigError, match=r"'alex\.smith' is not an X handle"):
        XWatcher(settings, Targets(protected_handles=frozenset({"alex.smith"})))
    watcher = XWatcher(settings, Targets(protected_handles=frozenset({"@alexsmith"})))
    watcher.close()
    assert x_server.requests == []


@pytest.mark.usefixtures("posts")
def test_search_still_runs_when_user_lookup_fails(
    make_watcher: Callable[..., XWatcher], x_server: FakeXServer, posts: dict[str, dict[str, Any]]
) -> None:
    x_server.fail_next(503, fixture_body("server_error.json"), path_contains="/users/by")
    result = make_watcher().poll({})
    assert {o.native_id for o in result.observations} == {
        posts[k]["id"] for k in ("reply", "named", "friend")
    }
    assert any("user lookup" in note for note in result.status_notes)
    assert "user_ids" in result.state
    assert result.state["user_ids"] == {}


@pytest.mark.usefixtures("posts")
def test_observations_come_oldest_first(make_watcher: Callable[..., XWatcher]) -> None:
    times = [o.posted_at for o in make_watcher().poll({}).observations]
    assert times == sorted(t for t in times if t is not None)
    assert len(times) == 5
