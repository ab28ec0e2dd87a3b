"""export_case: the packet's files, manifest, modes, hostile text, PDF and progress."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.export import ExportError, ExportResult, export_case
from service.export_check import BrokenStoreError
from service.models import Evidence
from service.report import CHART_TITLE
from tests.fakes.evidence_data import (
    CASE_ID,
    EXPORT_TIME,
    HOSTILE_IMG,
    HOSTILE_RTL,
    HOSTILE_SCRIPT,
    Populated,
    case_settings,
    populate,
    sqlite_sessions,
)

LONG_POST = ("Alex " + "x" * 300 + "\n") * 330 + "END-OF-LONG-POST"  # ~100 kB
FORMULA = '=HYPERLINK("http://evil.example","click")'
TEXTS = ["before the order", HOSTILE_SCRIPT, HOSTILE_IMG, HOSTILE_RTL, LONG_POST, FORMULA]


@pytest.fixture
def store(tmp_path: Path) -> tuple[sessionmaker[Session], Populated]:
    _, sessions = sqlite_sessions(tmp_path)
    return sessions, populate(sessions, violations=8, texts=TEXTS)


@pytest.fixture
def exported(
    store: tuple[sessionmaker[Session], Populated], tmp_path: Path
) -> tuple[Path, ExportResult, Populated]:
    sessions, populated = store
    out = tmp_path / "packet"
    result = export_case(sessions, case_settings(), out, now=EXPORT_TIME)
    return out, result, populated


def _sha256sum(packet: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sha256sum", "-c", "MANIFEST.sha256"],  # noqa: S607 (coreutils)
        cwd=packet,
        capture_output=True,
        text=True,
        check=False,
    )


def _packet_files(packet: Path) -> list[str]:
    return sorted(str(path.relative_to(packet)) for path in packet.rglob("*") if path.is_file())


def test_manifest_covers_every_file_and_catches_any_changed_byte(
    exported: tuple[Path, ExportResult, Populated],
) -> None:
    packet, result, _ = exported
    listed = sorted(
        line.split("  ", 1)[1] for line in (packet / "MANIFEST.sha256").read_text().splitlines()
    )
    assert listed == sorted(set(_packet_files(packet)) - {"MANIFEST.sha256"})
    assert listed == list(result.files)
    first = _sha256sum(packet)
    assert first.returncode == 0, first.stdout + first.stderr

    for name in listed:
        path = packet / name
        original = path.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        path.write_bytes(bytes(flipped))
        check = _sha256sum(packet)
        assert check.returncode != 0, name
        assert f"{name}: FAILED" in check.stdout
        path.write_bytes(original)
    assert _sha256sum(packet).returncode == 0


def test_files_are_0600_and_directories_0700(
    exported: tuple[Path, ExportResult, Populated],
) -> None:
    packet, _, _ = exported
    assert stat.S_IMODE(packet.stat().st_mode) == 0o700
    paths = list(packet.rglob("*"))
    assert any(p.is_dir() for p in paths)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_modes_hold_under_a_permissive_umask(
    store: tuple[sessionmaker[Session], Populated], tmp_path: Path
) -> None:
    sessions, _ = store
    previous = os.umask(0)
    try:
        export_case(sessions, case_settings(), tmp_path / "p", now=EXPORT_TIME)
    finally:
        os.umask(previous)
    for path in [tmp_path / "p", *(tmp_path / "p").rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) in (0o600, 0o700), path


def test_refuses_a_non_empty_directory_unless_forced(
    store: tuple[sessionmaker[Session], Populated], tmp_path: Path
) -> None:
    sessions, _ = store
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"is not empty; .*--force") as caught:
        export_case(sessions, case_settings(), out, now=EXPORT_TIME)
    assert "\n" not in str(caught.value)
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "report.html").exists()

    export_case(sessions, case_settings(), out, now=EXPORT_TIME, force=True)
    assert _sha256sum(out).returncode == 0
    assert (out / "notes.txt").read_text() == "mine"

    # Forcing over an older packet replaces it: no stale raw file survives.
    (out / "raw" / "999-stale-item.json").write_bytes(b"{}")
    export_case(sessions, case_settings(), out, now=EXPORT_TIME, force=True)
    assert not (out / "raw" / "999-stale-item.json").exists()
    assert _sha256sum(out).returncode == 0


def test_an_empty_existing_directory_is_used(
    store: tuple[sessionmaker[Session], Populated], tmp_path: Path
) -> None:
    sessions, _ = store
    out = tmp_path / "empty"
    out.mkdir(mode=0o755)
    export_case(sessions, case_settings(), out, now=EXPORT_TIME)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert (out / "MANIFEST.sha256").is_file()


def test_raw_payloads_are_byte_exact(
    exported: tuple[Path, ExportResult, Populated],
    store: tuple[sessionmaker[Session], Populated],
) -> None:
    packet, _, _ = exported
    sessions, _ = store
    data = json.loads((packet / "evidence.json").read_text(encoding="utf-8"))
    with sessions() as session:
        for violation in data["violations"]:
            for item in violation["evidence"]:
                stored = session.scalars(select(Evidence).where(Evidence.seq == item["seq"]))
                assert (packet / item["raw_file"]).read_bytes() == stored.one().raw


def test_evidence_json_is_the_timeline_with_hashes(
    exported: tuple[Path, ExportResult, Populated],
) -> None:
    packet, result, populated = exported
    data = json.loads((packet / "evidence.json").read_text(encoding="utf-8"))
    assert data["case"]["id"] == CASE_ID
    assert data["case"]["reference"] == "PO-2026-1234"
    violations = data["violations"]
    assert [v["id"] for v in violations] == populated.violation_ids
    assert [v["first_seen"] for v in violations] == sorted(v["first_seen"] for v in violations)
    assert violations[0]["in_order_period"] is False
    assert all(v["in_order_period"] for v in violations[1:])
    assert [v["alerted"] for v in violations] == [i % 2 == 0 for i in range(8)]
    edited = violations[1]["evidence"]
    assert [e["version"] for e in edited] == [1, 2]
    assert edited[1]["text"] == HOSTILE_SCRIPT + " (edited)"
    for item in (e for v in violations for e in v["evidence"]):
        for key in ("seq", "sha256", "chain_sha256", "raw_sha256", "author_id", "raw_file"):
            assert item[key] is not None
        assert item["captured_at"].endswith("Z")
    assert violations[4]["evidence"][0]["text"] == LONG_POST
    assert data["chain"]["last_seq"] == result.last_seq
    assert result.chain_links_ok
    assert result.violations == 8
    assert result.evidence == sum(len(v["evidence"]) for v in violations)


def test_other_cases_evidence_is_not_disclosed(
    exported: tuple[Path, ExportResult, Populated],
) -> None:
    packet, _, populated = exported
    assert populated.other_case_violation_ids
    for name in _packet_files(packet):
        content = (packet / name).read_bytes()
        assert b"OTHER-CASE-PRIVATE-TEXT" not in content, name
        for other in populated.other_case_violation_ids:
            assert other.encode() not in content, name


def test_csv_has_one_row_per_evidence_item_and_defuses_formulas(
    exported: tuple[Path, ExportResult, Populated],
) -> None:
    packet, result, populated = exported
    with (packet / "evidence.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == result.evidence
    assert {row["violation_id"] for row in rows} == set(populated.violation_ids)
    texts = [row["text"] for row in rows]
    assert "'" + FORMULA in texts
    assert not any(text.startswith("=") for text in texts)
    assert LONG_POST in texts


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_and_hostile_text_is_inert(
    exported: tuple[Path, ExportResult, Populated],
) -> None:
    packet, _, populated = exported
    source = (packet / "report.html").read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(source)
    text = "".join(parser.text)

    for forbidden in ("script", "img", "iframe", "object", "embed", "link", "form", "a"):
        assert forbidden not in parser.tags, forbidden
    assert not [name for name, _ in parser.attributes if name.startswith("on")]
    assert not [value for name, value in parser.attributes if name in ("src", "href")]
    assert "svg" in parser.tags
    assert CHART_TITLE in text
    assert "per day, from 2026-05-01 to 2026-05-03, days in Europe/Berlin" in text
    assert "Content-Security-Policy" in source

    # The hostile texts are shown as text, literally…
    assert HOSTILE_SCRIPT in text
    assert HOSTILE_IMG in text
    assert LONG_POST.replace("\n", "") in text.replace("\n", "")
    # …and the bidi controls are never emitted, only their visible marks.
    for control in ("\u202e", "\u2066", "\u2069"):
        assert control not in source
    assert "⟨U+202E⟩gpj.exe" in text
    for violation_id in populated.violation_ids:
        assert violation_id in text
    assert "Outside the order period" in text


def test_pdf_has_the_chart_every_violation_and_legible_hostile_text(
    exported: tuple[Path, ExportResult, Populated],
) -> None:
    packet, _, populated = exported
    reader = PdfReader(packet / "report.pdf")
    text = "\n".join(page.extract_text() for page in reader.pages)
    flat = text.replace("\n", "")
    assert CHART_TITLE in text
    assert "PO-2026-1234" in text
    for violation_id in populated.violation_ids:
        assert violation_id in flat
    assert "Account handle: jdoe" in text
    assert "<script>alert(1)</script> hi" in text
    assert '<img src=x onerror="alert(2)"> look' in text
    assert "⟨U+202E⟩gpj.exe" in text
    assert "\u202e" not in text
    assert "END-OF-LONG-POST" in flat
    assert flat.count("x" * 40) >= 330  # the long post is there in full, wrapped
    # Local times in the case's zone are shown beside UTC.
    assert "CEST (UTC+0200)" in text


def test_pdf_first_page_renders(exported: tuple[Path, ExportResult, Populated]) -> None:
    import pypdfium2

    packet, _, _ = exported
    document = pypdfium2.PdfDocument(packet / "report.pdf")
    try:
        image = document[0].render(scale=40 / 72).to_pil().convert("L")
    finally:
        document.close()
    histogram = image.histogram()
    assert image.width > 200
    # Dark text and chart on a light page, not a blank.
    assert sum(histogram[:100]) > 500
    assert sum(histogram[200:]) > image.width * image.height // 2


def test_progress_is_reported_per_violation(
    store: tuple[sessionmaker[Session], Populated], tmp_path: Path
) -> None:
    sessions, _ = store
    calls: list[tuple[int, int]] = []
    export_case(
        sessions,
        case_settings(),
        tmp_path / "p",
        now=EXPORT_TIME,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(n, 8) for n in range(1, 9)]


def test_a_case_without_violations_exports_an_empty_packet(tmp_path: Path) -> None:
    _, sessions = sqlite_sessions(tmp_path)
    result = export_case(sessions, case_settings(), tmp_path / "p", now=EXPORT_TIME)
    assert result.violations == 0
    data = json.loads((tmp_path / "p" / "evidence.json").read_text(encoding="utf-8"))
    assert data["violations"] == []
    assert data["chain"]["links"] == []
    assert _sha256sum(tmp_path / "p").returncode == 0
    # Page 1 is the cover; the violation log follows it.
    pdf_text = PdfReader(tmp_path / "p" / "report.pdf").pages[1].extract_text()
    assert "No violations within the order period." in pdf_text
    assert (
        io.StringIO((tmp_path / "p" / "evidence.csv").read_text())
        .readline()
        .startswith("violation_id,")
    )


def test_summary_line_and_a_broken_stored_chain_is_flagged(
    store: tuple[sessionmaker[Session], Populated], tmp_path: Path
) -> None:
    sessions, _ = store
    good = export_case(sessions, case_settings(), tmp_path / "good", now=EXPORT_TIME)
    assert good.chain_links_ok
    assert good.summary_line().startswith("8 violations, ")
    assert "WARNING" not in good.summary_line()

    with sessions.begin() as session:
        session.execute(update(Evidence).where(Evidence.seq == 2).values(chain_sha256="ef" * 32))
    with pytest.raises(BrokenStoreError, match=r"seq 2 \(evidence"):
        export_case(sessions, case_settings(), tmp_path / "bad", now=EXPORT_TIME)
    bad = export_case(
        sessions, case_settings(), tmp_path / "bad", now=EXPORT_TIME, allow_broken=True
    )
    assert not bad.chain_links_ok
    assert "WARNING: the stored chain is broken" in bad.summary_line()


def test_without_a_broad_unicode_font_the_pdf_says_so(
    store: tuple[sessionmaker[Session], Populated],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A machine without fonts-dejavu-core still gets a legible PDF (Latin text)."""
    from service import report, report_pdf

    monkeypatch.setattr(report_pdf, "_FONT_DIRS", (tmp_path / "no-fonts",))
    report.pdf_fonts.cache_clear()
    try:
        sessions, populated = store
        export_case(sessions, case_settings(), tmp_path / "p", now=EXPORT_TIME)
    finally:
        report.pdf_fonts.cache_clear()
    text = "\n".join(p.extract_text() for p in PdfReader(tmp_path / "p" / "report.pdf").pages)
    assert "no broad-coverage font was found" in text
    assert "<script>alert(1)</script> hi" in text
    assert populated.violation_ids[-1] in text.replace("\n", "")
