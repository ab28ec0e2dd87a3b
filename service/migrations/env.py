"""Alembic environment of the evidence store.

At runtime ``service.db.migrate`` passes an open connection (inside the transaction
that holds the migration lock) as ``config.attributes["connection"]``. For development
(``alembic revision --autogenerate``) a ``sqlalchemy.url`` main option is used instead.
"""

from __future__ import annotations

from pathlib import Path

from alembic import context
from sqlalchemy.engine import Connection

from service.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode lets later revisions change tables.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from service.db import make_engine

    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection to run migrations")
    engine = make_engine(url, Path.cwd())
    try:
        with engine.begin() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
_run_online()
