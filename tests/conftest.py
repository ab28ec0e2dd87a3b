"""Database fixtures shared by the whole suite.

``database_url`` is a fresh, empty database per test, on SQLite (a file in
``tmp_path``) and on PostgreSQL (a fresh schema in a throw-away database on the server
named by ``NOCONTACT_TEST_PG``, else on ``127.0.0.1:5432`` when something answers there).
When ``NOCONTACT_TEST_PG`` is set and the server does not answer, the PostgreSQL
tests fail: CI must not pass silently without PostgreSQL. ``engine`` is that
database migrated; ``store`` is a ``Store`` over it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from service.db import make_engine, migrate, shown_url
from service.store import Store

# Fails the run if any test secret (they all contain "s3cr3t") reaches a log line or output.
pytest_plugins = ["tests.fakes.secret_scan"]

PG_ENV = "NOCONTACT_TEST_PG"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _psycopg(url: URL) -> URL:
    return url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url


def _admin_engine(url: URL) -> Engine:
    """An autocommit engine for CREATE/DROP DATABASE: on the URL's database, or on the
    ``postgres`` maintenance database when that one does not exist."""
    for candidate in (url, url.set(database="postgres")):
        engine = create_engine(candidate, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect():
                return engine
        except OperationalError as exc:
            engine.dispose()
            if "does not exist" not in str(exc):
                raise
    raise RuntimeError(f"no usable database on {shown_url(url)}")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[tuple[Engine, URL]]:
    """(autocommit engine, URL) of a throw-away database for this test session on the
    test PostgreSQL server, or skip/fail (see above). Each test gets its own schema in
    it: a schema is created in milliseconds, a database in about half a second."""
    configured = os.environ.get(PG_ENV)
    url = _psycopg(make_url(configured or PG_DEFAULT))
    host, port = url.host or "127.0.0.1", url.port or 5432
    if not _answers(host, port):
        if configured:
            pytest.fail(f"{PG_ENV} is set but PostgreSQL at {shown_url(url)} does not answer")
        pytest.skip(f"PostgreSQL not available: set {PG_ENV} or run a server on {host}:{port}")
    try:
        admin = _admin_engine(url)
    except OperationalError as exc:
        pytest.fail(f"cannot use PostgreSQL at {shown_url(url)}: {str(exc.orig).strip()}")
    name = f"nocontact_test_{uuid.uuid4().hex[:16]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database = url.set(database=name)
    engine = create_engine(database, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        yield engine, database
    finally:
        engine.dispose()
        # FORCE ends connections a test left open (a crashed thread, an undisposed engine).
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh empty database, as a SQLAlchemy URL string (password included).

    On PostgreSQL it is a fresh schema, made the connection's ``search_path`` through
    the URL's ``options``, so that everything using the URL works inside it alone.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nocontact.db'}"
        return
    session_engine, database = request.getfixturevalue("postgres_database")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with session_engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = database.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with session_engine.connect() as connection:
            # Connections a test left open (a stuck thread, an undisposed engine) could
            # hold locks on the schema; tests run one at a time, so all others may go.
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    """The ``database_url`` database, migrated to the newest schema."""
    created = make_engine(database_url, tmp_path)
    migrate(created)
    yield created
    created.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    return Store(engine)
