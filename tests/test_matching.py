"""The matching rules of DESIGN.md, one behaviour per test."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.hits import Hit
from service.matching import (
    Matcher,
    UnknownCaseError,
    identity_handle,
    normalize_handle,
    normalize_text,
)
from service.settings import CaseSettings
from watchers.base import AccountInfo, Observation, TransientError

REPO = Path(__file__).resolve().parents[1]

IN_PERIOD = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def case_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "smith-v-doe",
        "order": {
            "effective": "2026-01-15",
            "expires": "2027-01-15",
            "reference": "PO-2026-1234",
            "terms": ["no_contact", "no_mention"],
        },
        "protected": {
            "names": ["Alex Smith"],
            "aliases": ["Lexi"],
            "handles": {
                "reddit": ["alex_smith"],
                "x": ["alexsmith"],
                "email": ["alex@example.org"],
            },
        },
        "restrained": {
            "names": ["John Doe"],
            "handles": {"reddit": ["jdoe"], "x": ["johndoe"], "email": ["john@example.com"]},
            "associates": {"reddit": ["jdoe_friend"]},
        },
        "alert": ["phone"],
    }
    base.update(overrides)
    return base


def make_case(**overrides: Any) -> CaseSettings:
    return CaseSettings.model_validate(case_dict(**overrides))


def obs(**fields: Any) -> Observation:
    values: dict[str, Any] = {
        "platform": "reddit",
        "native_id": "t1_abc",
        "kind": "post",
        "raw": b"{}",
        "watcher": "reddit",
        "posted_at": IN_PERIOD,
    }
    values.update(fields)
    return Observation(**values)


def only_hit(hits: list[Hit]) -> Hit:
    assert len(hits) == 1, hits
    return hits[0]


@pytest.fixture
def matcher() -> Matcher:
    return Matcher([make_case()])


# --- normalisation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "handle",
    [
        "johndoe",
        "JohnDoe",
        "@johndoe",
        "u/johndoe",
        "/u/JohnDoe",
        "j0hn.d0e_",
        "jоhndоe",
        "john-doe",
        "john doe",
        "ＪＯＨＮＤＯＥ",
        "jöhn_döe",
        "j\u200bohndoe",
    ],
)
def test_normalize_handle_folds_lookalikes_to_one_form(handle: str) -> None:
    assert normalize_handle(handle) == "johndoe"


@pytest.mark.parametrize(
    ("handle", "expected"),
    [("4l3x_5m1th", "aiexsmith"), ("$am", "sam"), ("rn1ke", "mike"), ("@b@t", "bat")],
)
def test_normalize_handle_leetspeak_mapping_is_deterministic(handle: str, expected: str) -> None:
    assert normalize_handle(handle) == expected


def test_normalize_handle_keeps_different_handles_apart() -> None:
    assert normalize_handle("johndoe") != normalize_handle("janedoe")
    assert normalize_handle("@") == ""


def test_identity_handle_only_drops_case_and_prefixes() -> None:
    assert identity_handle(" @JDoe ") == "jdoe"
    assert identity_handle("/u/JDoe") == "jdoe"
    assert identity_handle("j0hn.d0e_") == "j0hn.d0e_"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alex   Smith\n\tSaid", "aiex smith said"),
        ("Аlех Ѕmіth", "aiex smith"),  # Cyrillic А, е, х, Ѕ, і
        ("Alëx Sm\u200bith", "aiex smith"),  # accent, zero-width space
        ("AIex Srnith", "aiex smith"),  # capital I for l, "rn" for m
        ("ＡＬＥＸ", "aiex"),
        ("Straße", "strasse"),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected
    assert normalize_text(expected) == expected


def test_normalize_text_does_not_fold_leetspeak() -> None:
    assert normalize_text("4lex 5mith") == "4iex 5mith"


# --- author identity -------------------------------------------------------------------


def test_exact_restrained_handle_replying_is_contact(matcher: Matcher) -> None:
    hit = only_hit(
        matcher.match(obs(kind="reply", author_handle="jdoe", addressed_to=("alex_smith",)))
    )
    assert hit.case_id == "smith-v-doe"
    assert hit.kind == "contact"
    assert hit.severity == "high"
    assert hit.suspected is False
    assert hit.score is None
    assert hit.author_class == "restrained"
    assert hit.target == "contact"
    assert hit.in_order_period is True
    assert hit.author_key == "jdoe"
    assert hit.reason == "reply from restrained account `jdoe` to protected account `alex_smith`"


@pytest.mark.parametrize("author", ["@jdoe", "u/jdoe", "/u/JDoe", "JDOE"])
@pytest.mark.parametrize("addressee", ["alex_smith", "@Alex_Smith", "u/alex_smith"])
def test_prefixes_and_case_do_not_hide_identity(
    matcher: Matcher, author: str, addressee: str
) -> None:
    hit = only_hit(
        matcher.match(obs(kind="reply", author_handle=author, addressed_to=(addressee,)))
    )
    assert (hit.kind, hit.author_class, hit.author_key) == ("contact", "restrained", "jdoe")


def test_cyrillic_homoglyph_handle_is_suspected_alt(matcher: Matcher) -> None:
    hit = only_hit(
        matcher.match(obs(kind="reply", author_handle="jdое", addressed_to=("alex_smith",)))
    )
    assert hit.kind == "suspected_alt"
    assert hit.severity == "high"
    assert hit.suspected is True
    assert hit.author_class == "suspected_alt"
    assert hit.score == 100.0
    assert hit.author_key == "jdoe"
    assert hit.reason == (
        "author `jdое` resembles restrained handle `jdoe` (score 100); "
        "reply to protected account `alex_smith`"
    )


@pytest.mark.parametrize(
    "author", ["j0hnd03", "j0hn.d0e_", "john_doe", "john-doe.", "J.O.H.N.D.O.E"]
)
def test_leetspeak_and_separators_are_suspected_alts(matcher: Matcher, author: str) -> None:
    hit = only_hit(
        matcher.match(
            obs(platform="x", kind="reply", author_handle=author, addressed_to=("alexsmith",))
        )
    )
    assert hit.kind == "suspected_alt"
    assert hit.score == 100.0
    assert "resembles restrained handle `johndoe` (score 100)" in hit.reason


def test_fuzzy_threshold_is_per_case_and_inclusive() -> None:
    # fuzz.ratio("jondoe", "johndoe") = 92.3
    item = obs(platform="x", kind="reply", author_handle="jondoe", addressed_to=("alexsmith",))
    at_92 = Matcher([make_case(fuzzy_threshold=92)])
    hit = only_hit(at_92.match(item))
    assert hit.kind == "suspected_alt"
    assert hit.score == pytest.approx(92.3, abs=0.05)
    assert hit.reason.startswith("author `jondoe` resembles restrained handle `johndoe` (score 92)")
    assert Matcher([make_case(fuzzy_threshold=93)]).match(item) == []


def test_dissimilar_handle_is_unknown(matcher: Matcher) -> None:
    item = obs(kind="reply", author_handle="gardening_fan", addressed_to=("alex_smith",))
    assert matcher.match(item) == []


def test_restrained_name_inside_handle_makes_a_suspect() -> None:
    case = make_case(restrained={"names": ["Marcus Webb"], "handles": {"reddit": ["mw_throwaway"]}})
    hit = only_hit(
        Matcher([case]).match(obs(author_handle="the_real_MarcusWebb1987", text="Alex Smith"))
    )
    assert hit.kind == "suspected_alt"
    assert hit.score == 90.0
    assert hit.reason == (
        'author `the_real_MarcusWebb1987` contains restrained name "Marcus Webb" (score 90); '
        'post names the protected person ("Alex Smith")'
    )


def test_restrained_name_in_display_name_makes_a_suspect() -> None:
    case = make_case(restrained={"names": ["Marcus Webb"], "handles": {"reddit": ["mw_x"]}})
    item = obs(author_handle="throwaway_4412", author_display_name="Marcus Webb fan", text="Lexi")
    hit = only_hit(Matcher([case]).match(item))
    assert hit.kind == "suspected_alt"
    assert 'has display name "Marcus Webb fan" which contains restrained name' in hit.reason


def test_short_names_are_not_used_for_containment() -> None:
    case = make_case(restrained={"names": ["Al"], "handles": {"reddit": ["abc"]}})
    item = obs(author_handle="alfred_hitch", text="Alex Smith")
    assert Matcher([case]).match(item) == []


def test_restrained_handle_from_another_platform_makes_a_suspect(matcher: Matcher) -> None:
    # "johndoe" is the restrained party's X handle; on Reddit it is another account.
    hit = only_hit(matcher.match(obs(author_handle="johndoe", text="hello u/alex_smith")))
    assert hit.kind == "suspected_alt"
    assert hit.reason.startswith(
        "author `johndoe` resembles restrained handle `johndoe` on x (score 100)"
    )


def test_protected_persons_own_handles_are_never_suspects() -> None:
    # The protected handle is close to the restrained one (score 89 ≥ 85).
    case = make_case(
        restrained={"names": ["Sam Smyth"], "handles": {"reddit": ["alex_smyth"]}},
    )
    matcher = Matcher([case])
    own = obs(author_handle="alex_smith", text="Alex Smith here, again")
    assert matcher.match(own) == []
    own_x_handle_on_reddit = obs(author_handle="AlexSmith", text="I am Alex Smith")
    assert matcher.match(own_x_handle_on_reddit) == []
    lookalike = obs(author_handle="alex_smyth_", text="Alex Smith")
    assert only_hit(matcher.match(lookalike)).kind == "suspected_alt"


def test_associate_naming_protected_is_third_party(matcher: Matcher) -> None:
    hit = only_hit(matcher.match(obs(author_handle="jdoe_friend", text="Saw Alex Smith today")))
    assert (hit.kind, hit.severity, hit.suspected) == ("third_party", "medium", False)
    assert hit.author_class == "associate"
    assert hit.target == "mention"
    assert hit.reason == 'post by associate `jdoe_friend` names the protected person ("Alex Smith")'


def test_associate_contacting_protected_is_third_party(matcher: Matcher) -> None:
    item = obs(kind="reply", author_handle="jdoe_friend", addressed_to=("alex_smith",))
    hit = only_hit(matcher.match(item))
    assert (hit.kind, hit.target) == ("third_party", "contact")


def test_associate_listed_for_another_platform_is_that_associate(matcher: Matcher) -> None:
    item = obs(platform="x", kind="reply", author_handle="jdoe_friend", addressed_to=("alexsmith",))
    hit = only_hit(matcher.match(item))
    # Listed for Reddit only, but the same name on X is the associate, not a look-alike
    # of the restrained party (which "jdoe" inside the handle would otherwise suggest).
    assert (hit.kind, hit.severity, hit.suspected) == ("third_party", "medium", False)
    assert hit.reason == (
        "reply from associate `jdoe_friend` (listed for reddit) to protected account `alexsmith`"
    )


def test_a_look_alike_of_an_associate_elsewhere_is_still_judged_on_resemblance(
    matcher: Matcher,
) -> None:
    item = obs(platform="x", kind="reply", author_handle="jdoe_fr1end", addressed_to=("alexsmith",))
    assert only_hit(matcher.match(item)).kind == "suspected_alt"


def test_unknown_author_is_no_hit(matcher: Matcher) -> None:
    item = obs(kind="reply", author_handle="someone_else", addressed_to=("alex_smith",))
    assert matcher.match(item) == []
    assert matcher.match(obs(author_handle=None, text="Alex Smith")) == []


# --- targets ---------------------------------------------------------------------------


def test_direct_message_is_contact(matcher: Matcher) -> None:
    hit = only_hit(matcher.match(obs(kind="direct_message", author_handle="jdoe", text="hi")))
    assert (hit.kind, hit.target, hit.severity) == ("contact", "contact", "high")
    assert hit.reason == "direct message from restrained account `jdoe` to the protected person"


def test_addressed_to_someone_else_is_not_contact(matcher: Matcher) -> None:
    item = obs(kind="reply", author_handle="jdoe", addressed_to=("a1ex_smith",), text="ok")
    assert matcher.match(item) == []


def test_at_mention_in_text_is_contact(matcher: Matcher) -> None:
    hit = only_hit(matcher.match(obs(author_handle="jdoe", text="hey @Alex_Smith, look")))
    assert (hit.kind, hit.target) == ("contact", "contact")
    assert (
        hit.reason == "post from restrained account `jdoe` tagging protected account `@alex_smith`"
    )


def test_reddit_user_tag_in_text_is_contact(matcher: Matcher) -> None:
    hit = only_hit(matcher.match(obs(author_handle="jdoe", text="cc /u/alex_smith")))
    assert hit.kind == "contact"
    assert "`u/alex_smith`" in hit.reason


def test_tag_of_a_handle_on_another_platform_is_a_mention(matcher: Matcher) -> None:
    # @alexsmith is the X handle: on Reddit it notifies nobody, but it names them.
    terms_contact_only = Matcher([make_case(order={"effective": "2026-01-15"})])
    item = obs(author_handle="jdoe", text="go bother @alexsmith")
    assert terms_contact_only.match(item) == []
    assert only_hit(matcher.match(item)).kind == "mention"


def test_tag_must_be_a_whole_handle(matcher: Matcher) -> None:
    assert matcher.match(obs(author_handle="jdoe", text="@alex_smith_fan hi")) == []
    # Not a tag (no boundary before "@"), but the bare handle still names them.
    assert only_hit(matcher.match(obs(author_handle="jdoe", text="mail@alex_smith"))).kind == (
        "mention"
    )


@pytest.mark.parametrize(
    "text",
    [
        "Alex Smith",
        "ALEX smith!",
        "about alex\n   smith's day",
        "#AlexSmith",
        "(Alex Smith)",
        "lexi again",
        "ask u/alex_smith",
    ],
)
def test_text_naming_protected_is_mention(matcher: Matcher, text: str) -> None:
    hit = only_hit(matcher.match(obs(author_handle="jdoe", text=text)))
    assert hit.kind in {"mention", "contact"}
    assert hit.target in {"mention", "contact"}


@pytest.mark.parametrize(
    "text",
    ["Alex Smithson", "xAlex Smith", "Alex_Smithers", "AlexSmiths", "Alex", "Smith", "Lexington"],
)
def test_names_match_whole_words_only(matcher: Matcher, text: str) -> None:
    assert matcher.match(obs(author_handle="jdoe", text=text)) == []


def test_mention_by_restrained_is_medium(matcher: Matcher) -> None:
    hit = only_hit(matcher.match(obs(author_handle="jdoe", text="Alex Smith is lying")))
    assert (hit.kind, hit.severity, hit.target) == ("mention", "medium", "mention")
    assert (
        hit.reason == 'post by restrained account `jdoe` names the protected person ("Alex Smith")'
    )


@pytest.mark.parametrize(
    "text",
    ["Аlех Ѕmіth lies", "Alëx Smith", "Alex Sm\u200bith", "ＡＬＥＸ ＳＭＩＴＨ", "AIex Srnith"],
)
def test_confusables_in_text_still_name_them(matcher: Matcher, text: str) -> None:
    hit = only_hit(matcher.match(obs(author_handle="jdoe", text=text)))
    assert hit.kind == "mention"
    assert '("Alex Smith")' in hit.reason


def test_mention_without_no_mention_term_is_no_hit() -> None:
    matcher = Matcher([make_case(order={"effective": "2026-01-15", "terms": ["no_contact"]})])
    assert matcher.match(obs(author_handle="jdoe", text="Alex Smith is lying")) == []
    # Contact is still a violation under no_contact.
    item = obs(kind="reply", author_handle="jdoe", addressed_to=("alex_smith",))
    assert only_hit(matcher.match(item)).kind == "contact"


def test_author_without_target_is_no_hit(matcher: Matcher) -> None:
    assert matcher.match(obs(author_handle="jdoe", text="nice weather")) == []


def test_one_hit_per_case_and_contact_wins(matcher: Matcher) -> None:
    item = obs(
        kind="direct_message",
        author_handle="jdoe",
        addressed_to=("alex_smith",),
        text="Alex Smith, Lexi, @alex_smith",
    )
    hit = only_hit(matcher.match(item))
    assert hit.kind == "contact"
    assert hit.reason == (
        "direct message from restrained account `jdoe` to protected account `alex_smith`"
    )


# --- order period ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("posted_at", "in_period", "suffix"),
    [
        (
            datetime(2026, 1, 14, 23, 59, 59, tzinfo=UTC),
            False,
            "; before the order took effect (2026-01-15)",
        ),
        (datetime(2026, 1, 15, 0, 0, tzinfo=UTC), True, "`alex_smith`"),
        (datetime(2027, 1, 14, 23, 59, 59, tzinfo=UTC), True, "`alex_smith`"),
        (datetime(2027, 1, 15, 0, 0, tzinfo=UTC), False, "; after the order expired (2027-01-15)"),
    ],
)
def test_order_period_bounds(
    matcher: Matcher, posted_at: datetime, in_period: bool, suffix: str
) -> None:
    item = obs(
        kind="reply", author_handle="jdoe", addressed_to=("alex_smith",), posted_at=posted_at
    )
    hit = only_hit(matcher.match(item))
    assert hit.in_order_period is in_period
    assert hit.kind == "contact"
    assert hit.reason.endswith(suffix)


def test_order_period_uses_the_case_time_zone() -> None:
    matcher = Matcher([make_case(timezone="America/New_York")])
    # 03:00 UTC on the 15th is still the 14th in New York.
    early = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)
    item = obs(kind="reply", author_handle="jdoe", addressed_to=("alex_smith",), posted_at=early)
    assert only_hit(matcher.match(item)).in_order_period is False


def test_missing_posted_at_uses_the_clock() -> None:
    item = obs(kind="reply", author_handle="jdoe", addressed_to=("alex_smith",), posted_at=None)
    before = Matcher([make_case()], clock=lambda: datetime(2026, 1, 14, 23, 0, tzinfo=UTC))
    during = Matcher([make_case()], clock=lambda: datetime(2026, 1, 15, 1, 0, tzinfo=UTC))
    assert only_hit(before.match(item)).in_order_period is False
    assert only_hit(during.match(item)).in_order_period is True


# --- account age and status ------------------------------------------------------------


def lowered_threshold() -> Matcher:
    # fuzz.ratio("jdeo", "jdoe") = 75
    return Matcher([make_case(fuzzy_threshold=70)])


def suspect_reply(**fields: Any) -> Observation:
    return obs(kind="reply", author_handle="jdeo", addressed_to=("alex_smith",), **fields)


def test_account_created_after_order_raises_score() -> None:
    created = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    hit = only_hit(lowered_threshold().match(suspect_reply(author_created_at=created)))
    assert hit.score == 85.0
    assert hit.reason == (
        "author `jdeo` resembles restrained handle `jdoe` (score 75); "
        "account created 2026-03-02, after the order; reply to protected account `alex_smith`"
    )


def test_account_created_before_order_keeps_score() -> None:
    created = datetime(2025, 12, 1, tzinfo=UTC)
    hit = only_hit(lowered_threshold().match(suspect_reply(author_created_at=created)))
    assert hit.score == 75.0
    assert "account created 2025-12-01, before the order" in hit.reason


def test_new_account_bonus_is_capped_at_100(matcher: Matcher) -> None:
    item = obs(
        kind="reply",
        author_handle="jdое",
        addressed_to=("alex_smith",),
        author_created_at=datetime(2026, 1, 15, tzinfo=UTC),
    )
    hit = only_hit(matcher.match(item))
    assert hit.score == 100.0
    assert "account created 2026-01-15, after the order" in hit.reason


class RecordingLookup:
    def __init__(self, answer: Callable[[str], AccountInfo | None]) -> None:
        self.calls: list[str] = []
        self._answer = answer

    def __call__(self, handle: str) -> AccountInfo | None:
        self.calls.append(handle)
        return self._answer(handle)


def test_account_lookup_gives_creation_date_and_is_called_once() -> None:
    second = make_case(id="other-case")
    matcher = Matcher(
        [make_case(fuzzy_threshold=70), second.model_copy(update={"fuzzy_threshold": 70})]
    )
    lookup = RecordingLookup(
        lambda h: AccountInfo(handle=h, created_at=datetime(2026, 3, 2, tzinfo=UTC))
    )
    hits = matcher.match(suspect_reply(), account_lookup=lookup)
    assert [hit.case_id for hit in hits] == ["smith-v-doe", "other-case"]
    assert lookup.calls == ["jdeo"]
    assert all(hit.score == 85.0 for hit in hits)
    assert all("account created 2026-03-02, after the order" in hit.reason for hit in hits)


def test_account_lookup_is_not_called_when_not_needed(matcher: Matcher) -> None:
    lookup = RecordingLookup(lambda h: None)
    matcher.match(
        obs(kind="reply", author_handle="jdoe", addressed_to=("alex_smith",)), account_lookup=lookup
    )
    matcher.match(
        obs(kind="reply", author_handle="stranger", addressed_to=("alex_smith",)),
        account_lookup=lookup,
    )
    matcher.match(obs(author_handle="jdое", text="no target here"), account_lookup=lookup)
    created = datetime(2026, 3, 2, tzinfo=UTC)
    hit = only_hit(
        lowered_threshold().match(suspect_reply(author_created_at=created), account_lookup=lookup)
    )
    assert hit.score == 85.0
    assert lookup.calls == []


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("deleted", "account has been deleted"),
        ("suspended", "account is suspended"),
        ("not_found", "account was not found"),
    ],
)
def test_gone_accounts_still_hit_and_say_so(status: Any, words: str) -> None:
    lookup = RecordingLookup(lambda h: AccountInfo(handle=h, status=status))
    hit = only_hit(lowered_threshold().match(suspect_reply(), account_lookup=lookup))
    assert hit.kind == "suspected_alt"
    assert hit.score == 75.0
    assert words in hit.reason


def test_failed_lookup_keeps_the_hit(caplog: pytest.LogCaptureFixture) -> None:
    def failing(handle: str) -> AccountInfo | None:
        raise TransientError("reddit answered 503")

    with caplog.at_level(logging.WARNING, logger="service.matching"):
        hit = only_hit(lowered_threshold().match(suspect_reply(), account_lookup=failing))
    assert hit.kind == "suspected_alt"
    assert "account age unknown" in hit.reason
    assert "reddit answered 503" in caplog.text


# --- email, posted_by, several cases ---------------------------------------------------


def test_email_from_restrained_address_is_contact(matcher: Matcher) -> None:
    item = obs(
        platform="email",
        kind="email",
        author_handle="John Doe <John@Example.COM>",
        addressed_to=("Alex <ALEX@example.org>",),
        text="we need to talk",
    )
    hit = only_hit(matcher.match(item))
    assert hit.kind == "contact"
    assert hit.author_key == "john@example.com"
    assert hit.reason == (
        "email from restrained address `john@example.com` to protected address `alex@example.org`"
    )


def test_email_from_lookalike_address_is_suspected(matcher: Matcher) -> None:
    item = obs(
        platform="email",
        kind="email",
        author_handle="j0hn.doe@mail.test",
        addressed_to=("alex@example.org",),
    )
    hit = only_hit(matcher.match(item))
    assert hit.kind == "suspected_alt"
    assert hit.author_key == "j0hn.doe@mail.test"


def test_email_to_someone_else_is_not_contact(matcher: Matcher) -> None:
    item = obs(
        platform="email",
        kind="email",
        author_handle="john@example.com",
        addressed_to=("alex@example.org.evil",),
        text="hello",
    )
    assert matcher.match(item) == []


def test_posted_by_forces_the_author_class(matcher: Matcher) -> None:
    item = obs(
        platform="rss",
        kind="feed_entry",
        watcher="jdoe-blog",
        posted_by="restrained",
        author_handle=None,
        text="What Alex Smith did",
    )
    hit = only_hit(matcher.match(item))
    assert (hit.kind, hit.author_class) == ("mention", "restrained")
    assert hit.author_key == "posted_by:jdoe-blog"
    assert hit.reason == (
        "feed entry by the restrained party (source `jdoe-blog`) "
        'names the protected person ("Alex Smith")'
    )
    friend = obs(
        platform="rss",
        kind="feed_entry",
        watcher="friend-blog",
        posted_by="associate",
        author_handle="Pat",
        text="Alex Smith",
    )
    hit = only_hit(matcher.match(friend))
    assert (hit.kind, hit.author_key) == ("third_party", "pat")


def test_multiple_cases_only_the_right_one_hits() -> None:
    other = make_case(
        id="lee-v-roe",
        protected={"names": ["Kim Lee"], "handles": {"reddit": ["kimlee"]}},
        restrained={"names": ["Rob Roe"], "handles": {"reddit": ["rroe"]}},
    )
    matcher = Matcher([make_case(), other])
    hit = only_hit(matcher.match(obs(author_handle="rroe", text="Kim Lee again")))
    assert hit.case_id == "lee-v-roe"
    # A restrained party of one case naming the protected person of another: nothing.
    assert matcher.match(obs(author_handle="rroe", text="Alex Smith")) == []
    # Case filter: the watcher serves only the other case.
    item = obs(author_handle="jdoe", text="Alex Smith")
    assert matcher.match(item, case_ids=["lee-v-roe"]) == []
    assert only_hit(matcher.match(item, case_ids=["smith-v-doe"])).case_id == "smith-v-doe"


def test_shared_names_across_cases_hit_each_case() -> None:
    twin = make_case(id="twin-case")
    hits = Matcher([make_case(), twin]).match(obs(author_handle="jdoe", text="Alex Smith"))
    assert sorted(hit.case_id for hit in hits) == ["smith-v-doe", "twin-case"]


def test_unknown_case_id_is_an_error(matcher: Matcher) -> None:
    with pytest.raises(UnknownCaseError, match="no-such-case"):
        matcher.match(obs(author_handle="jdoe", text="Alex Smith"), case_ids=["no-such-case"])


def test_no_cases_matches_nothing() -> None:
    assert Matcher([]).match(obs(author_handle="jdoe", text="Alex Smith")) == []


def test_case_filter_accepts_any_iterable_and_is_checked_every_time(matcher: Matcher) -> None:
    item = obs(author_handle="jdoe", text="Alex Smith")
    for _ in range(2):
        assert only_hit(matcher.match(item, case_ids=iter(["smith-v-doe"]))).kind == "mention"
        assert matcher.match(item, case_ids=()) == []
        with pytest.raises(UnknownCaseError):
            matcher.match(item, case_ids=["smith-v-doe", "typo-case"])


def test_author_known_only_by_display_name() -> None:
    case = make_case(restrained={"names": ["Marcus Webb"], "handles": {"reddit": ["mw_x"]}})
    item = obs(platform="rss", kind="feed_entry", author_display_name="Marcus Webb", text="Lexi")
    hit = only_hit(Matcher([case]).match(item))
    assert hit.kind == "suspected_alt"
    assert hit.author_key == "display:marcuswebb"
    assert hit.reason.startswith(
        'author `Marcus Webb` has display name "Marcus Webb" which contains'
    )


def test_direct_message_from_stranger_is_no_hit_in_any_case() -> None:
    cases = [make_case(id=f"case-{n}") for n in range(5)]
    assert Matcher(cases).match(obs(kind="direct_message", author_handle="stranger")) == []


def test_confusables_data_is_the_pinned_unicode_version() -> None:
    data = REPO / "service" / "data"
    header = (data / "confusables.txt").read_text(encoding="utf-8")[:600]
    assert "# Version: 18.0.0" in header
    assert "SPDX-License-Identifier: Unicode-3.0" in (data / "LICENSE-Unicode.txt").read_text()
    # ȷ (dotless j) became a confusable of j after Unicode 13, the old package's data.
    assert normalize_handle("\u0237doe") == normalize_handle("jdoe")
