"""The look-alike index (#15) is a filter: whatever rapidfuzz would score at or above
the threshold against any identifier, the index finds too (checked against a scan of
every identifier)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz

from service.author_index import AuthorIndex, FuzzyIndex
from service.matching import Matcher
from service.settings import CaseSettings
from watchers.base import Observation

HANDLES = st.text(alphabet="abcdeior0123_", min_size=1, max_size=14)


@settings(max_examples=300, deadline=None)
@given(
    norms=st.lists(HANDLES, min_size=1, max_size=40),
    query=HANDLES,
    threshold=st.integers(min_value=50, max_value=100),
)
def test_fuzzy_index_finds_every_identifier_a_full_scan_finds(
    norms: list[str], query: str, threshold: int
) -> None:
    index = FuzzyIndex()
    for case, norm in enumerate(norms):
        index.add(norm, case)

    expected = {case for case, norm in enumerate(norms) if fuzz.ratio(query, norm) >= threshold}

    assert index.near(query, threshold) == expected


@st.composite
def _near_misses(draw: st.DrawFn) -> tuple[list[str], str]:
    """Forms over a two- or three-letter alphabet (repeated bigrams, the bound's hard
    case) and a query a few insertions and deletions away from one of them."""
    alphabet = draw(st.sampled_from(["ab", "abc", "aab0"]))
    form = st.text(alphabet=alphabet, max_size=16)
    norms = draw(st.lists(form, min_size=1, max_size=draw(st.sampled_from([30, 300]))))
    query = list(draw(st.sampled_from(norms)))
    for position, char in draw(st.lists(st.tuples(st.integers(0, 16), form), max_size=3)):
        if char and position % 2:
            query.insert(position % (len(query) + 1), char[0])
        elif query:
            del query[position % len(query)]
    return norms, "".join(query)


@settings(max_examples=1000, deadline=None)
@given(
    case=_near_misses(),
    threshold=st.sampled_from([50, 66.7, 70, 75, 80, 83.3, 85, 88.9, 90, 95, 100]),
)
def test_fuzzy_index_bound_holds_for_near_misses_with_repeated_bigrams(
    case: tuple[list[str], str], threshold: float
) -> None:
    norms, query = case
    index = FuzzyIndex()
    for number, norm in enumerate(norms):
        index.add(norm, number)

    expected = {n for n, norm in enumerate(norms) if fuzz.ratio(query, norm) >= threshold}

    assert index.near(query, threshold) == expected


@pytest.mark.parametrize("seed", range(4))
def test_fuzzy_index_with_crowded_lengths_finds_what_a_scan_finds(seed: int) -> None:
    """Thousands of forms sharing a long part (``restr…``), so that every length holds
    many forms and the q-gram bounds, not a scan of the length, choose the candidates."""
    rng = random.Random(seed)
    letters = "oizeasgtb"
    norms = [f"restr{''.join(rng.choices(letters, k=rng.randint(1, 5)))}" for _ in range(3000)]
    norms += ["".join(rng.choices("abcdefghij", k=rng.randint(3, 14))) for _ in range(1000)]
    index = FuzzyIndex()
    for number, norm in enumerate(norms):
        index.add(norm, number)
    queries = [norm[: rng.randint(0, len(norm))] + rng.choice(letters) for norm in norms[::40]]
    queries += [f"user{''.join(rng.choices(letters, k=6))}" for _ in range(30)]

    for threshold in (70, 80, 85, 90):
        for query in queries:
            expected = {n for n, norm in enumerate(norms) if fuzz.ratio(query, norm) >= threshold}
            assert index.near(query, threshold) == expected, (query, threshold)


def test_a_handle_like_no_identifier_yields_no_case() -> None:
    index = FuzzyIndex()
    for case in range(1000):
        index.add(f"restr{case}", case)

    assert index.near("completelyother", 85) == set()
    assert index.near("restr42", 85) >= {42}


def test_author_index_finds_exact_roles_and_contained_names() -> None:
    index = AuthorIndex(["bluesky"])
    index.add_handles(0, {"reddit": {"jdoe": "jdoe"}}, {"x": {"pal": "pal"}}, {})
    index.add_handles(1, {}, {}, {"bluesky": {"alex.bsky.social": "alex.bsky.social"}})
    index.add_lookalikes(0, ["johndoe"], ["johndoe"], [], 85)
    index.add_lookalikes(1, ["maxmuster"], ["maxmuster"], [], 85)
    index.finish()

    assert index.known("reddit", "jdoe", linked=False) == {0}
    assert index.known("reddit", "pal", linked=False) == {0}  # an associate elsewhere
    assert index.known("bluesky", "someone", linked=True) == {1}
    assert index.known("reddit", "nobody", linked=False) == set()
    assert index.lookalikes("realjohndoe1987", "", "") == {0}
    assert index.lookalikes("other", "max muster fan".replace(" ", ""), "") == {1}


def _case(index: int) -> CaseSettings:
    return CaseSettings.model_validate(
        {
            "id": f"case-{index}",
            "order": {"effective": "2026-01-15", "terms": ["no_contact", "no_mention"]},
            "protected": {
                "names": [f"Alex Smith{index}"],
                "handles": {"reddit": [f"prot_{index}"], "email": [f"p{index}@example.org"]},
            },
            "restrained": {
                "names": [f"John Doe{index}"],
                "handles": {
                    "reddit": [f"restr_{index}"],
                    "email": [f"johndoe{index}@example.com"],
                    "bluesky": [f"jd{index}.bsky.social"],
                },
                "associates": {"reddit": [f"friend_{index}"], "x": [f"pal_{index}"]},
            },
            "fuzzy_threshold": 80 if index % 2 else 90,
        }
    )


CASES = [_case(index) for index in range(40)]
AUTHORS = [
    ("reddit", "restr_7"),
    ("reddit", "r3str_7"),
    ("reddit", "restr_7_"),
    ("reddit", "realrestr17fan"),
    ("reddit", "friend_3"),
    ("reddit", "pal_12"),
    ("reddit", "prot_5"),
    ("reddit", "someone_else"),
    ("reddit", "johndoe21"),
    ("email", "John <johndoe9@example.com>"),
    ("email", "j0hndoe9@examp1e.com"),
    ("email", "stranger@example.net"),
    ("bluesky", "jd4.bsky.social"),
    ("bluesky", "jdd4.bsky.social"),
]
TEXTS = ["hello there", "hi Alex Smith3 from John Doe3", "@prot_8 hey", "John Doe11 says hi"]
KINDS = ["post", "direct_message"]


@pytest.mark.parametrize(("platform", "author"), AUTHORS)
def test_the_index_path_decides_as_asking_every_case(platform: str, author: str) -> None:
    """Serving 40 cases goes through the index; serving one asks that case directly.
    Both must give the same hits and the same involvement, whatever the author."""
    matcher = Matcher(CASES, clock=lambda: datetime(2026, 5, 1, tzinfo=UTC))
    for text in TEXTS:
        for kind in KINDS:
            item = Observation(
                platform=platform,
                native_id="n1",
                kind=kind,
                raw=b"{}",
                watcher="w",
                author_handle=author,
                author_display_name="Fan of John Doe30" if "else" in author else None,
                text=text,
                posted_at=datetime(2026, 5, 1, tzinfo=UTC),
            )
            alone = [hit for case in CASES for hit in matcher.match(item, [case.id])]
            involved_alone = any(matcher.involved(item, [case.id]) for case in CASES)

            assert matcher.match(item) == alone
            assert matcher.involved(item) == involved_alone


def test_a_remembered_author_is_told_apart_by_display_name_and_platform() -> None:
    """The index's answer is remembered per author: the same handle with another
    display name, or on another platform, must be asked again, not answered from
    what was remembered."""
    matcher = Matcher(CASES, clock=lambda: datetime(2026, 5, 1, tzinfo=UTC))

    def involved(platform: str, handle: str, display: str | None) -> bool:
        item = Observation(
            platform=platform,
            native_id="n1",
            kind="post",
            raw=b"{}",
            watcher="w",
            author_handle=handle,
            author_display_name=display,
            text="hello there",
            posted_at=datetime(2026, 5, 1, tzinfo=UTC),
        )
        return matcher.involved(item)

    assert not involved("reddit", "someone_else", None)
    assert involved("reddit", "someone_else", "Fan of John Doe30")
    assert not involved("reddit", "someone_else", None)
    assert involved("x", "pal_12", None)  # an associate, listed for x
    assert involved("reddit", "pal_12", None)  # the same associate writing elsewhere
    assert not involved("reddit", "pal_12x_unrelated_handle", None)
