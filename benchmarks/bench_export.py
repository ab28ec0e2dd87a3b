"""Export benchmark: a packet of N violations against a bare JSON dump of the same rows,
for two counts (default 1,000 and 10,000) so that growth with the count shows.

    .venv/bin/python -m benchmarks.bench_export [N ...]

Each run (the dump or the export, at each count) is its own child process over a store
populated beforehand, so that its wall time and peak RSS are its own: the child reports
its resident memory before the work (interpreter and imports) and its peak (VmHWM).
Prints both, the growth from the smallest count to the largest, and the ratios to the
dump measured in the same run (the machine's load affects both sides).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
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


def _status_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, in MiB. Not
    getrusage's ru_maxrss: on Linux that keeps the parent's peak across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(kind: str, folder: str) -> None:
    """One measured run in this (fresh) process; prints its figures as JSON."""
    root = Path(folder)
    _, sessions = sqlite_sessions(root)
    if kind == "export":
        # The report stack is imported by the export on first use: count it in.
        import service.report_pdf  # noqa: F401
    before = _status_mib("VmRSS")
    began = time.perf_counter()
    if kind == "export":
        result = export_case(sessions, case_settings(), root / "packet", now=datetime.now(UTC))
        assert result.violations > 0
    else:
        bare_dump(sessions, root / "bare.json")
    seconds = time.perf_counter() - began
    peak = _status_mib("VmHWM")
    print(json.dumps({"seconds": seconds, "before": before, "peak": peak}))


def _run(kind: str, folder: Path) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 (this same script, our own arguments)
        [sys.executable, "-m", "benchmarks.bench_export", "--child", kind, str(folder)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    figures: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return figures


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3])
        return
    counts = [int(arg) for arg in sys.argv[1:]] or [1_000, 10_000]
    results: dict[int, dict[str, dict[str, float]]] = {}
    for count in counts:
        with tempfile.TemporaryDirectory() as folder:
            _, sessions = sqlite_sessions(Path(folder))
            populate_bulk(sessions, count)
            results[count] = {kind: _run(kind, Path(folder)) for kind in ("bare", "export")}
    print("violations | bare dump: s, peak RSS (of it before work) | export: s, peak RSS | "
          "ratio export/bare: time, peak")  # fmt: skip
    for count, runs in results.items():
        bare, export = runs["bare"], runs["export"]
        print(
            f"{count:10d} | {bare['seconds']:6.2f} s {bare['peak']:6.1f} MiB "
            f"({bare['before']:5.1f}) | {export['seconds']:6.2f} s {export['peak']:6.1f} MiB "
            f"({export['before']:5.1f}) | {export['seconds'] / bare['seconds']:5.1f}x "
            f"{export['peak'] / bare['peak']:5.2f}x"
        )
    if len(counts) > 1:
        low, high = results[counts[0]], results[counts[-1]]
        factor = counts[-1] / counts[0]
        for kind in ("bare", "export"):
            growth = high[kind]["peak"] - low[kind]["peak"]
            per = growth / (counts[-1] - counts[0]) * 1000
            slower = high[kind]["seconds"] / low[kind]["seconds"]
            print(f"{kind}: {factor:.0f}x the violations -> peak RSS {growth:+.1f} MiB "
                  f"({per:.2f} MiB per 1,000), time {slower:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
