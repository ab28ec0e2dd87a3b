"""The court-ready evidence packet of one case (``nocontact export``).

Layout of the packet (see docs/evidence.md)::

    report.html  report.pdf  evidence.json  evidence.csv
    raw/<seq>-<platform>-<native id>.<ext>     each raw payload, byte-exact
    MANIFEST.sha256                            ``sha256sum -c`` over every other file

Violations are read a page at a time and written to every output as they come (the
PDF's story is fed lazily), so memory stays bounded for thousands of violations.
Files are created 0600 and directories 0700: the packet holds abusive content and
personal data.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography import x509
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from service import chain, coverage
from service.deletions import case_deletions, case_notes
from service.evidence import CANONICAL_FIELDS, GENESIS_CHAIN, chain_sha256, format_time
from service.export_check import Verification, verify_before_export
from service.models import Evidence, OutboxAlert, Violation, ViolationEvidence
from service.packet_timestamps import FOLDER as TIMESTAMPS_FOLDER
from service.packet_timestamps import write_timestamps
from service.report import (
    CoverInfo,
    EvidenceItem,
    HtmlReport,
    PdfReport,
    Summary,
    ViolationEntry,
)
from service.report_judge import build_log
from service.report_sections import PacketFacts
from service.settings import CaseSettings
from service.timestamping import link_at

PACKET_FORMAT = "nocontact-evidence-packet/1"
PACKET_FILES = ("report.html", "report.pdf", "evidence.json", "evidence.csv", "MANIFEST.sha256")
CHAIN_ALGORITHM = (
    "sha256 = SHA-256(canonical JSON of the canonical fields); "
    "chain_sha256 = SHA-256(ASCII(previous chain_sha256 hex + sha256 hex)); "
    "the link before seq 1 is the genesis value"
)
VIOLATION_PAGE = 100
LINK_PAGE = 2000

Progress = Callable[[int, int], None]


class ExportError(Exception):
    """The packet cannot be written; the message is one line for the user."""


@dataclasses.dataclass(frozen=True, slots=True)
class ExportResult:
    out_dir: Path
    violations: int
    evidence: int
    files: tuple[str, ...]  # relative paths covered by the manifest
    last_seq: int  # the chain in evidence.json runs from seq 1 to here
    # False when the stored chain links do not follow from each other: the packet is
    # still written (it is what the store holds), but ``nocontact verify`` will fail.
    chain_links_ok: bool

    def summary_line(self) -> str:
        line = (
            f"{self.violations} violations, {self.evidence} evidence items, "
            f"{len(self.files) + 1} files in {self.out_dir} (check: cd {self.out_dir} && "
            "sha256sum -c MANIFEST.sha256)"
        )
        if not self.chain_links_ok:
            line += "; WARNING: the stored chain is broken, run nocontact verify"
        return line


# --------------------------------------------------------------------------- files


def _open_private(path: Path) -> IO[bytes]:
    """A new file, 0600 whatever the umask, never following a planted symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def _open_private_text(path: Path) -> IO[str]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def _prepare_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise ExportError(
                f"{out_dir} is not empty; choose a new directory or use --force to "
                "replace the packet in it"
            )
        _remove_old_packet(out_dir)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    out_dir.chmod(0o700)
    (out_dir / "raw").mkdir(mode=0o700)
    (out_dir / "raw").chmod(0o700)


def _remove_old_packet(out_dir: Path) -> None:
    """--force replaces the packet's own files; anything else in the folder stays."""
    for name in PACKET_FILES:
        path = out_dir / name
        if path.is_dir() and not path.is_symlink():
            raise ExportError(f"{path} is a directory; remove it or choose another --out")
        path.unlink(missing_ok=True)
    for folder in ("raw", TIMESTAMPS_FOLDER):
        raw = out_dir / folder
        if raw.is_symlink() or raw.is_file():
            raw.unlink()
        elif raw.is_dir():
            shutil.rmtree(raw)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = {
    "application/json": "json",
    "application/xml": "xml",
    "text/xml": "xml",
    "application/rss+xml": "xml",
    "application/atom+xml": "xml",
    "message/rfc822": "eml",
    "text/html": "html",
    "text/plain": "txt",
}


def raw_file_name(seq: int, platform: str, native_id: str, content_type: str) -> str:
    """``raw/<seq>-<platform>-<native id>.<ext>``: seq makes it unique, the rest only
    helps a reader, so unsafe characters are replaced and the name is kept short."""
    safe_platform = _UNSAFE.sub("_", platform).strip("._")[:30] or "item"
    safe_id = _UNSAFE.sub("_", native_id).strip("._")[:80] or "item"
    base_type = content_type.split(";", 1)[0].strip().lower()
    ext = _EXTENSIONS.get(base_type, "bin")
    return f"raw/{seq}-{safe_platform}-{safe_id}.{ext}"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(out_dir: Path, files: Sequence[str]) -> None:
    lines = [f"{_sha256_file(out_dir / name)}  {name}\n" for name in sorted(files)]
    with _open_private(out_dir / "MANIFEST.sha256") as handle:
        handle.write("".join(lines).encode("utf-8"))


# --------------------------------------------------------------------------- reading


def _cover(case: CaseSettings, exported_at: datetime) -> CoverInfo:
    def party(
        names: list[str], aliases: list[str], handles: dict[str, list[str]]
    ) -> list[tuple[str, str]]:
        lines = [("Names", ", ".join(names) or "—")]
        if aliases:
            lines.append(("Aliases", ", ".join(aliases)))
        lines.extend(
            (f"Handles on {platform}", ", ".join(values))
            for platform, values in sorted(handles.items())
        )
        return lines

    restrained = party(case.restrained.names, case.restrained.aliases, case.restrained.handles)
    restrained.extend(
        (f"Associates on {platform}", ", ".join(values))
        for platform, values in sorted(case.restrained.associates.items())
    )
    return CoverInfo(
        case_id=case.id,
        reference=case.order.reference,
        effective=case.order.effective,
        expires=case.order.expires,
        terms=tuple(case.order.terms),
        protected=tuple(
            party(case.protected.names, case.protected.aliases, case.protected.handles)
        ),
        restrained=tuple(restrained),
        timezone=case.timezone,
        exported_at=exported_at,
    )


def _summary(session: Session, case_id: str, zone: ZoneInfo) -> Summary:
    """Counts and the per-day chart data, from light columns streamed once."""
    query = (
        select(
            Violation.id,
            Violation.kind,
            Violation.severity,
            Violation.in_order_period,
            Violation.first_seen,
            Evidence.platform,
        )
        .outerjoin(ViolationEvidence, ViolationEvidence.violation_id == Violation.id)
        .outerjoin(Evidence, Evidence.id == ViolationEvidence.evidence_id)
        .where(Violation.case_id == case_id)
        .order_by(Violation.id, Evidence.seq)
        .execution_options(yield_per=1000)
    )
    summary = Summary()
    previous: str | None = None
    for vid, kind, severity, in_period, first_seen, platform in session.execute(query):
        if vid == previous:
            continue  # only the first evidence item's platform counts
        previous = vid
        day = first_seen.astimezone(zone).date()
        summary.add(kind, severity, platform or "unknown", day, in_period)
    return summary


_EVIDENCE_COLUMNS = (
    Evidence.id,
    Evidence.seq,
    Evidence.platform,
    Evidence.native_id,
    Evidence.version,
    Evidence.kind,
    Evidence.url,
    Evidence.author_handle,
    Evidence.author_id,
    Evidence.author_display_name,
    Evidence.author_created_at,
    Evidence.posted_at,
    Evidence.captured_at,
    Evidence.watcher,
    Evidence.capture_method,
    Evidence.text,
    Evidence.raw,
    Evidence.raw_content_type,
    Evidence.raw_sha256,
    Evidence.sha256,
    Evidence.chain_sha256,
)


def _evidence_item(row: Any) -> EvidenceItem:
    return EvidenceItem(
        evidence_id=row.id,
        seq=row.seq,
        platform=row.platform,
        native_id=row.native_id,
        version=row.version,
        kind=row.kind,
        url=row.url,
        author_handle=row.author_handle,
        author_id=row.author_id,
        author_display_name=row.author_display_name,
        author_created_at=row.author_created_at,
        posted_at=row.posted_at,
        captured_at=row.captured_at,
        watcher=row.watcher,
        capture_method=row.capture_method,
        text=row.text,
        raw=row.raw,
        raw_content_type=row.raw_content_type,
        raw_sha256=row.raw_sha256,
        sha256=row.sha256,
        chain_sha256=row.chain_sha256,
        reason=row.link_reason,
        raw_file=raw_file_name(row.seq, row.platform, row.native_id, row.raw_content_type),
    )


def iter_violations(session: Session, case_id: str) -> Iterator[ViolationEntry]:
    """The case's violations in timeline order, with their evidence in seq order.
    Keyset pagination: no cursor stays open and one page is in memory at a time."""
    alerted = (
        exists()
        .where(OutboxAlert.violation_id == Violation.id, OutboxAlert.state == "sent")
        .label("alerted")
    )
    base = (
        select(Violation, alerted)
        .where(Violation.case_id == case_id)
        .order_by(Violation.first_seen, Violation.id)
        .limit(VIOLATION_PAGE)
    )
    after: tuple[datetime, str] | None = None
    while True:
        query = base
        if after is not None:
            query = query.where(
                or_(
                    Violation.first_seen > after[0],
                    and_(Violation.first_seen == after[0], Violation.id > after[1]),
                )
            )
        page = session.execute(query).all()
        if not page:
            return
        evidence = _evidence_for(session, [violation.id for violation, _ in page])
        for violation, was_alerted in page:
            yield ViolationEntry(
                id=violation.id,
                case_id=violation.case_id,
                kind=violation.kind,
                severity=violation.severity,
                suspected=violation.suspected,
                score=violation.score,
                reason=violation.reason,
                first_seen=violation.first_seen,
                last_seen=violation.last_seen,
                in_order_period=violation.in_order_period,
                alerted=bool(was_alerted),
                evidence=tuple(evidence.get(violation.id, ())),
            )
        last = page[-1][0]
        after = (last.first_seen, last.id)
        # Drop the page's ORM objects so that memory does not grow with the case.
        session.expunge_all()


def _evidence_for(session: Session, violation_ids: list[str]) -> dict[str, list[EvidenceItem]]:
    query = (
        select(
            ViolationEvidence.violation_id,
            ViolationEvidence.reason.label("link_reason"),
            *_EVIDENCE_COLUMNS,
        )
        .join(Evidence, Evidence.id == ViolationEvidence.evidence_id)
        .where(ViolationEvidence.violation_id.in_(violation_ids))
        .order_by(Evidence.seq)
    )
    grouped: dict[str, list[EvidenceItem]] = {}
    for row in session.execute(query):
        grouped.setdefault(row.violation_id, []).append(_evidence_item(row))
    return grouped


def _last_case_seq(session: Session, case_id: str) -> int:
    query = (
        select(func.max(Evidence.seq))
        .join(ViolationEvidence, ViolationEvidence.evidence_id == Evidence.id)
        .join(Violation, Violation.id == ViolationEvidence.violation_id)
        .where(Violation.case_id == case_id)
    )
    return session.scalar(query) or 0


# --------------------------------------------------------------------------- writers


def _json_evidence(item: EvidenceItem) -> dict[str, Any]:
    return {
        # The timeline contract's fields (DESIGN.md)…
        "platform": item.platform,
        "native_id": item.native_id,
        "url": item.url,
        "author": item.author_handle,
        "kind": item.kind,
        "posted_at": format_time(item.posted_at),
        "captured_at": format_time(item.captured_at),
        "sha256": item.sha256,
        "text": item.text,
        "version": item.version,
        # …and what a third party needs to recompute the hashes (docs/evidence.md).
        "seq": item.seq,
        "author_handle": item.author_handle,
        "author_id": item.author_id,
        "author_display_name": item.author_display_name,
        "author_created_at": format_time(item.author_created_at),
        "raw_sha256": item.raw_sha256,
        "chain_sha256": item.chain_sha256,
        "raw_file": item.raw_file,
        "raw_content_type": item.raw_content_type,
        "raw_size": len(item.raw),
        "capture_method": item.capture_method,
        "watcher": item.watcher,
        "reason": item.reason,
    }


def _json_violation(entry: ViolationEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "case": entry.case_id,
        "kind": entry.kind,
        "severity": entry.severity,
        "suspected": entry.suspected,
        "score": entry.score,
        "reason": entry.reason,
        "first_seen": format_time(entry.first_seen),
        "last_seen": format_time(entry.last_seen),
        "alerted": entry.alerted,
        "in_order_period": entry.in_order_period,
        "evidence": [_json_evidence(item) for item in entry.evidence],
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=False)


class _JsonWriter:
    def __init__(
        self,
        out: IO[str],
        case: CaseSettings,
        exported_at: datetime,
        verification: dict[str, object] | None = None,
        gone: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
    ) -> None:
        self.gone = gone or {}
        self.out = out
        self.first = True
        header = {
            "format": PACKET_FORMAT,
            "exported_at": format_time(exported_at),
            "case": {
                "id": case.id,
                "reference": case.order.reference,
                "effective": case.order.effective.isoformat(),
                "expires": case.order.expires.isoformat() if case.order.expires else None,
                "terms": list(case.order.terms),
                "timezone": case.timezone,
                "protected": case.protected.model_dump(mode="json"),
                "restrained": case.restrained.model_dump(mode="json"),
            },
            "verification": verification,
        }
        self.out.write(_dumps(header)[:-1] + ',\n"violations": [\n')

    def add(self, entry: ViolationEntry) -> None:
        violation = _json_violation(entry)
        for item in violation["evidence"]:  # the timeline contract's deletion keys
            fact = self.gone.get((item["platform"], item["native_id"]), {})
            item["deleted_at"] = fact.get("deleted_at")
            item["deleted_between"] = fact.get("deleted_between")
        self.out.write(("" if self.first else ",\n") + _dumps(violation))
        self.first = False

    def finish(
        self,
        links: Iterator[tuple[int, str, str]],
        last_seq: int,
        records: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Write the chain section; return whether each link follows from the last."""
        chain = {
            "algorithm": CHAIN_ALGORITHM,
            "canonical_fields": list(CANONICAL_FIELDS),
            "genesis": GENESIS_CHAIN,
            "first_seq": 1,
            "last_seq": last_seq,
            # Chain records other than evidence that the packet carries (timestamps).
            "records": list(records),
        }
        self.out.write('\n],\n"chain": ' + _dumps(chain)[:-1] + ',\n"links": [\n')
        previous, expected_seq, intact = GENESIS_CHAIN, 1, True
        for seq, sha, link in links:
            intact = intact and seq == expected_seq and chain_sha256(previous, sha) == link
            separator = "" if expected_seq == 1 else ",\n"
            self.out.write(separator + _dumps({"seq": seq, "sha256": sha, "chain_sha256": link}))
            previous, expected_seq = link, seq + 1
        self.out.write("\n]}}\n")
        return intact and expected_seq == last_seq + 1


_CSV_COLUMNS = (
    "violation_id", "violation_kind", "severity", "suspected", "score", "in_order_period",
    "alerted", "violation_reason", "first_seen", "last_seen", "seq", "platform", "native_id",
    "version", "kind", "url", "author_handle", "author_id", "author_display_name",
    "author_created_at", "posted_at", "captured_at", "capture_method", "watcher",
    "evidence_reason", "text", "sha256", "chain_sha256", "raw_sha256", "raw_file",
)  # fmt: skip
# A spreadsheet runs a cell starting with these as a formula ("CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str | None) -> str:
    """Platform text for a CSV cell; a leading quote keeps spreadsheets from running it
    (evidence.json holds the exact text)."""
    if value is None:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


class _CsvWriter:
    def __init__(self, out: IO[str]) -> None:
        self.writer = csv.writer(out)
        self.writer.writerow(_CSV_COLUMNS)

    def add(self, entry: ViolationEntry) -> None:
        for item in entry.evidence:
            self.writer.writerow(
                (
                    entry.id, entry.kind, entry.severity, entry.suspected,
                    "" if entry.score is None else entry.score, entry.in_order_period,
                    entry.alerted, _cell(entry.reason), format_time(entry.first_seen),
                    format_time(entry.last_seen), item.seq, _cell(item.platform),
                    _cell(item.native_id), item.version, item.kind, _cell(item.url),
                    _cell(item.author_handle), _cell(item.author_id),
                    _cell(item.author_display_name), format_time(item.author_created_at) or "",
                    format_time(item.posted_at) or "", format_time(item.captured_at),
                    _cell(item.capture_method), _cell(item.watcher), _cell(item.reason),
                    _cell(item.text), item.sha256, item.chain_sha256, item.raw_sha256,
                    item.raw_file,
                )
            )  # fmt: skip


class _RawWriter:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.written: list[str] = []
        self._seen: set[int] = set()

    def add(self, entry: ViolationEntry) -> None:
        for item in entry.evidence:
            if item.seq in self._seen:
                continue  # one item can belong to several violations of a case
            self._seen.add(item.seq)
            with _open_private(self.out_dir / item.raw_file) as handle:
                handle.write(item.raw)
            self.written.append(item.raw_file)


# --------------------------------------------------------------------------- export


def _zone(case: CaseSettings) -> ZoneInfo:
    try:
        return ZoneInfo(case.timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ExportError(
            f"case {case.id}: unknown time zone {case.timezone!r} (use an IANA name like "
            "Europe/Berlin)"
        ) from err


def export_case(
    sessions: sessionmaker[Session],
    case: CaseSettings,
    out_dir: Path,
    *,
    force: bool = False,
    now: datetime,
    progress: Progress | None = None,
    allow_broken: bool = False,
    timestamp_roots: Sequence[x509.Certificate] = (),
) -> ExportResult:
    """Write the evidence packet of ``case`` into ``out_dir``; a store that fails
    verification is refused (``BrokenStoreError``) unless ``allow_broken``."""
    zone = _zone(case)
    verification = verify_before_export(
        sessions, case.id, allow_broken=allow_broken, tsa_roots=timestamp_roots
    )
    try:
        _prepare_dir(out_dir, force)
        return _write_packet(
            sessions, case, out_dir, zone, now, progress, verification, timestamp_roots
        )
    except OSError as err:
        target = err.filename or out_dir
        raise ExportError(f"cannot write the packet at {target}: {err.strerror}") from err


def _write_packet(
    sessions: sessionmaker[Session],
    case: CaseSettings,
    out_dir: Path,
    zone: ZoneInfo,
    now: datetime,
    progress: Progress | None,
    verification: Verification,
    roots: Sequence[x509.Certificate],
) -> ExportResult:
    with sessions() as session:
        stamps = write_timestamps(session, case.id, out_dir, roots, _open_private)
        periods = tuple(coverage.periods_for_case(session, case.id))
        covered = [chain.json_record(row) for row in coverage.case_records(session, case.id)]
        records = sorted([*stamps.records, *covered], key=lambda record: int(record["seq"]))
        last_seq = max(
            _last_case_seq(session, case.id), stamps.last_seq, *(r["seq"] for r in covered)
        )
        head = (last_seq, link_at(session, last_seq) or "") if last_seq else None
        facts = PacketFacts(verification, tuple(stamps.tokens), stamps.notes, periods,
                            case_notes(session, case.id), build_log(session, case.id, zone),
                            head)  # fmt: skip
        cover = dataclasses.replace(_cover(case, now), facts=facts)
        summary = _summary(session, case.id, zone)
        summary.gap_days = coverage.gap_days(periods, zone)
        with (
            _open_private_text(out_dir / "report.html") as html_out,
            _open_private_text(out_dir / "evidence.json") as json_out,
            _open_private_text(out_dir / "evidence.csv") as csv_out,
            _open_private(out_dir / "report.pdf") as pdf_out,
        ):
            html_report = HtmlReport(html_out, cover, summary)
            json_writer = _JsonWriter(
                json_out, case, now, verification.as_json(), case_deletions(session, case.id)
            )
            csv_writer = _CsvWriter(csv_out)
            raw_writer = _RawWriter(out_dir)
            counts = {"violations": 0, "evidence": 0}

            def fan_out() -> Iterator[ViolationEntry]:
                # One pass over the store feeds every output; the PDF pulls the pace.
                for entry in iter_violations(session, case.id):
                    html_report.add(entry)
                    json_writer.add(entry)
                    csv_writer.add(entry)
                    raw_writer.add(entry)
                    counts["violations"] += 1
                    counts["evidence"] += len(entry.evidence)
                    if progress is not None:
                        progress(counts["violations"], summary.total)
                    yield entry

            html_report.begin()

            def appendix() -> Iterator[ViolationEntry]:
                return (e for e in iter_violations(session, case.id) if not e.in_order_period)

            PdfReport(cover, summary).build(pdf_out, fan_out(), appendix)
            html_report.end(appendix())
            links_ok = json_writer.finish(chain.iter_links(session, last_seq), last_seq, records)
    files = [*PACKET_FILES[:-1], *raw_writer.written, *stamps.files]
    _write_manifest(out_dir, files)
    return ExportResult(
        out_dir=out_dir,
        violations=counts["violations"],
        evidence=counts["evidence"],
        files=tuple(sorted(files)),
        last_seq=last_seq,
        chain_links_ok=links_ok,
    )
