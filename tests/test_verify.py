"""verify_store: an untouched store verifies; each kind of tampering is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from service.db import session_factory
from service.evidence import GENESIS_CHAIN
from service.verify import VerifyReport, verify_store
from tests.fakes.evidence_data import (
    CASE_ID,
    OTHER_CASE_ID,
    Populated,
    populate,
    record_through_store,
    sqlite_sessions,
)


@pytest.fixture
def populated(tmp_path: Path) -> tuple[Engine, sessionmaker[Session], Populated]:
    engine, sessions = sqlite_sessions(tmp_path)
    return engine, sessions, populate(sessions, violations=8)


def _sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement), params)


def _problems_at(report: VerifyReport, seq: int) -> list[str]:
    return [p.what for p in report.problems if p.seq == seq]


def test_untouched_store_verifies(
    populated: tuple[Engine, sessionmaker[Session], Populated],
) -> None:
    engine, sessions, _ = populated
    report = verify_store(sessions)
    assert report.ok, report.problem_lines()
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM evidence")).scalar_one()
        head = connection.execute(text("SELECT chain_sha256 FROM chain_head")).scalar_one()
    assert report.records == count
    line = report.summary_line()
    assert line.startswith(f"verified {count} evidence records, chain intact, head {head[:12]}")
    assert report.problem_lines() == []


def test_empty_store_verifies(tmp_path: Path) -> None:
    _, sessions = sqlite_sessions(tmp_path)
    report = verify_store(sessions)
    assert report.ok
    assert report.records == 0
    assert report.head_chain == GENESIS_CHAIN
    assert "chain empty" in report.summary_line()


def test_changed_text_is_named(populated: tuple[Engine, sessionmaker[Session], Populated]) -> None:
    engine, sessions, _ = populated
    _sql(engine, "UPDATE evidence SET text = 'nothing happened' WHERE seq = 3")
    report = verify_store(sessions)
    assert not report.ok
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.seq == 3
    assert problem.evidence_id is not None
    assert problem.native_id is not None
    assert problem.what.startswith("text or fields changed: stored sha256 ")
    assert "seq 3 (evidence" in report.problem_lines()[0]
    assert "NOT intact" in report.summary_line()


def test_changed_time_field_is_named(
    populated: tuple[Engine, sessionmaker[Session], Populated],
) -> None:
    engine, sessions, _ = populated
    # Move the capture time by an hour, keeping SQLite's stored format.
    with engine.begin() as connection:
        stored = connection.execute(
            text("SELECT captured_at FROM evidence WHERE seq = 2")
        ).scalar_one()
        changed = stored.replace(stored[11:13], f"{(int(stored[11:13]) + 1) % 24:02d}", 1)
        connection.execute(
            text("UPDATE evidence SET captured_at = :v WHERE seq = 2"), {"v": changed}
        )
    report = verify_store(sessions)
    assert [p.seq for p in report.problems] == [2]
    assert "text or fields changed" in report.problems[0].what


def test_deleted_row_is_named(populated: tuple[Engine, sessionmaker[Session], Populated]) -> None:
    engine, sessions, _ = populated
    _sql(engine, "DELETE FROM evidence WHERE seq IN (4, 5)")
    report = verify_store(sessions)
    whats = [p.what for p in report.problems]
    assert "missing record(s) seq 4–5" in whats
    # The violation links that pointed at the deleted rows are named too.
    assert any("is missing from the store" in w for w in whats)
    # Nothing else is blamed: the records after the gap are intact.
    assert not any(p.seq == 6 for p in report.problems)


def test_deleted_last_row_is_caught_by_head(
    populated: tuple[Engine, sessionmaker[Session], Populated],
) -> None:
    engine, sessions, _ = populated
    with engine.connect() as connection:
        last = connection.execute(text("SELECT max(seq) FROM evidence")).scalar_one()
    _sql(engine, "DELETE FROM evidence WHERE seq = :seq", seq=last)
    report = verify_store(sessions)
    assert any(
        f"chain head says seq {last} but the last record is seq {last - 1}" in p.what
        for p in report.problems
    )


def test_swapped_rows_are_named(populated: tuple[Engine, sessionmaker[Session], Populated]) -> None:
    engine, sessions, _ = populated
    _sql(engine, "UPDATE evidence SET seq = -1 WHERE seq = 3")
    _sql(engine, "UPDATE evidence SET seq = 3 WHERE seq = 5")
    _sql(engine, "UPDATE evidence SET seq = 5 WHERE seq = -1")
    report = verify_store(sessions)
    assert any("text or fields changed" in w for w in _problems_at(report, 3))
    assert any("text or fields changed" in w for w in _problems_at(report, 5))
    assert any(w.startswith("chain broken") for w in _problems_at(report, 3))
    # Untouched records before the swap are not blamed.
    assert _problems_at(report, 1) == []
    assert _problems_at(report, 2) == []


def test_swapped_contents_with_their_hashes_break_the_chain(
    populated: tuple[Engine, sessionmaker[Session], Populated],
) -> None:
    """Rows exchanged whole (content, hashes, links) but seq kept: the canonical form
    includes seq, so both are caught."""
    engine, sessions, _ = populated
    columns = "text, native_id, sha256, chain_sha256"
    with engine.begin() as connection:
        query3 = f"SELECT {columns} FROM evidence WHERE seq = 3"  # noqa: S608
        row3 = connection.execute(text(query3)).one()
        query4 = f"SELECT {columns} FROM evidence WHERE seq = 4"  # noqa: S608
        row4 = connection.execute(text(query4)).one()
        for seq, row in ((3, row4), (4, row3)):
            connection.execute(
                text(
                    "UPDATE evidence SET text = :t, native_id = :n || '-x', sha256 = :s, "
                    "chain_sha256 = :c WHERE seq = :seq"
                ),
                {"t": row[0], "n": row[1], "s": row[2], "c": row[3], "seq": seq},
            )
    report = verify_store(sessions)
    assert _problems_at(report, 3)
    assert _problems_at(report, 4)


def test_edited_hash_is_named(populated: tuple[Engine, sessionmaker[Session], Populated]) -> None:
    engine, sessions, _ = populated
    _sql(engine, "UPDATE evidence SET sha256 = :h WHERE seq = 6", h="ab" * 32)
    report = verify_store(sessions)
    assert len(report.problems) == 1
    assert report.problems[0].seq == 6
    assert report.problems[0].what.startswith("stored sha256 edited: abababababab")


def test_rehashed_record_breaks_its_link(
    populated: tuple[Engine, sessionmaker[Session], Populated],
) -> None:
    """A forger who changes a text and recomputes its sha256 is caught by the chain."""
    from service.evidence import record_sha256
    from service.verify import canonical_record
    from tests.fakes.evidence_data import evidence_by_seq

    engine, sessions, _ = populated
    with sessions() as session:
        record = canonical_record(evidence_by_seq(session, 2))
    record["text"] = "forged"
    _sql(
        engine,
        "UPDATE evidence SET text = 'forged', sha256 = :h WHERE seq = 2",
        h=record_sha256(record),
    )
    report = verify_store(sessions)
    assert [p.seq for p in report.problems] == [2]
    assert report.problems[0].what.startswith("chain broken: stored chain_sha256")


def test_edited_chain_link_is_named(
    populated: tuple[Engine, sessionmaker[Session], Populated],
) -> None:
    engine, sessions, _ = populated
    _sql(engine, "UPDATE evidence SET chain_sha256 = :h WHERE seq = 4", h="cd" * 32)
    report = verify_store(sessions)
    assert 4 in [p.seq for p in report.problems]
    assert all(p.what.startswith("chain broken") for p in report.problems)


def test_changed_raw_payload_is_named(
    populated: tuple[Engine, sessionmaker[Session], Populated],
) -> None:
    engine, sessions, _ = populated
    _sql(engine, "UPDATE evidence SET raw = :raw WHERE seq = 5", raw=b'{"body": "other"}')
    report = verify_store(sessions)
    assert len(report.problems) == 1
    assert report.problems[0].seq == 5
    assert report.problems[0].what.startswith("raw payload changed: stored raw_sha256")


def test_inserted_row_is_named(populated: tuple[Engine, sessionmaker[Session], Populated]) -> None:
    engine, sessions, _ = populated
    columns = (
        "platform, native_id, version, kind, url, author_handle, author_id, "
        "author_display_name, author_created_at, addressed_to, text, posted_at, "
        "captured_at, watcher, capture_method, raw, raw_content_type, raw_sha256, "
        "content_sha256, text_fingerprint, sha256, chain_sha256"
    )
    fake = columns.replace("native_id", "native_id || '-fake'")
    late = columns.replace("native_id", "native_id || '-late'")
    _sql(
        engine,
        f"INSERT INTO evidence (seq, {columns}) SELECT 0, {fake} FROM evidence WHERE seq = 2",  # noqa: S608
    )
    with engine.connect() as connection:
        last = connection.execute(text("SELECT max(seq) FROM evidence")).scalar_one()
    _sql(
        engine,
        f"INSERT INTO evidence (seq, {columns}) SELECT :new, {late} FROM evidence WHERE seq = 2",  # noqa: S608
        new=last + 1,
    )
    report = verify_store(sessions)
    at_zero = _problems_at(report, 0)
    assert any("inserted record: seq 0" in w for w in at_zero)
    assert any(w.startswith("chain broken") for w in _problems_at(report, last + 1))
    assert any("chain head says seq" in p.what for p in report.problems)


def test_case_scope_marks_problems_of_that_case(
    populated: tuple[Engine, sessionmaker[Session], Populated],
) -> None:
    engine, sessions, _ = populated
    with engine.connect() as connection:
        own_seq = connection.execute(
            text(
                "SELECT e.seq FROM evidence e JOIN violation_evidence ve ON ve.evidence_id = e.id"
                " JOIN violations v ON v.id = ve.violation_id WHERE v.case_id = :c"
                " ORDER BY e.seq LIMIT 1"
            ),
            {"c": CASE_ID},
        ).scalar_one()
        other_seq = connection.execute(
            text(
                "SELECT e.seq FROM evidence e JOIN violation_evidence ve ON ve.evidence_id = e.id"
                " JOIN violations v ON v.id = ve.violation_id WHERE v.case_id = :c"
                " ORDER BY e.seq LIMIT 1"
            ),
            {"c": OTHER_CASE_ID},
        ).scalar_one()
    _sql(engine, "UPDATE evidence SET text = 'x' WHERE seq IN (:a, :b)", a=own_seq, b=other_seq)
    report = verify_store(sessions, case_id=CASE_ID)
    touching = {p.seq: p.touches_case for p in report.problems}
    assert touching == {own_seq: True, other_seq: False}
    assert f"(1 touch case {CASE_ID})" in report.summary_line()
    assert any("[case]" in line for line in report.problem_lines())

    clean = verify_store(sessions, case_id=OTHER_CASE_ID)
    assert clean.case_records > 0


def test_records_of_the_real_store_verify_and_tampering_is_caught(engine: Engine) -> None:
    """The store (SQLite and PostgreSQL) and verify agree on the canonical form."""
    record_through_store(engine)
    sessions = session_factory(engine, readonly=True)
    report = verify_store(sessions, case_id=CASE_ID)
    assert report.ok, report.problem_lines()
    assert report.records == 3
    assert report.case_records == 3

    with engine.begin() as connection:
        connection.execute(text("UPDATE evidence SET text = 'edited later' WHERE seq = 2"))
    broken = verify_store(sessions, case_id=CASE_ID)
    assert [(p.seq, p.native_id, p.touches_case) for p in broken.problems] == [(2, "t1_abc", True)]
    assert broken.problems[0].what.startswith("text or fields changed")
