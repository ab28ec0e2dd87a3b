"""How much storing costs compared with the bare minimum of writing the same rows.

Records N observations through ``Store.record_poll`` in poll-sized batches (dedup,
hashing, chain, a few violations and alerts) and, in the same run, inserts the same
number of rows of the same width with one bare ``sqlite3`` ``executemany``. Prints both
and their ratio, so the number means something on any machine.

    .venv/bin/python -m benchmarks.bench_store [--count 20000] [--batch 100]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

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


def time_store(folder: Path, items: list[Observation], batch: int) -> float:
    engine = make_engine("sqlite:///store.db", folder)
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
    rows = [
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
    with connection:
        connection.executemany(
            "INSERT INTO evidence (seq, platform, native_id, url, author, text, posted_at,"
            " raw, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    elapsed = time.perf_counter() - began
    connection.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    items = observations(args.count)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bare = time_bare_sqlite(folder, items)
        stored = time_store(folder, items, args.batch)
    print(f"observations:            {args.count} in batches of {args.batch}")
    print(f"bare sqlite executemany: {bare:.3f} s ({args.count / bare:,.0f} rows/s)")
    print(f"Store.record_poll:       {stored:.3f} s ({args.count / stored:,.0f} obs/s)")
    print(f"ratio store / bare:      {stored / bare:.1f}x")


if __name__ == "__main__":
    main()
