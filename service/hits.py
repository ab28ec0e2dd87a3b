"""A matching result: one observation recognised as a possible violation of one case."""

from __future__ import annotations

import dataclasses
from typing import Literal

from service.settings import Severity

ViolationKind = Literal["contact", "suspected_alt", "mention", "third_party", "suspected_proxy"]
# "unknown": none of the others, nor the protected person (only a proxy hit uses it).
AuthorClass = Literal["restrained", "associate", "suspected_alt", "unknown"]
TargetKind = Literal["contact", "mention"]


@dataclasses.dataclass(frozen=True, slots=True)
class Hit:
    case_id: str
    kind: ViolationKind
    severity: Severity
    suspected: bool
    reason: str
    # Normalised author handle (matching.normalize_handle), for grouping hits.
    author_key: str
    author_class: AuthorClass
    target: TargetKind
    # False before the order's `effective` date or after `expires`: stored, not alerted.
    in_order_period: bool
    # Similarity score 0–100 for suspected alts, None otherwise.
    score: float | None = None
