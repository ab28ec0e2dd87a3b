"""SQLite writers of one process take turns on a lock of their own (service/db.py), so
that none waits in SQLite's sleeping busy handler: they must still all succeed, see
each other's commits, and never keep the turn after a transaction ends, however it
ends."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from service.db import make_engine, session_factory, writer

# Generous: a turn kept by mistake would hold the next writer for the busy timeout (10 s).
JOIN = 8.0


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}", tmp_path)
    with writer(engine).begin() as connection:
        connection.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        connection.execute(text("INSERT INTO counter VALUES (0)"))
    yield engine
    engine.dispose()


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT n FROM counter")).scalar_one())


def _in_thread(target: object) -> list[BaseException]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()  # type: ignore[operator]
        except BaseException as exc:  # reported by the caller's assertion
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=JOIN)
    assert not thread.is_alive(), "the writer is still waiting for its turn"
    return errors


def test_many_writers_in_one_process_all_commit(sqlite: Engine) -> None:
    sessions = session_factory(sqlite)

    def add() -> None:
        for _ in range(20):
            with sessions.begin() as session:
                value = session.execute(text("SELECT n FROM counter")).scalar_one()
                session.execute(text("UPDATE counter SET n = :n"), {"n": value + 1})

    errors: list[BaseException] = []
    threads = [threading.Thread(target=lambda: errors.extend(_in_thread(add))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert _count(sqlite) == 160  # read-then-write in each: no update lost


def test_a_writer_waits_for_the_one_writing_and_sees_its_commit(sqlite: Engine) -> None:
    seen: list[int] = []
    started = threading.Event()

    def second() -> None:
        started.set()
        with writer(sqlite).begin() as connection:
            seen.append(int(connection.execute(text("SELECT n FROM counter")).scalar_one()))

    with writer(sqlite).begin() as connection:
        connection.execute(text("UPDATE counter SET n = 1"))
        thread = threading.Thread(target=second)
        thread.start()
        started.wait(timeout=JOIN)
    thread.join(timeout=JOIN)

    assert seen == [1]


def _next_writer(engine: Engine, value: int) -> list[BaseException]:
    """A write in another thread, on another connection (the failed one stays checked
    out, so a turn it kept could not be passed on by reusing it)."""

    def write() -> None:
        with writer(engine).begin() as connection:
            connection.execute(text("UPDATE counter SET n = :n"), {"n": value})

    return _in_thread(write)


def test_a_rolled_back_writer_gives_its_turn_back(sqlite: Engine) -> None:
    with sqlite.connect() as kept:

        def failing_writer() -> None:
            with kept.execution_options(nocontact_sqlite_begin="IMMEDIATE").begin():
                kept.execute(text("UPDATE counter SET n = 5"))
                raise RuntimeError("a poll failed halfway")

        with pytest.raises(RuntimeError):
            failing_writer()

        assert _next_writer(sqlite, 1) == []
    assert _count(sqlite) == 1


def test_a_failed_begin_gives_the_turn_back(sqlite: Engine, tmp_path: Path) -> None:
    # Another process holds SQLite's write lock past the busy timeout (shortened for
    # the test): this process's writer fails, and the next one must not find the turn
    # taken.
    holder = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    with sqlite.connect() as kept:
        raw = kept.connection.dbapi_connection
        assert raw is not None
        try:
            holder.execute("BEGIN IMMEDIATE")
            raw.execute("PRAGMA busy_timeout=10")
            with pytest.raises(OperationalError, match="locked"):
                kept.execution_options(nocontact_sqlite_begin="IMMEDIATE").begin()
        finally:
            raw.execute("PRAGMA busy_timeout=10000")
            holder.execute("ROLLBACK")
            holder.close()

        assert _next_writer(sqlite, 7) == []
    assert _count(sqlite) == 7
