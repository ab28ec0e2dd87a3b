"""The Alembic migrations create exactly the ORM's schema, idempotently, concurrently."""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, select, text

from service.db import (
    HEAD_REVISION,
    StoreError,
    alembic_config,
    at_head,
    make_engine,
    migrate,
    writer,
)
from service.evidence import GENESIS_CHAIN
from service.models import Base, ChainHead


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def _scripts() -> ScriptDirectory:
    config = alembic_config()
    config.set_main_option("script_location", str(resources.files("service") / "migrations"))
    return ScriptDirectory.from_config(config)


HEAD = _scripts().get_current_head()


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_migrated_schema_matches_models(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url, tmp_path)
    try:
        migrate(engine)
        assert _differences(engine) == []
        assert _revision(engine) == HEAD
    finally:
        engine.dispose()


def test_migration_creates_the_chain_head(engine: Engine) -> None:
    with engine.connect() as connection:
        rows = connection.execute(select(ChainHead.id, ChainHead.seq, ChainHead.chain_sha256))
        assert [tuple(row) for row in rows] == [(1, 0, GENESIS_CHAIN)]


def test_migrate_twice_is_a_no_op(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE chain_head SET seq = 7 WHERE id = 1"))
    migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(ChainHead)).scalar() == 1
        assert connection.execute(select(ChainHead.seq)).scalar() == 7
    assert _revision(engine) == HEAD
    assert _differences(engine) == []


def test_two_processes_migrating_at_once_both_succeed(database_url: str, tmp_path: Path) -> None:
    engines = [make_engine(database_url, tmp_path) for _ in range(2)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def run(engine: Engine) -> None:
        try:
            barrier.wait(timeout=10)
            migrate(engine)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert _revision(engines[0]) == HEAD
        with engines[0].connect() as connection:
            assert connection.execute(select(func.count()).select_from(ChainHead)).scalar() == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_in_memory_sqlite_migrates_and_is_shared_between_connections(tmp_path: Path) -> None:
    engine = make_engine("sqlite://", tmp_path)
    try:
        migrate(engine)
        assert _differences(engine) == []
        seen: list[int | None] = []
        thread = threading.Thread(
            target=lambda: seen.append(_count_chain_rows(engine)), name="other-thread"
        )
        thread.start()
        thread.join(timeout=10)
        assert seen == [1]
    finally:
        engine.dispose()


def _count_chain_rows(engine: Engine) -> int | None:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(ChainHead)).scalar()


def test_a_schema_from_a_newer_version_is_refused_clearly(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(StoreError, match=r"schema is unknown to this version .*'0099'"):
        migrate(engine)
    assert _revision(engine) == "0099"


def test_the_head_the_start_compares_with_is_alembics_head() -> None:
    # A new migration must update service.db.HEAD_REVISION, or starts would skip it.
    assert HEAD_REVISION == HEAD


def test_at_head_only_for_a_store_at_the_newest_revision(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url, tmp_path)
    try:
        assert not at_head(engine)  # a new store: no alembic_version table yet
        migrate(engine)
        assert at_head(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        assert not at_head(engine)
    finally:
        engine.dispose()


def test_head_is_past_the_first_revision() -> None:
    # Guards the upgrade test below: it is only meaningful with more than one revision.
    assert HEAD is not None
    assert HEAD != "0001"


def test_a_store_from_the_first_release_upgrades_without_losing_anything(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url, tmp_path)
    try:
        config = alembic_config()
        config.set_main_option("script_location", str(resources.files("service") / "migrations"))
        with writer(engine).begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            connection.execute(text("UPDATE chain_head SET seq = 3 WHERE id = 1"))
        assert _revision(engine) == "0001"
        migrate(engine)
        assert _revision(engine) == HEAD
        assert _differences(engine) == []
        with engine.connect() as connection:
            assert connection.execute(select(ChainHead.seq)).scalar() == 3
    finally:
        engine.dispose()
