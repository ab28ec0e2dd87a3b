"""How much storing costs compared with the bare minimum of writing the same rows.

Records N observations through ``Store.record_poll`` in poll-sized batches (dedup,
hashing, chain, a few violations and alerts) and, in the same run, inserts the same
number of rows of the same width with one bare ``executemany``. Prints both and their
ratio, so the number means something on any machine. On SQLite always; on PostgreSQL
too when ``NOCONTACT_TEST_PG`` names a server (a throw-away database is made there).

    NOCONTACT_TEST_PG=postgresql+psycopg://postgres@127.0.0.1:5432/test \
        .venv/bin/python -m benchmarks.bench_store [--count 20000] [--batch 100]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service import evidence
from service.db import make_engine, migrate
from service.hits import Hit
from service.planner import AlertPlanner
from service.settings import CaseSettings, Route
from service.store import PollRecord, Store
from watchers.base import Observation

START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
CASE = CaseSettings.model_validate(
    {
        "id": "bench",
        "order": {"effective": "2026-01-01"},
        "protected": {"names": ["Alex Smith"]},
        "restrained": {"handles": {"reddit": ["jdoe"]}},
        "alert": ["phone"],
    }
)
ROUTES = {"phone": Route(urls=["ntfys://bench"])}
HIT_EVERY = 50  # one observation in 50 is a hit: a busy stream, mostly noise


def observations(count: int) -> list[Observation]:
    return [
        Observation(
            platform="reddit",
            native_id=f"t1_{index:08d}",
            kind="comment",
            raw=b'{"body": "%d", "padding": "' + b"x" * 400 + b'"}',
            watcher="reddit",
            url=f"https://reddit.example/c/{index}",
            author_handle=f"user{index % 997}",
            author_id=f"id{index % 997}",
            text=f"comment number {index} about nothing in particular " * 3,
            posted_at=START + timedelta(seconds=index),
        )
        for index in range(count)
    ]


def hit_for(index: int) -> Hit:
    return Hit(
        case_id="bench",
        kind="contact",
        severity="high",
        suspected=False,
        reason="reply to alex_smith by jdoe",
        author_key="jdoe",
        author_class="restrained",
        target="contact",
        in_order_period=True,
    )


def time_store(url: str, folder: Path, items: list[Observation], batch: int) -> float:
    engine = make_engine(url, folder)
    migrate(engine)
    store = Store(engine, cases=[CASE], planner=AlertPlanner([CASE], ROUTES))
    store.sync_cases([CASE], START)
    began = time.perf_counter()
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        fresh = store.new_observations(chunk)
        hits = {i: [hit_for(i)] for i in range(len(fresh)) if (start + i) % HIT_EVERY == 0}
        now = START + timedelta(seconds=start)
        store.record_poll(PollRecord("reddit", "reddit", fresh, hits, {}, [], now))
    elapsed = time.perf_counter() - began
    engine.dispose()
    return elapsed


def bare_rows(items: list[Observation]) -> list[tuple[object, ...]]:
    return [
        (
            seq,
            obs.platform,
            obs.native_id,
            obs.url,
            obs.author_handle,
            obs.text,
            evidence.format_time(obs.posted_at),
            obs.raw,
            "0" * 64,
        )
        for seq, obs in enumerate(items, start=1)
    ]


BARE_INSERT = (
    "INSERT INTO evidence (seq, platform, native_id, url, author, text, posted_at,"
    " raw, sha256) VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0})"
)


def time_bare_sqlite(folder: Path, items: list[Observation]) -> float:
    connection = sqlite3.connect(folder / "bare.db")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(
        "CREATE TABLE evidence (id INTEGER PRIMARY KEY, seq INTEGER, platform TEXT,"
        " native_id TEXT, url TEXT, author TEXT, text TEXT, posted_at TEXT, raw BLOB,"
        " sha256 TEXT, UNIQUE (platform, native_id))"
    )
    began = time.perf_counter()
    with connection:
        connection.executemany(BARE_INSERT.format("?"), bare_rows(items))
    elapsed = time.perf_counter() - began
    connection.close()
    return elapsed


def time_bare_postgres(url: str, items: list[Observation]) -> float:
    import psycopg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "CREATE TABLE bare_evidence (id BIGSERIAL PRIMARY KEY, seq BIGINT, platform TEXT,"
            " native_id TEXT, url TEXT, author TEXT, text TEXT, posted_at TEXT, raw BYTEA,"
            " sha256 TEXT, UNIQUE (platform, native_id))"
        )
        connection.commit()
        began = time.perf_counter()
        with connection.cursor() as cursor:
            insert = BARE_INSERT.replace("INTO evidence", "INTO bare_evidence")
            cursor.executemany(insert.format("%s"), bare_rows(items))
        connection.commit()
        return time.perf_counter() - began


@contextmanager
def throwaway_postgres(server: str) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards; yields its URL."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def report(name: str, count: int, bare: float, stored: float) -> None:
    print(f"{name}:")
    print(f"  bare executemany:  {bare:.3f} s ({count / bare:,.0f} rows/s)")
    print(f"  Store.record_poll: {stored:.3f} s ({count / stored:,.0f} obs/s, goal ≥ 20k)")
    print(f"  ratio store / bare: {stored / bare:.1f}× (goal ≤ 3×)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    items = observations(args.count)
    print(f"observations: {args.count} in polls of {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bare = time_bare_sqlite(folder, items)
        stored = time_store("sqlite:///store.db", folder, items, args.batch)
        report("SQLite", args.count, bare, stored)
        server = os.environ.get("NOCONTACT_TEST_PG")
        if not server:
            print("PostgreSQL: skipped (set NOCONTACT_TEST_PG to a server URL)")
            return
        runs: list[Callable[[str], float]] = [
            lambda url: time_bare_postgres(url, items),
            lambda url: time_store(url, folder, items, args.batch),
        ]
        with throwaway_postgres(server) as url:
            bare_pg, stored_pg = (run(url) for run in runs)
            report("PostgreSQL", args.count, bare_pg, stored_pg)


if __name__ == "__main__":
    main()
