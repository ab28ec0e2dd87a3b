"""``export`` verifies the store first (#14): a packet of a broken store is refused.

A tampered store once exported silently, and the PDF showed the altered text as if it
were evidence. Now ``export`` runs the same checks as ``nocontact verify``; any problem
refuses the packet with a one-line error naming the record, unless the user asks for
it anyway (``--allow-broken``), in which case the cover says "VERIFICATION FAILED" and
every record a problem names is flagged where it is shown.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from cryptography import x509
from sqlalchemy.orm import Session, sessionmaker

from service.verify import VerifyReport, verify_store

FAILED = "VERIFICATION FAILED"
_NAMED = 3  # problems named in the one-line refusal; `nocontact verify` lists all


class BrokenStoreError(Exception):
    """The store fails verification and no packet was written (one line)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Verification:
    """What the packet says about the store's verification at export time."""

    ok: bool
    summary: str
    problems: tuple[str, ...] = ()
    # seq → what is wrong with that record, for the record's own flag.
    flagged: Mapping[int, str] = dataclasses.field(default_factory=dict)

    def record_flag(self, seq: int) -> str | None:
        problem = self.flagged.get(seq)
        return None if problem is None else f"{FAILED} for this record: {problem}"

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "summary": self.summary, "problems": list(self.problems)}


def verification_of(report: VerifyReport) -> Verification:
    flagged: dict[int, str] = {}
    for problem in report.problems:
        if problem.seq is not None and problem.evidence_id is not None:
            flagged.setdefault(problem.seq, problem.what)
    return Verification(
        ok=report.ok,
        summary=report.summary_line(),
        problems=tuple(report.problem_lines()),
        flagged=flagged,
    )


def verify_before_export(
    sessions: sessionmaker[Session],
    case_id: str,
    *,
    allow_broken: bool,
    tsa_roots: Sequence[x509.Certificate] = (),
) -> Verification:
    """Verify the whole store; raise ``BrokenStoreError`` on any problem unless
    ``allow_broken``. A chain is one for all cases, so any break counts."""
    verification = verification_of(verify_store(sessions, case_id, tsa_roots=tsa_roots))
    if verification.ok or allow_broken:
        return verification
    named = "; ".join(verification.problems[:_NAMED])
    more = len(verification.problems) - _NAMED
    if more > 0:
        named += f"; and {more} more"
    raise BrokenStoreError(
        f"the evidence store fails verification, no packet written: {named} "
        "(see `nocontact verify`; `export --allow-broken` writes the packet with every "
        "failure flagged)"
    )
