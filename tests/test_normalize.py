"""The ASCII fast paths of normalisation (#15) give exactly what the general Unicode
path gives: the general path is the reference, compared on every ASCII character,
on generated strings rich in the characters the skeleton and the folds touch, and on
tricky inputs (confusables, fullwidth, marks) that must still take the general path."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.normalize import (
    _normalize_handle_unicode,
    _normalize_text_unicode,
    identity_handle,
    normalize_handle,
    normalize_text,
)

# Every ASCII character, with the ones the skeleton, leetspeak and the l/i and rn/m folds
# touch weighted up so that their neighbourhoods ("rrn", "r_n", "l1|") come up often.
_ASCII = st.sampled_from([chr(code) for code in range(128)] + list('rnmlLI1|0O`"%@! _.-') * 4)
ASCII_TEXT = st.lists(_ASCII, max_size=40).map("".join)

TRICKY = [
    "",
    "Alex Smith",
    "ALEX   SMITH\t\n",
    "rn m rrn rnm mrn r_n r`n",
    'say "hi" `there` 100% 1|l',
    "\x1c\x1dAlex\x1e\x1fSmith",
    "@J0hn.D0e_",
    "u/ /u/ @@jdoe",
    "ｊｏｈｎ　ｄｏｅ",  # fullwidth: NFKC makes it ASCII
    "jоhn dоe",  # Cyrillic о
    "Alëx Sm\u200bith",  # a mark and a zero-width space
    "ﬁnn",  # a ligature
    "ǅemal",  # a title-case digraph
    "straße",  # casefold is not lower() here
    "İstanbul",
    "€£$ 5mith",
]


def _reference_handle(handle: str) -> str:
    return _normalize_handle_unicode(identity_handle(handle))


@pytest.mark.parametrize("code", range(128))
def test_every_ascii_character_normalises_as_the_general_path_does(code: int) -> None:
    for text in (chr(code), f"a{chr(code)}b", f"r{chr(code)}n", f"{chr(code)}m{chr(code)}"):
        assert normalize_text(text) == _normalize_text_unicode(text)
        assert normalize_handle(text) == _reference_handle(text)


@settings(max_examples=2000, deadline=None)
@given(ASCII_TEXT)
def test_ascii_fast_paths_equal_the_general_path(text: str) -> None:
    # identity_handle's own fast path rests on this: on ASCII, NFKC + casefold is lower().
    assert unicodedata.normalize("NFKC", text).casefold() == text.lower()
    assert normalize_text(text) == _normalize_text_unicode(text)
    assert normalize_handle(text) == _reference_handle(text)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_inputs_normalise_as_the_general_path_does(text: str) -> None:
    assert normalize_text(text) == _normalize_text_unicode(text)
    assert normalize_handle(text) == _reference_handle(text)


def test_identity_handle_of_ascii_equals_nfkc_casefold() -> None:
    assert identity_handle(" @JDoe ") == "jdoe"
    assert identity_handle("ＪＤｏｅ") == identity_handle("JDoe") == "jdoe"
    assert identity_handle("Straße") == "strasse"  # casefold, not lower()


def test_fast_paths_fold_what_the_matching_rules_fold() -> None:
    # Written out so that a change to both paths at once is still caught.
    assert normalize_text('Rnary "L1|" `x`') == "mary ''iii'' 'x'"
    assert normalize_text("100%") == "ioo°/₀"  # % has a non-ASCII prototype
    assert normalize_handle("@J0hn.D0e_") == "johndoe"
    assert normalize_handle("u/r_n.m") == "rnm"
    assert normalize_handle("jоhn_dоe") == "johndoe"  # Cyrillic о
