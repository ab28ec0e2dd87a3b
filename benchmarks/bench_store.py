"""How much storing costs compared with the bare minimum of writing the same rows.

Stores N observations in poll-sized batches through the steps ``Pipeline._store`` takes
after matching (the retention markers, the store's dedup, ``Store.record_poll`` with
its hashing, chain, violations, alerts, markers and coverage); every observation is
kept as evidence, as on a watcher of the restrained party's own account. In the same
run, the baseline writes the same rows' columns into the same schema (the migrated
``evidence`` table, its indexes) with one bare driver ``executemany`` per poll, each
poll its own transaction as the store's; all rows in one transaction is printed too.
Each figure is the best of ``--repeat`` runs (other work on the machine only slows a
run down). Prints the figures and the ratios, so the number means something on any
machine. On SQLite always; on PostgreSQL too when ``NOCONTACT_TEST_PG`` names a server
(throw-away databases are made there).

    NOCONTACT_TEST_PG=postgresql+psycopg://postgres@127.0.0.1:5432/test \
        .venv/bin/python -m benchmarks.bench_store [--count 20000] [--batch 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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

from service.coverage import Watched
from service.db import make_engine, migrate
from service.hits import Hit
from service.models import Evidence
from service.planner import AlertPlanner
from service.retention import Retention
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
    retention = Retention(engine)
    watched = Watched(timedelta(minutes=5), (CASE.id,))
    began = time.perf_counter()
    for start in range(0, len(items), batch):
        # Pipeline._store, with the matcher's answer given: one hit in HIT_EVERY.
        screened = store.screen(items[start : start + batch])
        new = screened.fresh
        hits = {i: [hit_for(i)] for i in range(len(new)) if (start + i) % HIT_EVERY == 0}
        kept = retention.split(new, hits, lambda _: True, held=screened.held)
        now = START + timedelta(seconds=start)
        poll = PollRecord("reddit", "reddit", kept.kept, kept.hits, {}, [], now)
        store.record_poll(dataclasses.replace(poll, markers=kept.markers, watched=watched))
    elapsed = time.perf_counter() - began
    engine.dispose()
    return elapsed


def bare_rows(items: list[Observation], driver_time: Callable[[datetime], object]) -> list[Row]:
    """Every column the store writes for these items, as the driver takes them; the
    hashes are placeholders of the same length (hashing is the store's work)."""
    rows = []
    for seq, obs in enumerate(items, start=1):
        digest = f"{seq:064x}"
        values: dict[str, object] = {
            "seq": seq, "platform": obs.platform, "native_id": obs.native_id, "version": 1,
            "kind": obs.kind, "url": obs.url, "author_handle": obs.author_handle,
            "author_id": obs.author_id, "author_display_name": obs.author_display_name,
            "author_created_at": None, "addressed_to": json.dumps(list(obs.addressed_to)),
            "text": obs.text, "posted_at": driver_time(obs.posted_at or START),
            "captured_at": driver_time(START), "watcher": obs.watcher,
            "capture_method": obs.capture_method, "raw": obs.raw,
            "raw_content_type": obs.raw_content_type, "provenance": "null",
            "raw_sha256": digest, "content_sha256": digest, "text_fingerprint": digest,
            "sha256": digest, "chain_sha256": digest,
        }  # fmt: skip
        if list(values) != EVIDENCE_COLUMNS:
            raise SystemExit("bench_store: the evidence table changed; update bare_rows")
        rows.append(tuple(values.values()))
    return rows


EVIDENCE_COLUMNS = [column.name for column in Evidence.__table__.columns if column.name != "id"]
BARE_INSERT = "INSERT INTO evidence ({0}) VALUES ({1})"
Row = tuple[object, ...]


def bare_insert(placeholder: str) -> str:
    return BARE_INSERT.format(
        ", ".join(EVIDENCE_COLUMNS), ", ".join([placeholder] * len(EVIDENCE_COLUMNS))
    )


def batches(rows: list[Row], batch: int) -> list[list[Row]]:
    return [rows[start : start + batch] for start in range(0, len(rows), batch)]


def time_bare_sqlite(path: Path, items: list[Observation], batch: int) -> float:
    """The bare baseline on a freshly migrated SQLite file with the store's pragmas."""
    migrate(make_engine(f"sqlite:///{path}", path.parent))
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    # SQLAlchemy's SQLite DateTime storage format.
    rows = bare_rows(items, lambda value: value.strftime("%Y-%m-%d %H:%M:%S.%f"))
    insert = bare_insert("?")
    began = time.perf_counter()
    for chunk in batches(rows, batch):
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(insert, chunk)
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - began
    connection.close()
    return elapsed


def time_bare_postgres(server: str, items: list[Observation], batch: int) -> float:
    import psycopg

    with throwaway_postgres(server) as url:
        engine = make_engine(url, Path("."))
        migrate(engine)
        engine.dispose()
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as connection:
            rows, insert = bare_rows(items, lambda value: value), bare_insert("%s")
            began = time.perf_counter()
            for chunk in batches(rows, batch):
                with connection.cursor() as cursor:
                    cursor.executemany(insert, chunk)
                connection.commit()
            return time.perf_counter() - began


@contextmanager
def throwaway_postgres(server: str, prefix: str = "bench") -> Iterator[str]:
    """A fresh database on the server, dropped afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def report(name: str, count: int, *figures: float) -> None:
    bare, bare_one, stored = figures
    print(f"{name}:")
    print(f"  bare executemany, a transaction per poll: {bare:.3f} s ({count / bare:,.0f} rows/s)")
    print(f"  bare executemany, all in one transaction: {bare_one:.3f} s"
          f" ({count / bare_one:,.0f} rows/s)")  # fmt: skip
    print(f"  store (Pipeline._store's steps):          {stored:.3f} s"
          f" ({count / stored:,.0f} obs/s, goal ≥ 20k)")  # fmt: skip
    print(f"  ratio store / bare per poll: {stored / bare:.1f}× (goal ≤ 3×);"
          f" to one transaction: {stored / bare_one:.1f}×")  # fmt: skip


def best(repeat: int, run: Callable[[], float]) -> float:
    """The fastest of ``repeat`` runs: on a shared machine the others only add load."""
    return min(run() for _ in range(repeat))


def sqlite_figures(items: list[Observation], batch: int, repeat: int) -> tuple[float, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = iter(range(10 * repeat))  # a fresh database file for every run

        def fresh(name: str) -> Path:
            return folder / f"{name}-{next(runs)}.db"

        return (
            best(repeat, lambda: time_bare_sqlite(fresh("bare"), items, batch)),
            best(repeat, lambda: time_bare_sqlite(fresh("bare"), items, len(items))),
            best(repeat, lambda: time_store(f"sqlite:///{fresh('store')}", folder, items, batch)),
        )


def postgres_figures(
    server: str, items: list[Observation], batch: int, repeat: int
) -> tuple[float, ...]:
    def store_once() -> float:
        with throwaway_postgres(server) as url:
            return time_store(url, Path("."), items, batch)

    return (
        best(repeat, lambda: time_bare_postgres(server, items, batch)),
        best(repeat, lambda: time_bare_postgres(server, items, len(items))),
        best(repeat, store_once),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    items = observations(args.count)
    print(f"observations: {args.count} in polls of {args.batch}, best of {args.repeat} runs")
    report("SQLite", args.count, *sqlite_figures(items, args.batch, args.repeat))
    server = os.environ.get("NOCONTACT_TEST_PG")
    if not server:
        print("PostgreSQL: skipped (set NOCONTACT_TEST_PG to a server URL)")
        return
    report("PostgreSQL", args.count, *postgres_figures(server, items, args.batch, args.repeat))


if __name__ == "__main__":
    main()
