"""Which cases could know or suspect an observation's author, without asking every case
(#15). ``service.matching`` then runs its per-case author rules on these few only, so
the cost per observation does not grow with the number of cases a watcher serves.

The index is a superset filter, never a decision: a case it leaves out is one whose
rules would call the author ``unknown`` (or the protected person). It holds

* identity forms of restrained and associate handles → cases (exact roles);
* platforms whose account ids link renamed handles (Bluesky) → cases with handles there;
* look-alike forms of restrained identifiers and addresses → cases (same skeleton);
* an Aho-Corasick automaton over identifiers long enough to count when contained;
* a trigram and bigram index for fuzzy look-alikes (``FuzzyIndex``): two strings
  similar enough share at least a number of q-grams that their lengths and the
  threshold fix (a q-gram lemma for the Indel distance ``fuzz.ratio`` uses), so only
  identifiers sharing that many with the author's handle (or, where the bound says
  nothing, of a length within reach) are scored by rapidfuzz.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import ahocorasick
from rapidfuzz import fuzz, process

# Slack on the score arithmetic so that float rounding never drops a true candidate.
_EPSILON = 1e-9


# q-gram lengths indexed: trigrams are far rarer than bigrams (the fewer candidates),
# bigrams still bound what trigrams cannot (lower thresholds, short forms), and need
# more shared when forms share a long part (``restr_1234`` / ``restr_5678``).
_QS = (3, 2)
# Up to this many candidates for one length, the trigram bound is kept without
# trying the bigram one.
_FEW_CANDIDATES = 64
# Lengths with at most this many forms are scored whole: cheaper than their q-grams.
_FEW_FORMS = 8
_NONE: list[str] = []  # a q-gram no form has (never written to)

# One length's plan: its forms; per q, (q, q-grams needed, postings of that length).
_LengthPlan = tuple[list[str], list[tuple[int, int, dict[str, list[str]]]]]

# (length of the query, threshold) → the plans of ``FuzzyIndex._plan``, remembered.
_MAX_PLANS = 4096


class FuzzyIndex:
    """Look-alike forms → cases, found by similarity (``fuzz.ratio`` ≥ a threshold).

    ``fuzz.ratio`` is ``100 · (1 − D / (la + lb))`` with ``D = la + lb − 2·LCS`` the
    Indel distance, so reaching the threshold means ``D ≤ reach``, the largest integer
    of the parity of ``la + lb`` at most ``slack · (la + lb)``. Along a longest common
    subsequence, ``LCS − q + 1`` windows of ``q`` consecutive matched characters exist;
    one whose characters are adjacent in both strings is a shared q-gram, and each of
    the at most ``D`` gaps between matched characters breaks at most ``q − 1`` windows.
    So the strings share at least ``(la + lb − reach) / 2 − (q − 1) − (q − 1) · reach``
    q-grams (counted with repeats). Forms sharing fewer with the query are never scored;
    where the bound says nothing, every form of a length within reach is.
    """

    def __init__(self) -> None:
        self._cases: dict[str, set[int]] = {}
        self._by_length: dict[int, list[str]] = {}
        # (q, length) → q-gram → forms of that length containing it
        self._grams: dict[tuple[int, int], dict[str, list[str]]] = {}
        # q-gram → how many forms of any length contain it: the query's rarest are taken
        self._frequency: dict[str, int] = {}
        self._plans: dict[tuple[int, float], list[_LengthPlan]] = {}

    def add(self, norm: str, case: int) -> None:
        known = self._cases.get(norm)
        if known is not None:
            known.add(case)
            return
        self._cases[norm] = {case}
        self._by_length.setdefault(len(norm), []).append(norm)
        for q in _QS:
            postings = self._grams.setdefault((q, len(norm)), {})
            for gram in {norm[i : i + q] for i in range(len(norm) - q + 1)}:
                postings.setdefault(gram, []).append(norm)
                self._frequency[gram] = self._frequency.get(gram, 0) + 1
        self._plans.clear()

    def near(self, query: str, threshold: float) -> set[int]:
        """Cases with a form scoring at least ``threshold`` against ``query``."""
        candidates = self._candidates(query, threshold)
        found: set[int] = set()
        if not candidates:
            return found
        for norm, _score, _position in process.extract(
            query, candidates, scorer=fuzz.ratio, score_cutoff=threshold, limit=None
        ):
            found.update(self._cases[norm])
        return found

    def _candidates(self, query: str, threshold: float) -> list[str]:
        """Forms that may score ``threshold`` (a superset), by length and q-grams."""
        found: set[str] = set()
        grams: dict[int, tuple[list[str], int]] = {}
        for forms, bounds in self._plan(len(query), threshold):
            best: list[list[str]] | None = None
            best_size = 0
            for q, need, postings in bounds:
                if q not in grams:
                    grams[q] = self._distinct_grams(query, q)
                rarest, repeats = grams[q]
                keep = len(rarest) - need + repeats + 1
                if keep > len(rarest):
                    continue  # repeated q-grams leave this bound saying nothing
                # Prefix filtering: sharing `need` of the query's q-grams means sharing
                # at least one of any (distinct - need + 1) of them; the rarest are
                # taken, and rapidfuzz (in C) scores their union.
                lists = [postings.get(gram, _NONE) for gram in rarest[:keep]]
                size = sum(map(len, lists))
                if best is None or size < best_size:
                    best, best_size = lists, size
                if best_size <= _FEW_CANDIDATES:
                    break  # good enough: the next q costs more than it could save
            if best is None:
                found.update(forms)  # no bound: every form of the length
            else:
                found.update(*best)
        return list(found)

    def _distinct_grams(self, query: str, q: int) -> tuple[list[str], int]:
        """The query's distinct q-grams, rarest first, and how many repeats they hide:
        the bound counts q-grams with repeats, counting distinct ones may miss one per
        repeat."""
        grams = [query[i : i + q] for i in range(len(query) - q + 1)]
        distinct = set(grams)
        rarest = sorted(distinct, key=lambda gram: self._frequency.get(gram, 0))
        return rarest, len(grams) - len(distinct)

    def _plan(self, la: int, threshold: float) -> list[_LengthPlan]:
        """For each indexed length within reach: its forms and, for each q of ``_QS``
        whose bound says something, (q, q-grams shared at least before the query's
        repeats, the q-gram postings of that length); none for a length of a few
        forms."""
        key = (la, threshold)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        slack = 1.0 - threshold / 100.0
        plan = []
        for lb in sorted(self._by_length):
            reach = math.floor(slack * (la + lb) + _EPSILON)
            reach -= (reach - la - lb) % 2  # D has the parity of la + lb
            if abs(la - lb) > reach:
                continue  # too different in length to reach the threshold
            bounds = []
            for q in _QS:
                need = (la + lb - reach) // 2 - (q - 1) * (1 + reach)
                if need > 0 and len(self._by_length[lb]) > _FEW_FORMS:
                    bounds.append((q, need, self._grams[q, lb]))
            plan.append((self._by_length[lb], bounds))
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        self._plans[key] = plan
        return plan


class AuthorIndex:
    """Built once per Matcher from every case; read-only afterwards (thread-safe)."""

    def __init__(self, linked_platforms: Iterable[str]) -> None:
        self._linked_platforms = frozenset(linked_platforms)
        self._known: dict[tuple[str, str], set[int]] = {}
        self._associates: dict[str, set[int]] = {}
        self._linked: dict[str, set[int]] = {}
        self._same: dict[str, set[int]] = {}
        self._addresses: dict[str, set[int]] = {}
        self._contained_cases: list[set[int]] = []
        self._contained_ids: dict[str, int] = {}
        self._contained = ahocorasick.Automaton()
        self._fuzzy = FuzzyIndex()
        self._threshold = 100.0

    def add_handles(
        self,
        case: int,
        restrained: Mapping[str, Mapping[str, str]],
        associates: Mapping[str, Mapping[str, str]],
        protected: Mapping[str, Mapping[str, str]],
    ) -> None:
        """Identity forms by platform (as ``service.matching`` keeps them per case)."""
        for platform, handles in (*restrained.items(), *associates.items()):
            for key in handles:
                self._known.setdefault((platform, key), set()).add(case)
        for handles in associates.values():
            for key in handles:
                self._associates.setdefault(key, set()).add(case)
        for roles in (restrained, associates, protected):
            for platform, handles in roles.items():
                if platform in self._linked_platforms and handles:
                    self._linked.setdefault(platform, set()).add(case)

    def add_lookalikes(
        self,
        case: int,
        identifiers: Iterable[str],
        contained: Iterable[str],
        addresses: Iterable[str],
        threshold: float,
    ) -> None:
        """Look-alike forms of the restrained party's identifiers and whole addresses."""
        self._threshold = min(self._threshold, threshold)
        for norm in identifiers:
            self._same.setdefault(norm, set()).add(case)
            self._fuzzy.add(norm, case)
        for norm in addresses:
            self._addresses.setdefault(norm, set()).add(case)
        for norm in contained:
            ident = self._contained_ids.get(norm)
            if ident is None:
                ident = self._contained_ids[norm] = len(self._contained_cases)
                self._contained_cases.append(set())
                self._contained.add_word(norm, ident)
            self._contained_cases[ident].add(case)

    def finish(self) -> None:
        if self._contained_cases:
            self._contained.make_automaton()

    def known(self, platform: str, key: str, linked: bool) -> set[int]:
        """Cases where the identity form ``key`` is a restrained or associate handle
        (an associate on any platform), and with ``linked`` every case whose handles
        on ``platform`` an account id could match."""
        found: set[int] = set()
        if key:
            found.update(self._known.get((platform, key), ()))
            found.update(self._associates.get(key, ()))
        if linked and platform in self._linked_platforms:
            found.update(self._linked.get(platform, ()))
        return found

    def lookalikes(self, handle_norm: str, display_norm: str, address_norm: str) -> set[int]:
        """Cases whose restrained party the author's look-alike forms may resemble."""
        found: set[int] = set(self._addresses.get(address_norm, ())) if address_norm else set()
        if handle_norm:
            found.update(self._same.get(handle_norm, ()))
            found.update(self._fuzzy.near(handle_norm, self._threshold))
        for text in (handle_norm, display_norm):
            if text and self._contained_cases:
                for _end, ident in self._contained.iter(text):
                    found.update(self._contained_cases[ident])
        return found
