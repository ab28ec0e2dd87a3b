"""The Mastodon watcher through the real Mastodon.py against the local fake instance."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from mastodon.errors import MastodonError
from pydantic import ValidationError

from tests.fakes.mastodon_server import DOMAIN, TOKEN, FakeMastodon, mastodon_server  # noqa: F401
from watchers.base import (
    AuthError,
    Observation,
    RateLimitedError,
    Targets,
    Wakeable,
    WatcherConfigError,
)
from watchers.mastodon import MastodonSettings, MastodonWatcher
from watchers.mastodon_entities import Viewer, addressed_to, observation

PROTECTED = f"alex@{DOMAIN}"
RESTRAINED = "johndoe@mastodon.social"
ASSOCIATE = "jdoe_friend@mastodon.social"


def populate(fake: FakeMastodon) -> dict[str, dict[str, Any]]:
    """The protected person's instance: what the restrained party, an associate, a
    look-alike, a namesake and strangers did. Returns the accounts and a few statuses."""
    alex = fake.add_account("alex", "Alex Smith", "2019-05-01")
    fake.set_me(alex)
    jdoe = fake.add_account(RESTRAINED, "John Doe", "2018-01-01")
    friend = fake.add_account(ASSOCIATE, "Pal", "2018-02-01")
    alt = fake.add_account("j0hndoe@evil.example", "jon", "2026-03-02")
    namesake = fake.add_account("jd1987@other.example", "John Doe", "2017-06-01")
    stranger = fake.add_account("gardener@garden.example", "Gardener", "2017-01-01")
    alex_post = fake.post(alex, "Lovely day at the market", "2026-04-30T09:00:00")
    found = {"alex": alex, "jdoe": jdoe, "stranger": stranger}
    fake.post(jdoe, "Alex Smith and me, years ago", "2026-01-05T09:00:00")
    found["mention"] = fake.post(
        jdoe, "you cannot hide from me", "2026-05-01T10:00:00", mentions=(alex,)
    )
    found["direct"] = fake.post(
        jdoe, "answer me", "2026-05-01T11:00:00", visibility="direct", mentions=(alex,)
    )
    found["reply"] = fake.post(
        jdoe, "I know where you are", "2026-05-01T12:00:00", reply_to=alex_post, mentions=(alex,)
    )
    found["image"] = fake.post(
        jdoe,
        "Saw Alex Smith at the farmers market",
        "2026-05-02T09:00:00",
        media=(("image", "a photo of a market stall"),),
        spoiler="market day",
    )
    jam = fake.post(stranger, "Alex Smith sells the best jam", "2026-05-02T10:00:00")
    fake.boost(jdoe, jam, "2026-05-02T11:00:00")
    fake.post(friend, "Tell Alex Smith to call him", "2026-05-03T09:00:00")
    fake.post(alt, "new account, same me", "2026-05-04T09:00:00", mentions=(alex,))
    fake.post(namesake, "we should talk", "2026-05-04T12:00:00", mentions=(alex,))
    fake.post(stranger, "John Doe wants you to call him", "2026-05-05T09:00:00", mentions=(alex,))
    fake.post(stranger, "thanks for the jam!", "2026-05-05T10:00:00", mentions=(alex,))
    return found


def make_watcher(fake: FakeMastodon, **settings: Any) -> MastodonWatcher:
    values: dict[str, Any] = {
        "type": "mastodon",
        "instance_url": fake.base_url,
        "access_token": TOKEN,
        "streaming": False,
        "timeout": 5,
    }
    values.update(settings)
    targets = Targets(
        protected_handles=frozenset({PROTECTED}),
        protected_names=frozenset({"Alex Smith"}),
        restrained_handles=frozenset({RESTRAINED}),
        associate_handles=frozenset({ASSOCIATE}),
        restrained_names=frozenset({"John Doe"}),
    )
    return MastodonWatcher(MastodonSettings.model_validate(values), targets)


@pytest.fixture
def watcher(mastodon_server: FakeMastodon) -> Iterator[MastodonWatcher]:  # noqa: F811
    created = make_watcher(mastodon_server)
    yield created
    created.close()


def by_text(observations: list[Observation], fragment: str) -> Observation:
    (found,) = [o for o in observations if fragment in o.text]
    return found


def test_first_poll_reads_notifications_and_watched_accounts(
    mastodon_server: FakeMastodon,  # noqa: F811
    watcher: MastodonWatcher,
) -> None:
    statuses = populate(mastodon_server)
    result = watcher.poll({})
    observations = result.observations
    kinds = {o.text.splitlines()[-1]: o.kind for o in observations}
    assert kinds["@alex you cannot hide from me"] == "mention"
    assert kinds["@alex answer me"] == "direct_message"
    assert kinds["@alex I know where you are"] == "reply"
    assert kinds["Alex Smith sells the best jam"] == "boost"
    assert kinds["Tell Alex Smith to call him"] == "post"
    # Each status once, though the mention came through notifications and jdoe's statuses.
    assert len({o.native_id for o in observations}) == len(observations) == 11

    mention = by_text(observations, "cannot hide")
    assert mention.author_handle == RESTRAINED
    assert mention.author_id == "https://mastodon.social/users/johndoe"
    assert mention.author_display_name == "John Doe"
    assert mention.addressed_to == (PROTECTED,)
    assert mention.url == statuses["mention"]["url"]
    assert mention.native_id == statuses["mention"]["uri"]
    assert mention.posted_at == datetime(2026, 5, 1, 10, tzinfo=UTC)
    raw = json.loads(mention.raw)
    assert raw["id"] == statuses["mention"]["id"]
    assert raw["account"]["acct"] == RESTRAINED
    assert raw["created_at"] == "2026-05-01T10:00:00.000Z"  # as received, not re-parsed

    image = by_text(observations, "farmers market")
    assert image.text == (
        "Content warning: market day\n\nSaw Alex Smith at the farmers market\n\n"
        "[image: a photo of a market stall]"
    )
    alt = by_text(observations, "same me")
    assert alt.author_handle == "j0hndoe@evil.example"
    assert alt.author_created_at == datetime(2026, 3, 2, tzinfo=UTC)
    boost = by_text(observations, "best jam")
    assert (boost.author_handle, boost.addressed_to) == (RESTRAINED, ())
    assert json.loads(boost.raw)["reblog"]["account"]["acct"] == "gardener@garden.example"
    assert result.state["me"] == {"id": statuses["alex"]["id"], "acct": PROTECTED}


def test_second_poll_adds_nothing_and_reads_only_the_newest_pages(
    mastodon_server: FakeMastodon,  # noqa: F811
    watcher: MastodonWatcher,
) -> None:
    populate(mastodon_server)
    first = watcher.poll({})
    before = len(mastodon_server.requests)
    second = watcher.poll(first.state)
    assert second.observations == []
    paths = [r.path for r in mastodon_server.requests[before:]]
    # One page of notifications and one of each watched account; no lookups again.
    assert sorted(p.rsplit("/", 1)[-1] for p in paths) == ["notifications", "statuses", "statuses"]
    assert all(r.method == "GET" and r.authorized for r in mastodon_server.requests)


def test_new_mention_after_a_poll_is_read_once(
    mastodon_server: FakeMastodon,  # noqa: F811
    watcher: MastodonWatcher,
) -> None:
    found = populate(mastodon_server)
    state = watcher.poll({}).state
    mastodon_server.post(
        found["jdoe"], "still here", "2026-05-06T09:00:00", mentions=(found["alex"],)
    )
    (new,) = watcher.poll(state).observations
    assert new.text == "@alex still here"
    assert new.kind == "mention"


def test_an_edit_is_a_new_version_with_its_history(
    mastodon_server: FakeMastodon,  # noqa: F811
    watcher: MastodonWatcher,
) -> None:
    found = populate(mastodon_server)
    state = watcher.poll({}).state
    mastodon_server.edit(found["mention"], "you cannot hide from me, ever", "2026-05-01T10:05:00")
    (edited,) = watcher.poll(state).observations
    assert edited.native_id == found["mention"]["uri"]
    assert edited.text == "@alex you cannot hide from me, ever"
    raw = json.loads(edited.raw)
    assert raw["status"]["edited_at"] == "2026-05-01T10:05:00.000Z"
    assert [h["content"] for h in raw["history"]] == [
        found["mention"]["content"].replace(", ever", ""),
        found["mention"]["content"],
    ]
    assert watcher.poll(watcher.poll(state).state).observations == []


def test_backlog_zero_starts_from_now(mastodon_server: FakeMastodon) -> None:  # noqa: F811
    found = populate(mastodon_server)
    watcher = make_watcher(mastodon_server, backlog=0)
    first = watcher.poll({})
    assert first.observations == []
    mastodon_server.post(found["jdoe"], "Alex Smith again", "2026-05-07T09:00:00")
    (new,) = watcher.poll(first.state).observations
    assert new.text == "Alex Smith again"
    watcher.close()


def test_lookup_account_gives_creation_date_and_status(
    mastodon_server: FakeMastodon,  # noqa: F811
    watcher: MastodonWatcher,
) -> None:
    populate(mastodon_server)
    mastodon_server.add_account("gone@evil.example", suspended=True)
    info = watcher.lookup_account("@j0hndoe@evil.example")
    assert info is not None
    assert (info.status, info.created_at) == ("active", datetime(2026, 3, 2, tzinfo=UTC))
    suspended = watcher.lookup_account("gone@evil.example")
    assert suspended is not None
    assert suspended.status == "suspended"
    missing = watcher.lookup_account("nobody@nowhere.example")
    assert missing is not None
    assert missing.status == "not_found"
    calls = len(mastodon_server.requests_to("/accounts/lookup"))
    watcher.lookup_account("j0hndoe@evil.example")
    assert len(mastodon_server.requests_to("/accounts/lookup")) == calls


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_token_is_an_auth_error_without_the_token(
    mastodon_server: FakeMastodon,  # noqa: F811
    watcher: MastodonWatcher,
    status: int,
) -> None:
    populate(mastodon_server)
    mastodon_server.fail_next(status, "This action is outside the authorized scopes")
    with pytest.raises(AuthError) as caught:
        watcher.poll({})
    message = str(caught.value)
    assert f"({status})" in message
    assert TOKEN not in message
    assert "\n" not in message


def test_429_waits_until_the_servers_reset_time(mastodon_server: FakeMastodon) -> None:  # noqa: F811
    populate(mastodon_server)
    # A local clock far off: the wait is measured on the server's own Date.
    watcher = MastodonWatcher(
        make_watcher(mastodon_server).settings,
        Targets(restrained_handles=frozenset({RESTRAINED})),
        clock=lambda: datetime(2030, 1, 1, tzinfo=UTC),
    )
    reset = datetime.fromtimestamp(time.time() + 120, tz=UTC)
    mastodon_server.fail_next(
        429,
        "Too many requests",
        {
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": reset.isoformat().replace("+00:00", "Z"),
        },
        path_contains="/notifications",
    )
    with pytest.raises(RateLimitedError) as caught:
        watcher.poll({})
    assert caught.value.retry_after is not None
    assert 110 <= caught.value.retry_after <= 121
    assert "429" in str(caught.value)
    watcher.close()


def test_handles_need_their_instance(mastodon_server: FakeMastodon) -> None:  # noqa: F811
    settings = make_watcher(mastodon_server).settings
    with pytest.raises(WatcherConfigError, match=r"johndoe@instance\.example"):
        MastodonWatcher(settings, Targets(restrained_handles=frozenset({"johndoe"})))


def test_the_session_refuses_every_write(
    mastodon_server: FakeMastodon,  # noqa: F811
    watcher: MastodonWatcher,
) -> None:
    found = populate(mastodon_server)
    client = watcher._client
    writes = [
        lambda: client.status_post("hello"),
        lambda: client.status_favourite(found["mention"]["id"]),
        lambda: client.status_reblog(found["mention"]["id"]),
        lambda: client.account_follow(found["jdoe"]["id"]),
        lambda: client.account_block(found["jdoe"]["id"]),
        lambda: client.notifications_dismiss(1),
        lambda: client.markers_set(["notifications"], [1]),
    ]
    for write in writes:
        # Mastodon.py wraps what its session raises in its network error.
        with pytest.raises(MastodonError, match=r"refused a (POST|PUT|DELETE).*read-only"):
            write()
    assert mastodon_server.write_attempts == []


def test_streaming_rings_for_a_new_mention_and_after_a_reconnect(
    mastodon_server: FakeMastodon,  # noqa: F811
) -> None:
    found = populate(mastodon_server)
    watcher = make_watcher(mastodon_server, streaming=True, stream_retry=1)
    assert isinstance(watcher, Wakeable)
    rings = threading.Semaphore(0)
    watcher.set_wakeup(rings.release)
    first = watcher.poll({})
    assert rings.acquire(timeout=10), "the stream never connected"  # the catch-up ring
    mastodon_server.post(
        found["jdoe"], "I see you", "2026-05-06T09:00:00", mentions=(found["alex"],)
    )
    assert rings.acquire(timeout=10), "the mention did not ring"
    listings = len(mastodon_server.requests_to("/statuses"))
    woken = watcher.poll(first.state)
    (new,) = woken.observations
    assert new.text == "@alex I see you"
    assert any("streaming: connected" in note for note in woken.status_notes)
    # A woken poll soon after a full one reads the notifications, not every account.
    assert len(mastodon_server.requests_to("/statuses")) == listings

    mastodon_server.edit(found["image"], "Saw her again", "2026-05-02T09:30:00")
    assert rings.acquire(timeout=10), "the edit did not ring"
    (edited,) = watcher.poll(woken.state).observations
    assert "Saw her again" in edited.text
    assert edited.native_id == found["image"]["uri"]

    mastodon_server.drop_streams()
    assert rings.acquire(timeout=10), "the stream did not reconnect"
    mastodon_server.post(found["jdoe"], "again", "2026-05-06T10:00:00", mentions=(found["alex"],))
    assert rings.acquire(timeout=10), "the mention after the reconnect did not ring"
    watcher.close()
    assert mastodon_server.write_attempts == []


def test_search_finds_a_look_alike_naming_the_protected_person_without_tagging(
    mastodon_server: FakeMastodon,  # noqa: F811
) -> None:
    populate(mastodon_server)
    other = mastodon_server.add_account("john_doe@elsewhere.example", "J", "2026-04-01")
    mastodon_server.post(other, "Everyone should know what Alex Smith did", "2026-05-08T09:00:00")
    plain = make_watcher(mastodon_server)
    assert not [o for o in plain.poll({}).observations if "Everyone" in o.text]
    plain.close()

    searching = make_watcher(mastodon_server, search=True)
    first = searching.poll({})
    found = by_text(first.observations, "Everyone should know")
    assert found.author_handle == "john_doe@elsewhere.example"
    (request,) = mastodon_server.requests_to("/api/v2/search")
    assert request.params["q"] == ['"Alex Smith"']
    assert request.params["type"] == ["statuses"]
    assert searching.poll(first.state).observations == []
    searching.close()


def test_a_quote_of_the_protected_persons_post_addresses_them() -> None:
    viewer = Viewer(account_id="7", domain=DOMAIN)
    quoting = {
        "id": "9",
        "visibility": "public",
        "account": {"id": "8", "acct": RESTRAINED},
        "mentions": [],
        "quote": {"state": "accepted", "quoted_status": {"id": "5", "account": {"id": "7"}}},
    }
    assert addressed_to(quoting, viewer, PROTECTED) == (PROTECTED,)
    assert observation(quoting, viewer, PROTECTED, "mastodon").kind == "mention"


@pytest.mark.parametrize("url", ["social.example", "ftp://social.example", "https://"])
def test_instance_url_must_be_a_web_address(url: str) -> None:
    with pytest.raises(ValidationError, match="instance_url must be like"):
        MastodonSettings.model_validate(
            {"type": "mastodon", "instance_url": url, "access_token": TOKEN}
        )
