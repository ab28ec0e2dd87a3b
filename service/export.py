"""The court-ready evidence packet of one case (``nocontact export``).

Layout of the packet (see docs/evidence.md)::

    report.html  report.pdf  evidence.json  evidence.csv
    raw/<seq>-<platform>-<native id>.<ext>     each raw payload, byte-exact
    raw/<seq>-….provenance.json                what was checked at capture (e-mail DKIM)
    MANIFEST.sha256                            ``sha256sum -c`` over every other file

Violations are read a page at a time and written to every output as they come (the
PDF's story is fed lazily), so memory stays bounded for thousands of violations.
Files are created 0600 and directories 0700: the packet holds abusive content and
personal data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service import chain, coverage
from service.access_log import ACCESS_LOG_FILE, write_access_log
from service.deletions import case_notes
from service.evidence import CANONICAL_FIELDS, GENESIS_CHAIN, chain_sha256, format_time
from service.export_check import Verification, verify_before_export
from service.marks import Dismissal, dismissals
from service.models import Evidence, Violation, ViolationEvidence
from service.packet_timestamps import FOLDER as TIMESTAMPS_FOLDER
from service.packet_timestamps import write_timestamps
from service.report import CoverInfo, HtmlReport, PdfReport, Summary, provenance_file_name
from service.report_judge import build_log
from service.report_sections import PacketFacts
from service.settings import CaseSettings
from service.timeline import (
    PACKET_CSV,
    CsvTable,
    EvidenceItem,
    ViolationEntry,
    iter_entries,
)
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
    for name in (*PACKET_FILES, ACCESS_LOG_FILE):
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
        zone=case.timezone,
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


def _case_dismissals(session: Session, case_id: str) -> dict[str, Dismissal]:
    marks = dismissals(session)
    if not marks:
        return {}
    ours = set(
        session.scalars(
            select(Violation.id).where(Violation.case_id == case_id, Violation.id.in_(list(marks)))
        )
    )
    return {vid: mark for vid, mark in marks.items() if vid in ours}


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
        "deleted_at": item.deleted_at,
        "deleted_between": list(item.deleted_between) if item.deleted_between else None,
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
        "raw_size": len(item.raw or b""),
        "capture_method": item.capture_method,
        "watcher": item.watcher,
        "reason": item.reason,
        # Checked at capture (an e-mail's DKIM verdicts and the key records used).
        "provenance": item.provenance,
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
        dismissed: Mapping[str, Dismissal],
        verification: dict[str, object] | None = None,
    ) -> None:
        self.out = out
        self.dismissed = dismissed
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
                "timezone": case.timezone.key,
                "protected": case.protected.model_dump(mode="json"),
                "restrained": case.restrained.model_dump(mode="json"),
            },
            "verification": verification,
        }
        self.out.write(_dumps(header)[:-1] + ',\n"violations": [\n')

    def add(self, entry: ViolationEntry) -> None:
        row = _json_violation(entry)
        mark = self.dismissed.get(entry.id)
        row["dismissed"] = mark.to_json() if mark is not None else None
        self.out.write(("" if self.first else ",\n") + _dumps(row))
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
                handle.write(item.raw or b"")
            self.written.append(item.raw_file)
            if item.provenance:
                # An e-mail's DKIM record beside its .eml: re-checkable with the key used.
                name = provenance_file_name(item.raw_file)
                with _open_private(self.out_dir / name) as handle:
                    handle.write(json.dumps(item.provenance, indent=2).encode("utf-8") + b"\n")
                self.written.append(name)


# --------------------------------------------------------------------------- export


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
    verification = verify_before_export(
        sessions, case.id, allow_broken=allow_broken, tsa_roots=timestamp_roots
    )
    try:
        _prepare_dir(out_dir, force)
        return _write_packet(sessions, case, out_dir, now, progress, verification, timestamp_roots)
    except OSError as err:
        target = err.filename or out_dir
        raise ExportError(f"cannot write the packet at {target}: {err.strerror}") from err


@dataclasses.dataclass(slots=True)
class _Packet:
    """What the packet's files are written from: gathered once, before the single pass
    over the case's violations."""

    cover: CoverInfo
    summary: Summary
    records: list[dict[str, Any]]
    last_seq: int
    stamp_files: list[str]


def _gather(
    session: Session,
    case: CaseSettings,
    out_dir: Path,
    now: datetime,
    verification: Verification,
    roots: Sequence[x509.Certificate],
) -> _Packet:
    zone = case.timezone
    stamps = write_timestamps(session, case.id, out_dir, roots, _open_private)
    periods = tuple(coverage.periods_for_case(session, case.id))
    covered = [chain.json_record(row) for row in coverage.case_records(session, case.id)]
    records = sorted([*stamps.records, *covered], key=lambda record: int(record["seq"]))
    dismissed = _case_dismissals(session, case.id)
    # The chain in the packet reaches the newest timestamp, coverage and dismissal
    # record too.
    last_seq = max(
        _last_case_seq(session, case.id),
        stamps.last_seq,
        *(r["seq"] for r in covered),
        *(d.seq for d in dismissed.values()),
    )
    head = (last_seq, link_at(session, last_seq) or "") if last_seq else None
    facts = PacketFacts(verification, tuple(stamps.tokens), stamps.notes, periods,
                        case_notes(session, case.id), build_log(session, case.id, zone),
                        head)  # fmt: skip
    summary = _summary(session, case.id, zone)
    summary.dismissed = dismissed
    summary.gap_days = coverage.gap_days(periods, zone)
    cover = dataclasses.replace(_cover(case, now), facts=facts)
    return _Packet(cover, summary, records, last_seq, list(stamps.files))


def _write_packet(
    sessions: sessionmaker[Session],
    case: CaseSettings,
    out_dir: Path,
    now: datetime,
    progress: Progress | None,
    verification: Verification,
    roots: Sequence[x509.Certificate],
) -> ExportResult:
    with sessions() as session:
        packet = _gather(session, case, out_dir, now, verification, roots)
        counts, written, links_ok = _write_files(
            session, case, out_dir, now, packet, verification, progress
        )
        # Who viewed the evidence through the web view (#17), when anyone did.
        logged = write_access_log(session, case.id, out_dir / ACCESS_LOG_FILE, _open_private_text)
    files = [
        *PACKET_FILES[:-1],
        *written,
        *packet.stamp_files,
        *([ACCESS_LOG_FILE] if logged else []),
    ]
    _write_manifest(out_dir, files)
    return ExportResult(
        out_dir=out_dir,
        violations=counts["violations"],
        evidence=counts["evidence"],
        files=tuple(sorted(files)),
        last_seq=packet.last_seq,
        chain_links_ok=links_ok,
    )


def _write_files(
    session: Session,
    case: CaseSettings,
    out_dir: Path,
    now: datetime,
    packet: _Packet,
    verification: Verification,
    progress: Progress | None,
) -> tuple[dict[str, int], list[str], bool]:
    """One pass over the store feeds every output; the PDF pulls the pace."""
    cover, summary = packet.cover, packet.summary
    with (
        _open_private_text(out_dir / "report.html") as html_out,
        _open_private_text(out_dir / "evidence.json") as json_out,
        _open_private_text(out_dir / "evidence.csv") as csv_out,
        _open_private(out_dir / "report.pdf") as pdf_out,
    ):
        html_report = HtmlReport(html_out, cover, summary)
        json_writer = _JsonWriter(json_out, case, now, summary.dismissed, verification.as_json())
        csv_writer = CsvTable(csv_out, PACKET_CSV)
        raw_writer = _RawWriter(out_dir)
        counts = {"violations": 0, "evidence": 0}

        def fan_out() -> Iterator[ViolationEntry]:
            for entry in iter_entries(
                session, case_id=case.id, include_outside=True, with_raw=True,
                page_size=VIOLATION_PAGE,
            ):  # fmt: skip
                for output in (html_report, json_writer, csv_writer, raw_writer):
                    output.add(entry)
                counts["violations"] += 1
                counts["evidence"] += len(entry.evidence)
                if progress is not None:
                    progress(counts["violations"], summary.total)
                yield entry

        def appendix() -> Iterator[ViolationEntry]:
            entries = iter_entries(
                session, case_id=case.id, include_outside=True, page_size=VIOLATION_PAGE
            )
            return (e for e in entries if not e.in_order_period)

        html_report.begin()
        PdfReport(cover, summary).build(pdf_out, fan_out(), appendix, scratch=out_dir)
        html_report.end(appendix())
        links = chain.iter_links(session, packet.last_seq)
        links_ok = json_writer.finish(links, packet.last_seq, packet.records)
    return counts, raw_writer.written, links_ok
