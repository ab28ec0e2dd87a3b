"""Engine, sessions and schema migrations for the evidence store.

SQLite (one file, private to its owner) and PostgreSQL (through psycopg 3) are
supported. ``migrate()`` brings the schema to the newest Alembic revision and is
called on every start, possibly by several replicas at once. Alembic (with Mako and
every dialect's DDL support) is imported only when the store is not at that revision:
the usual start reads ``alembic_version`` with one plain query (#15).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from watchers.toolkit.redact import Redactor, hide_password
from watchers.toolkit.text import first_line

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

# Execution option read by the SQLite "begin" hook: "IMMEDIATE" takes the write lock
# at BEGIN, so that writers queue up instead of failing halfway through a transaction.
SQLITE_BEGIN_OPTION = "nocontact_sqlite_begin"
# Connection.info key: this connection's transaction holds the process's writer lock.
_HOLDS_WRITERS = "nocontact_holds_writers"
# Arbitrary constant key of the PostgreSQL advisory lock held while migrating.
_MIGRATION_LOCK_KEY = 0x6E6F636F6E74  # "nocont"
_BUSY_TIMEOUT_MS = 10_000
# The newest revision in service/migrations/versions, so that a start on a store already
# there needs no Alembic. tests/test_migrations.py checks it is Alembic's script head:
# a new migration fails that test until this names it.
HEAD_REVISION = "0008"
_VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps


class StoreError(Exception):
    """The database cannot be used. The message is one line and never holds a password."""


def shown_url(url: str | URL) -> str:
    """The database URL as it may be shown: the password replaced by ``***``."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        # Not parseable as a URL, but it may still carry ``user:password@``.
        return hide_password(url)


def _reason(exc: BaseException) -> str:
    """What went wrong, on one line: the first line of the driver's message."""
    return first_line(str(getattr(exc, "orig", None) or exc)) or type(exc).__name__


def _cannot_open(url: str | URL, reason: str) -> StoreError:
    shown = shown_url(url)
    # A driver's message may echo the connection string; never let a password through.
    if isinstance(url, URL) and url.password:
        reason = Redactor([str(url.password)], mask_urls=False).redact(reason)
    return StoreError(f"cannot open database at {shown}: {reason}")


def make_engine(url: str, base_dir: Path, *, connections: int | None = None) -> Engine:
    """An Engine for a SQLAlchemy URL from config.

    A relative SQLite path is taken relative to ``base_dir`` (the config file's folder);
    ``sqlite://`` is an in-memory database shared by all sessions (for tests). A plain
    ``postgresql://`` URL uses psycopg 3. ``connections``: how many the pool keeps open
    (the service's threads that use the store at once); SQLAlchemy's default is 5.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise _cannot_open(url, "not a SQLAlchemy URL (like sqlite:///nocontact.db)") from None
    backend = parsed.get_backend_name()
    try:
        # A pool smaller than the threads that use it closes each connection beyond
        # its size when it is returned: on PostgreSQL every poll would open a backend.
        pool = {} if connections is None else {"pool_size": connections}
        if backend == "sqlite":
            return _sqlite_engine(parsed, base_dir, pool)
        if backend in ("postgresql", "postgres"):
            return _postgresql_engine(parsed, pool)
        return create_engine(parsed, **pool)
    except (NoSuchModuleError, ArgumentError, OSError) as exc:
        raise _cannot_open(parsed, _reason(exc)) from None


def _postgresql_engine(url: URL, pool: dict[str, int]) -> Engine:
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_pre_ping=True, **pool)


def _sqlite_engine(url: URL, base_dir: Path, pool: dict[str, int]) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:"):
        # One shared connection: otherwise every thread would see its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif url.query.get("uri") or database.startswith("file:"):
        engine = create_engine(url, **pool)
    else:
        path = Path(database).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        _create_private_file(path)
        engine = create_engine(url.set(database=str(path)), **pool)
    _install_sqlite_hooks(engine)
    return engine


def _create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only, before SQLite opens it.

    SQLite creates the ``-wal`` and ``-shm`` files with the main file's permissions,
    so they stay private too.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "database file %s is readable by others (mode %o); chmod 600 it", path, mode
            )
        return
    os.close(fd)
    # The mode given to open() is filtered by the umask; make sure it is exactly 0600.
    path.chmod(0o600)


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module, which would otherwise
        # BEGIN lazily and too late; the "begin" hook below issues BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first, so that the statements below wait for a lock too.
            cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    # SQLite has one writer at a time; a writer that finds the lock taken sleeps in its
    # busy handler (1 ms, then longer, up to 100 ms a try) and is not woken when the lock
    # is freed. The writers of this process queue on this lock instead and start the
    # moment the previous one ends; other processes (replicas, the CLI) still meet
    # busy_timeout.
    writers = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE"):
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        if mode == "IMMEDIATE" and not connection.info.get(_HOLDS_WRITERS):
            # Waited for no longer than SQLite would; past it, SQLite decides as before.
            connection.info[_HOLDS_WRITERS] = writers.acquire(timeout=_BUSY_TIMEOUT_MS / 1000)
        try:
            connection.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            _release(connection, writers)
            raise

    # Released as the transaction ends, just before SQLAlchemy's COMMIT or ROLLBACK:
    # a writer let in that instant waits in SQLite's busy handler for a millisecond or
    # two, and commits and rollbacks stay SQLAlchemy's own (errors reported as ever).
    @event.listens_for(engine, "commit")
    def _on_commit(connection: Any) -> None:
        _release(connection, writers)

    @event.listens_for(engine, "rollback")
    def _on_rollback(connection: Any) -> None:
        _release(connection, writers)

    # A connection given back or thrown away while it holds the lock (it should not
    # happen: every transaction ends in one of the events above) gives it back too.
    @event.listens_for(engine.pool, "checkin")
    @event.listens_for(engine.pool, "invalidate")
    def _on_pool_end(_dbapi_connection: Any, record: Any, *_exception: Any) -> None:
        if record is not None:
            _release(record, writers)


def _release(holder: Any, writers: threading.Lock) -> None:
    """``holder`` is a Connection or its pool record: both show the same ``info``."""
    if holder.info.pop(_HOLDS_WRITERS, False):
        writers.release()


def writer(engine: Engine) -> Engine:
    """The same engine, but each transaction takes SQLite's write lock when it begins
    (no effect on other backends). Writers then serialise instead of deadlocking."""
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})


def session_factory(engine: Engine, *, readonly: bool = False) -> sessionmaker[Session]:
    """Sessions whose objects stay usable after commit.

    On SQLite, sessions take the write lock when their transaction begins, unless
    ``readonly``: a transaction that reads and then writes could otherwise fail with
    "database is locked" when another writer committed in between.
    """
    return sessionmaker(bind=engine if readonly else writer(engine), expire_on_commit=False)


@contextlib.contextmanager
def database_errors(engine: Engine) -> Iterator[None]:
    """Turn a driver or SQLAlchemy error into a one-line ``StoreError``.

    Only the driver's first line is kept: SQLAlchemy's full message carries the SQL
    parameters, which hold evidence text that has no place in logs.
    """
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        raise StoreError(f"database error at {shown_url(engine.url)}: {_reason(exc)}") from None


@contextlib.contextmanager
def _script_location() -> Iterator[Path]:
    with resources.as_file(resources.files("service") / "migrations") as path:
        yield path


def alembic_config() -> Config:
    """Alembic configuration without an ``alembic.ini``; the caller sets
    ``attributes["connection"]`` before running a command."""
    from alembic.config import Config

    return Config()


def _sqlite_locked(exc: BaseException) -> bool:
    """SQLite can answer "database is locked" at once, without waiting out busy_timeout,
    while another process turns a new file into WAL mode; such a start is tried again."""
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def at_head(engine: Engine) -> bool:
    """Whether the store's schema is at ``HEAD_REVISION``, read with plain SQL. Any
    doubt (no ``alembic_version`` table yet, a locked or unreachable database, another
    revision) answers False, and ``migrate`` then takes Alembic's way, which reports
    errors as before."""
    try:
        with engine.connect() as connection:
            # Asked first, so that a new store costs PostgreSQL no error in its log.
            if not inspect(connection).has_table(_VERSION_TABLE):
                return False
            rows = connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).all()  # noqa: S608 - a constant
    except (SQLAlchemyError, OSError):
        return False
    return [tuple(row) for row in rows] == [(HEAD_REVISION,)]


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision. Safe on every start and from several
    processes at once: they take turns and all but the first find nothing to do."""
    if at_head(engine):
        return  # the usual start: nothing to do, and no Alembic to import
    from alembic.util.exc import CommandError
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

    retrying = Retrying(
        retry=retry_if_exception(_sqlite_locked),
        wait=wait_random_exponential(multiplier=0.05, max=1),
        stop=stop_after_delay(30),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                _migrate_once(engine)
    except CommandError as exc:
        # Typically a database written by a newer nocontact: never touch it.
        raise _cannot_open(
            engine.url,
            f"its schema is unknown to this version of nocontact ({_reason(exc)});"
            " upgrade nocontact or point `database` elsewhere",
        ) from None
    except (SQLAlchemyError, OSError) as exc:
        raise _cannot_open(engine.url, f"migration failed: {_reason(exc)}") from None


def _migrate_once(engine: Engine) -> None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = alembic_config()
    with _script_location() as location, writer(engine).begin() as connection:
        config.set_main_option("script_location", str(location))
        if connection.dialect.name == "postgresql":
            # Released at commit; a second replica waits here, then sees the head.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        head = ScriptDirectory.from_config(config).get_current_head()
        if MigrationContext.configure(connection).get_current_revision() == head:
            return  # the usual start: nothing to do, and nothing to log
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
