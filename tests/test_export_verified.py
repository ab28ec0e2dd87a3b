"""``export`` verifies the store first (#14): a tampered store is refused, naming the
record; ``--allow-broken`` writes the packet with "VERIFICATION FAILED" on the cover and
on every affected record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pypdf import PdfReader
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.db import make_engine, migrate
from service.export import export_case
from service.export_check import BrokenStoreError
from service.models import Evidence
from tests.fakes.evidence_data import (
    EXPORT_TIME,
    Populated,
    case_settings,
    populate,
    sqlite_sessions,
)

ALTERED = "I never wrote this ALTERED-TEXT"


@pytest.fixture
def tampered(tmp_path: Path) -> tuple[sessionmaker[Session], int]:
    """A store whose third record of the case had its text changed in the database."""
    _, sessions = sqlite_sessions(tmp_path)
    populated: Populated = populate(sessions, violations=4)
    seq = populated.evidence_seqs[2]
    with sessions.begin() as session:
        session.execute(update(Evidence).where(Evidence.seq == seq).values(text=ALTERED))
    return sessions, seq


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def test_a_clean_store_exports_with_its_verification_on_the_cover(tmp_path: Path) -> None:
    _, sessions = sqlite_sessions(tmp_path)
    populate(sessions, violations=3)
    out = tmp_path / "packet"
    export_case(sessions, case_settings(), out, now=EXPORT_TIME)
    assert "Verification at export: verified " in (out / "report.html").read_text()
    assert "VERIFICATION FAILED" not in pdf_text(out / "report.pdf")
    data = json.loads((out / "evidence.json").read_text())
    assert data["verification"]["ok"] is True


def test_a_tampered_store_is_refused_naming_the_record(
    tampered: tuple[sessionmaker[Session], int], tmp_path: Path
) -> None:
    sessions, seq = tampered
    out = tmp_path / "packet"
    with pytest.raises(BrokenStoreError) as caught:
        export_case(sessions, case_settings(), out, now=EXPORT_TIME)
    message = str(caught.value)
    assert f"seq {seq} (evidence " in message
    assert "text or fields changed" in message
    assert "--allow-broken" in message
    assert "\n" not in message
    assert not out.exists(), "nothing written"


def test_allow_broken_flags_the_cover_and_the_record(
    tampered: tuple[sessionmaker[Session], int], tmp_path: Path
) -> None:
    sessions, seq = tampered
    out = tmp_path / "packet"
    export_case(sessions, case_settings(), out, now=EXPORT_TIME, allow_broken=True)

    html = (out / "report.html").read_text()
    cover = html[: html.index("<h2>Order</h2>")]
    assert "VERIFICATION FAILED" in cover
    record = html.index(f"Evidence seq {seq}:")
    flag = html.index("VERIFICATION FAILED for this record", record)
    assert flag < html.index(ALTERED, record)
    assert html.count("VERIFICATION FAILED for this record") == 1

    pages = [page.extract_text() for page in PdfReader(out / "report.pdf").pages]
    assert "VERIFICATION FAILED" in pages[0]
    flagged = [p for p in pages if "VERIFICATION FAILED for this record" in p]
    assert len(flagged) == 1
    assert ALTERED in flagged[0]

    data = json.loads((out / "evidence.json").read_text())
    assert data["verification"]["ok"] is False
    assert any(f"seq {seq} " in line for line in data["verification"]["problems"])


def test_cli_export_exits_1_on_a_tampered_store_and_allow_broken_writes(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'nc.db'}"
    engine = make_engine(database, tmp_path)
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    seq = populate(sessions, violations=3).evidence_seqs[1]
    with sessions.begin() as session:
        session.execute(update(Evidence).where(Evidence.seq == seq).values(text=ALTERED))
    engine.dispose()
    config = tmp_path / "config.yaml"
    case = case_settings()
    config.write_text(
        f"database: {database}\ncases:\n  - "
        + json.dumps(case.model_dump(mode="json", exclude_defaults=True))
        + "\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    args = ["export", "-c", str(config), "--case", case.id, "--out", str(tmp_path / "p")]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.startswith("error: the evidence store fails verification")
    assert f"seq {seq} (evidence" in refused.stderr
    assert not (tmp_path / "p").exists()

    allowed = runner.invoke(cli, [*args, "--allow-broken"])
    assert allowed.exit_code == 0, allowed.output
    assert "VERIFICATION FAILED" in (tmp_path / "p" / "report.html").read_text()
