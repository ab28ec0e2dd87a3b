"""Which violation a hit opens or joins: the timeline's grouping rules (DESIGN "Dedup
and the timeline"), applied inside ``Store.record_poll``'s transaction.

Hits of one case from one author within the case's ``group_window`` join one violation;
the same words seen on another platform at about the same time join the violation of
the first sighting. A joined violation takes the most serious kind and severity of its
hits. What changed is handed to the alert planner as ``ViolationChange``s.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import and_, insert, select
from sqlalchemy.orm import Session

from service.hits import Hit
from service.models import Evidence, Violation, ViolationEvidence
from service.planner import ViolationChange
from service.settings import SEVERITY_RANK, CaseSettings

log = logging.getLogger(__name__)

# Violation kinds from least to most serious; a joined violation takes the most serious.
KIND_RANK: dict[str, int] = {
    "mention": 1,
    "third_party": 1,
    "suspected_proxy": 1,
    "suspected_alt": 2,
    "contact": 3,
}


@dataclasses.dataclass(slots=True)
class NewEvidence:
    index: int  # into the poll's observations, which index the hits
    evidence_id: int
    platform: str
    fingerprint: str | None  # None for empty text, which must never join by content
    moment: datetime  # posted_at, else captured_at


@dataclasses.dataclass(slots=True)
class PollWrite:
    """The state of one ``record_poll`` transaction.

    The violations a poll's hits may join are read once per poll (``add_hits``) into
    an in-memory index, which the violations opened and the links added during the
    poll then join; two queries per poll instead of two per hit (#15).
    """

    session: Session
    cases: Mapping[str, CaseSettings]
    now: datetime
    created: dict[str, Violation] = dataclasses.field(default_factory=dict)
    joined: dict[str, Violation] = dataclasses.field(default_factory=dict)
    # (severity, kind) of each joined violation before this poll.
    before: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    # (violation id, evidence id) → the reason of the link, written by ``add_hits``.
    links: dict[tuple[str, int], str] = dataclasses.field(default_factory=dict)
    added: dict[str, int] = dataclasses.field(default_factory=dict)
    # Violations near this poll's items, and (violation, platform) by text fingerprint.
    candidates: dict[str, Violation] = dataclasses.field(default_factory=dict)
    by_content: dict[str, list[tuple[Violation, str]]] = dataclasses.field(default_factory=dict)

    def add_hits(self, hits: Mapping[int, Sequence[Hit]], items: Sequence[NewEvidence]) -> None:
        """Open or join a violation for every hit of these new evidence items, in order."""
        pairs = [(hit, item) for item in items for hit in hits.get(item.index, ())]
        if not pairs:
            return
        self._load_candidates(pairs)
        for hit, item in pairs:
            self.add_hit(hit, item)
        # The violations first (the links refer to them), then the links in one batch.
        self.session.flush()
        if self.links:
            self.session.execute(
                insert(ViolationEvidence.__table__),  # type: ignore[arg-type]
                [
                    {"violation_id": violation_id, "evidence_id": evidence_id, "reason": reason}
                    for (violation_id, evidence_id), reason in self.links.items()
                ],
            )

    def add_hit(self, hit: Hit, item: NewEvidence) -> None:
        case = self.cases.get(hit.case_id)
        if case is None:
            # A bug upstream; failing the poll would lose the evidence, so keep it.
            log.error("hit for case %s, which is not in the config; evidence kept", hit.case_id)
            return
        violation = self._find_violation(case, hit, item)
        if violation is None:
            violation = self._open_violation(hit, item.moment)
        else:
            self._widen(violation, hit, item.moment)
        if (violation.id, item.evidence_id) not in self.links:
            self.links[(violation.id, item.evidence_id)] = hit.reason
            self.added[violation.id] = self.added.get(violation.id, 0) + 1
            if item.fingerprint is not None:
                self.by_content.setdefault(item.fingerprint, []).append((violation, item.platform))

    def _load_candidates(self, pairs: Sequence[tuple[Hit, NewEvidence]]) -> None:
        """Every stored violation that any of these hits could join: of their cases and
        near their items' times (a violation not loaded is not widened in this poll, so
        it stays too far from every item)."""
        known = [(hit, item) for hit, item in pairs if hit.case_id in self.cases]
        if not known:
            return
        window = max(self.cases[hit.case_id].group_window for hit, _ in known)
        near = and_(
            Violation.case_id.in_(sorted({hit.case_id for hit, _ in known})),
            Violation.first_seen <= max(item.moment for _, item in known) + window,
            Violation.last_seen >= min(item.moment for _, item in known) - window,
        )
        authors = {hit.author_key for hit, _ in known}
        for violation in self.session.scalars(
            select(Violation).where(near, Violation.author_key.in_(sorted(authors)))
        ):
            self.candidates[violation.id] = violation
        fingerprints = {item.fingerprint for _, item in known if item.fingerprint is not None}
        if not fingerprints:
            return
        linked = self.session.execute(
            select(Violation, Evidence.text_fingerprint, Evidence.platform)
            .join(ViolationEvidence, ViolationEvidence.violation_id == Violation.id)
            .join(Evidence, Evidence.id == ViolationEvidence.evidence_id)
            .where(near, Evidence.text_fingerprint.in_(sorted(fingerprints)))
        )
        for violation, fingerprint, platform in linked:
            self.candidates[violation.id] = violation
            self.by_content.setdefault(fingerprint, []).append((violation, platform))

    def _find_violation(self, case: CaseSettings, hit: Hit, item: NewEvidence) -> Violation | None:
        """The violation this hit joins, if any: the one last seen most recently.

        "Near" means the item's time lies within the case's ``group_window`` of the
        violation's span [first_seen, last_seen] (so items that arrive out of order
        still join), in the same case and on the same side of the order period.
        """
        window = case.group_window

        def near(violation: Violation) -> bool:
            return (
                violation.case_id == case.id
                and violation.in_order_period == hit.in_order_period
                and violation.first_seen <= item.moment + window
                and violation.last_seen >= item.moment - window
            )

        if item.fingerprint is not None:
            # The same words on another platform at about the same time: one post seen
            # through two sources (a mirror and the API). Same-platform items with equal
            # text are distinct posts; they may still group by author below.
            same_content = [
                violation
                for violation, platform in self.by_content.get(item.fingerprint, ())
                if platform != item.platform and near(violation)
            ]
            if same_content:
                return max(same_content, key=_last_seen)
        same_author = [
            violation
            for violation in self.candidates.values()
            if violation.author_key == hit.author_key and near(violation)
        ]
        return max(same_author, key=_last_seen) if same_author else None

    def _open_violation(self, hit: Hit, moment: datetime) -> Violation:
        violation = Violation(
            id=str(uuid.uuid4()),
            case_id=hit.case_id,
            kind=hit.kind,
            severity=hit.severity,
            suspected=hit.suspected,
            score=hit.score,
            reason=hit.reason,
            author_key=hit.author_key,
            first_seen=moment,
            last_seen=moment,
            created_at=self.now,
            in_order_period=hit.in_order_period,
        )
        self.session.add(violation)
        self.created[violation.id] = violation
        self.candidates[violation.id] = violation
        return violation

    def _widen(self, violation: Violation, hit: Hit, moment: datetime) -> None:
        if violation.id not in self.created and violation.id not in self.joined:
            self.joined[violation.id] = violation
            self.before[violation.id] = (violation.severity, violation.kind)
        violation.first_seen = min(violation.first_seen, moment)
        violation.last_seen = max(violation.last_seen, moment)
        more_serious = KIND_RANK[hit.kind] > KIND_RANK[violation.kind]
        if more_serious:
            violation.kind = hit.kind
        if SEVERITY_RANK[hit.severity] > SEVERITY_RANK[violation.severity]:
            violation.severity = hit.severity
            more_serious = True
        if more_serious:
            violation.reason = hit.reason
        # A violation is only "suspected" while every hit in it is.
        violation.suspected = violation.suspected and hit.suspected
        if hit.score is not None:
            violation.score = max(violation.score or 0.0, hit.score)

    def changes(self) -> list[ViolationChange]:
        """What this poll did to the timeline, for the alert planner."""
        opened = [
            ViolationChange(v, True, v.severity, v.kind, self.added.get(v.id, 0))
            for v in self.created.values()
        ]
        joined = [
            ViolationChange(v, False, *self.before[v.id], self.added.get(v.id, 0))
            for v in self.joined.values()
        ]
        return opened + joined


def _last_seen(violation: Violation) -> datetime:
    return violation.last_seen
