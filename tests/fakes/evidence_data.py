"""Populate a store with cases, evidence and violations through the ORM.

Hashes and the chain are computed with ``service.evidence`` exactly as the store does
(seq order, one chain for all cases), so that ``verify`` and ``export`` can be tested
without depending on ``service.store``.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from service.evidence import (
    GENESIS_CHAIN,
    chain_sha256,
    content_sha256,
    format_time,
    record_sha256,
    sha256_hex,
    text_fingerprint,
    truncate_to_second,
)
from service.models import (
    Base,
    Case,
    ChainHead,
    Evidence,
    OutboxAlert,
    Violation,
    ViolationEvidence,
)
from service.settings import CaseSettings
from watchers.base import Observation

CASE_ID = "smith-v-doe"
OTHER_CASE_ID = "jones-v-roe"
START = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)

HOSTILE_SCRIPT = "<script>alert(1)</script> hi"
HOSTILE_IMG = '<img src=x onerror="alert(2)"> look'
HOSTILE_RTL = "invoice \u202egpj.exe and \u2066isolated\u2069 text"


def case_settings(case_id: str = CASE_ID, timezone: str = "Europe/Berlin") -> CaseSettings:
    return CaseSettings.model_validate(
        {
            "id": case_id,
            "order": {
                "effective": "2026-01-15",
                "expires": "2027-01-15",
                "reference": "PO-2026-1234",
                "terms": ["no_contact", "no_mention"],
            },
            "protected": {
                "names": ["Alex Smith"],
                "handles": {"reddit": ["alex_smith"], "x": ["alexsmith"]},
            },
            "restrained": {
                "names": ["John Doe"],
                "handles": {"reddit": ["jdoe"], "x": ["johndoe"]},
                "associates": {"reddit": ["jdoe_friend"]},
            },
            "timezone": timezone,
        }
    )


def sqlite_sessions(tmp_path: Path) -> tuple[Engine, sessionmaker[Session]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    Base.metadata.create_all(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)


def ensure_case(session: Session, settings: CaseSettings) -> None:
    if session.get(Case, settings.id) is None:
        session.add(
            Case(
                id=settings.id,
                reference=settings.order.reference,
                effective=settings.order.effective,
                expires=settings.order.expires,
                definition=settings.model_dump(mode="json"),
                updated_at=START,
            )
        )


def add_evidence(
    session: Session,
    *,
    platform: str,
    native_id: str,
    text: str,
    captured_at: datetime,
    author_handle: str = "jdoe",
    author_id: str | None = "t2_jdoe",
    raw: bytes | None = None,
    raw_content_type: str = "application/json",
    version: int = 1,
    url: str | None = None,
    author_created_at: datetime | None = None,
) -> Evidence:
    """Append one evidence record to the chain, as the store does."""
    head = session.get(ChainHead, 1)
    if head is None:
        head = ChainHead(id=1, seq=0, chain_sha256=GENESIS_CHAIN)
        session.add(head)
    if raw is None:
        raw = json.dumps({"id": native_id, "body": text}, ensure_ascii=False).encode()
    posted_at = truncate_to_second(captured_at - timedelta(seconds=30))
    captured_at = truncate_to_second(captured_at)
    evidence = Evidence(
        seq=head.seq + 1,
        platform=platform,
        native_id=native_id,
        version=version,
        kind="reply",
        url=url if url is not None else f"https://{platform}.example/{native_id}",
        author_handle=author_handle,
        author_id=author_id,
        author_display_name=author_handle.title(),
        author_created_at=author_created_at,
        addressed_to=["alex_smith"],
        text=text,
        posted_at=posted_at,
        captured_at=captured_at,
        watcher=platform,
        capture_method=f"{platform} API (test fixture)",
        raw=raw,
        raw_content_type=raw_content_type,
        raw_sha256=sha256_hex(raw),
        content_sha256=content_sha256({"text": text, "url": url}),
        text_fingerprint=text_fingerprint(text),
        sha256="",
        chain_sha256="",
    )
    evidence.sha256 = record_sha256(
        {
            "seq": evidence.seq,
            "platform": platform,
            "native_id": native_id,
            "version": version,
            "url": evidence.url,
            "author_handle": author_handle,
            "author_id": author_id,
            "posted_at": format_time(posted_at),
            "captured_at": format_time(captured_at),
            "text": text,
            "raw_sha256": evidence.raw_sha256,
        }
    )
    evidence.chain_sha256 = chain_sha256(head.chain_sha256, evidence.sha256)
    head.seq = evidence.seq
    head.chain_sha256 = evidence.chain_sha256
    session.add(evidence)
    session.flush()
    return evidence


def add_violation(
    session: Session,
    case_id: str,
    evidence: Sequence[Evidence],
    *,
    kind: str = "contact",
    severity: str = "high",
    in_order_period: bool = True,
    alerted: bool = False,
    reason: str = "author `jdoe` is the restrained party; replies to `alex_smith`",
) -> Violation:
    first = min(e.captured_at for e in evidence)
    last = max(e.captured_at for e in evidence)
    violation = Violation(
        id=str(uuid.uuid4()),
        case_id=case_id,
        kind=kind,
        severity=severity,
        suspected=kind == "suspected_alt",
        score=92.0 if kind == "suspected_alt" else None,
        reason=reason,
        author_key="jdoe",
        first_seen=first,
        last_seen=last,
        created_at=first,
        in_order_period=in_order_period,
    )
    session.add(violation)
    session.flush()
    for item in evidence:
        session.add(
            ViolationEvidence(violation_id=violation.id, evidence_id=item.id, reason=reason)
        )
    if alerted:
        session.add(
            OutboxAlert(
                dedup_key=f"violation:{violation.id}:phone",
                route="phone",
                category="violation",
                violation_id=violation.id,
                severity=severity,
                created_at=first,
                due_at=first,
                next_attempt_at=first,
                attempts=1,
                state="sent",
                sent_at=first,
            )
        )
    session.flush()
    return violation


@dataclasses.dataclass
class Populated:
    violation_ids: list[str]
    other_case_violation_ids: list[str]
    evidence_seqs: list[int]


_PLATFORMS = ("reddit", "x", "rss")
_KINDS = (("contact", "high"), ("mention", "medium"), ("third_party", "medium"))


def populate(
    sessions: sessionmaker[Session],
    *,
    violations: int = 6,
    other_case_every: int = 3,
    texts: Sequence[str] = (),
    start: datetime = START,
) -> Populated:
    """A case with ``violations`` violations (one or two evidence items each, on
    several platforms and days), interleaved in the chain with another case's evidence.
    ``texts`` replace the first texts (for hostile content)."""
    result = Populated([], [], [])
    with sessions.begin() as session:
        ensure_case(session, case_settings())
        ensure_case(session, case_settings(OTHER_CASE_ID))
        for index in range(violations):
            when = start + timedelta(hours=7 * index)
            platform = _PLATFORMS[index % len(_PLATFORMS)]
            text = texts[index] if index < len(texts) else f"message {index} to Alex Smith"
            items = [
                add_evidence(
                    session,
                    platform=platform,
                    native_id=f"t1_{index:05d}",
                    text=text,
                    captured_at=when,
                    author_created_at=datetime(2026, 3, 2, tzinfo=UTC),
                )
            ]
            if index % 4 == 1:
                # An edit: version 2 of the same item, joined to the same violation.
                items.append(
                    add_evidence(
                        session,
                        platform=platform,
                        native_id=f"t1_{index:05d}",
                        text=text + " (edited)",
                        captured_at=when + timedelta(minutes=3),
                        version=2,
                    )
                )
            kind, severity = _KINDS[index % len(_KINDS)]
            violation = add_violation(
                session,
                CASE_ID,
                items,
                kind=kind,
                severity=severity,
                # The first one happened before the order: kept, flagged.
                in_order_period=index != 0,
                alerted=index % 2 == 0,
            )
            result.violation_ids.append(violation.id)
            result.evidence_seqs.extend(item.seq for item in items)
            if other_case_every and index % other_case_every == 0:
                other = add_evidence(
                    session,
                    platform="x",
                    native_id=f"other_{index}",
                    text="OTHER-CASE-PRIVATE-TEXT not for this packet",
                    captured_at=when + timedelta(minutes=1),
                    author_handle="roe",
                )
                result.other_case_violation_ids.append(
                    add_violation(session, OTHER_CASE_ID, [other]).id
                )
    return result


def evidence_by_seq(session: Session, seq: int) -> Evidence:
    found = session.scalars(select(Evidence).where(Evidence.seq == seq)).one()
    return found


def order_dates() -> tuple[date, date]:
    settings = case_settings()
    assert settings.order.expires is not None
    return settings.order.effective, settings.order.expires


EXPORT_TIME = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def build_packet(tmp_path: Path, *, violations: int = 6, texts: Sequence[str] = ()) -> Path:
    """A populated store exported to ``tmp_path / 'packet'``."""
    from service.export import export_case

    _, sessions = sqlite_sessions(tmp_path)
    populate(sessions, violations=violations, texts=texts)
    out = tmp_path / "packet"
    export_case(sessions, case_settings(), out, now=EXPORT_TIME)
    return out


def _observation(native_id: str, text: str, posted_at: datetime) -> Observation:
    return Observation(
        platform="reddit",
        native_id=native_id,
        kind="reply",
        raw=json.dumps({"id": native_id, "body": text}).encode(),
        watcher="reddit",
        url=f"https://reddit.example/{native_id}",
        author_handle="jdoe",
        author_id="t2_jdoe",
        addressed_to=("alex_smith",),
        text=text,
        posted_at=posted_at,
        capture_method="Reddit API via praw",
    )


def record_through_store(engine: Engine) -> None:
    """Three evidence records (an item, its edit, another item) of ``CASE_ID`` written
    by the real ``Store``, so that verify and export are checked against it."""
    from service.hits import Hit
    from service.store import PollRecord, Store

    case = case_settings()
    store = Store(engine, cases=[case])
    hit = Hit(
        case_id=CASE_ID,
        kind="contact",
        severity="high",
        suspected=False,
        reason="reply by the restrained party",
        author_key="jdoe",
        author_class="restrained",
        target="contact",
        in_order_period=True,
    )
    moment = datetime(2026, 5, 1, 10, 0, 0, 654321, tzinfo=UTC)
    bodies = ["Alex, answer me", "Alex, answer me!", "ünïcödé \u202e <b>x</b>"]
    for index, body in enumerate(bodies):
        obs = _observation("t1_abc" if index < 2 else "t1_def", body, moment)
        store.record_poll(
            PollRecord(
                watcher="reddit",
                watcher_type="reddit",
                observations=[obs],
                hits={0: [hit]},
                state={},
                status_notes=[],
                now=moment + timedelta(minutes=index),
            )
        )
