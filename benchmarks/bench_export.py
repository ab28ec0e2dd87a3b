"""Export benchmark: a packet of N violations (default 10,000) against a bare JSON dump
of the same rows, measured in the same run so the ratios hold on a noisy machine.

    .venv/bin/python -m benchmarks.bench_export [N]

Prints wall time and peak Python memory (tracemalloc) of both, and their ratios. Time
and memory are measured in separate runs, since tracemalloc slows the code it watches.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from service.evidence import (
    GENESIS_CHAIN,
    chain_sha256,
    format_time,
    record_sha256,
    sha256_hex,
    text_fingerprint,
)
from service.export import export_case
from service.models import ChainHead, Evidence, Violation, ViolationEvidence
from tests.fakes.evidence_data import CASE_ID, case_settings, ensure_case, sqlite_sessions

START = datetime(2026, 2, 1, tzinfo=UTC)


def populate_bulk(sessions: sessionmaker[Session], count: int) -> None:
    """``count`` violations with one evidence item each, chained, in bulk inserts."""
    chain = GENESIS_CHAIN
    evidence_rows: list[dict[str, object]] = []
    violation_rows: list[dict[str, object]] = []
    link_rows: list[dict[str, object]] = []
    for seq in range(1, count + 1):
        when = START + timedelta(minutes=47 * seq)
        text = f"message {seq} to Alex Smith " + "lorem ipsum dolor sit amet " * 8
        raw = json.dumps({"id": f"t1_{seq}", "body": text}).encode()
        canonical = {
            "seq": seq,
            "platform": ("reddit", "x", "rss")[seq % 3],
            "native_id": f"t1_{seq}",
            "version": 1,
            "url": f"https://reddit.example/t1_{seq}",
            "author_handle": "jdoe",
            "author_id": "t2_jdoe",
            "posted_at": format_time(when),
            "captured_at": format_time(when),
            "text": text,
            "raw_sha256": sha256_hex(raw),
        }
        sha = record_sha256(canonical)
        chain = chain_sha256(chain, sha)
        evidence_rows.append(
            {
                **canonical,
                "id": seq,
                "posted_at": when,
                "captured_at": when,
                "kind": "reply",
                "author_display_name": "J",
                "addressed_to": [],
                "watcher": "reddit",
                "capture_method": "bench",
                "raw": raw,
                "raw_content_type": "application/json",
                "content_sha256": sha,
                "text_fingerprint": text_fingerprint(text),
                "sha256": sha,
                "chain_sha256": chain,
            }
        )
        vid = f"{seq:08d}-0000-0000-0000-000000000000"
        violation_rows.append(
            {
                "id": vid,
                "case_id": CASE_ID,
                "kind": "contact",
                "severity": "high",
                "suspected": False,
                "reason": "bench",
                "author_key": "jdoe",
                "first_seen": when,
                "last_seen": when,
                "created_at": when,
                "in_order_period": True,
            }
        )
        link_rows.append({"violation_id": vid, "evidence_id": seq, "reason": "bench"})
    with sessions.begin() as session:
        ensure_case(session, case_settings())
        session.add(ChainHead(id=1, seq=count, chain_sha256=chain))
        session.execute(insert(Evidence), evidence_rows)
        session.execute(insert(Violation), violation_rows)
        session.execute(insert(ViolationEvidence), link_rows)


def bare_dump(sessions: sessionmaker[Session], out: Path) -> None:
    """The baseline: every row of the case read at once and dumped as JSON."""
    with sessions() as session:
        rows = session.execute(
            select(Violation.id, Violation.kind, Violation.first_seen, Evidence.text,
                   Evidence.sha256, Evidence.raw)
            .join(ViolationEvidence, ViolationEvidence.violation_id == Violation.id)
            .join(Evidence, Evidence.id == ViolationEvidence.evidence_id)
            .where(Violation.case_id == CASE_ID)
        ).all()  # fmt: skip
        data = [
            {"id": r[0], "kind": r[1], "first_seen": format_time(r[2]), "text": r[3],
             "sha256": r[4], "raw": r[5].decode()}
            for r in rows
        ]  # fmt: skip
    out.write_text(json.dumps(data), encoding="utf-8")


def measure(work: Callable[[], None], *, memory: bool) -> float:
    if not memory:
        began = time.perf_counter()
        work()
        return time.perf_counter() - began
    tracemalloc.start()
    try:
        work()
        return float(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _, sessions = sqlite_sessions(root)
        populate_bulk(sessions, count)
        runs = iter(range(100))
        last = {"done": 0}

        def progress(done: int, total: int) -> None:
            last["done"] = done

        def export() -> None:
            out = root / f"packet-{next(runs)}"
            export_case(sessions, case_settings(), out, now=datetime.now(UTC),
                        progress=progress)  # fmt: skip

        def baseline() -> None:
            bare_dump(sessions, root / f"bare-{next(runs)}.json")

        base_time = measure(baseline, memory=False)
        export_time = measure(export, memory=False)
        assert last["done"] == count
        base_peak = measure(baseline, memory=True)
        export_peak = measure(export, memory=True)
    print(f"violations: {count}")
    print(f"bare JSON dump: {base_time:8.2f} s  peak {base_peak / 2**20:8.1f} MiB")
    print(f"export packet : {export_time:8.2f} s  peak {export_peak / 2**20:8.1f} MiB")
    print(
        f"ratio export/bare: time {export_time / base_time:.1f}x, "
        f"peak memory {export_peak / base_peak:.2f}x"
    )


if __name__ == "__main__":
    main()
