"""Start time and idle memory of the service, against a bare interpreter (#15).

Starts ``nocontact run`` on one local feed (a ``file:`` URL, so no network is timed),
waits for the log line of the first poll, lets it idle, then reads its resident memory
(VmRSS) and stops it with SIGTERM. In the same run, ``python -c pass`` gives the
interpreter's own start time and memory. Prints both and their ratio; the goal is
≤ 1.0 s from start to first poll and ≤ 60 MB idle.

Two starts are timed: on an existing store (``nocontact db upgrade`` made it beforehand,
as any earlier start would have; every start but the first is this one, and the goal
is about it) and on a new store (the very first start, which also runs the migrations).

    .venv/bin/python -m benchmarks.bench_start [--runs 3] [--idle 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FEED = REPO / "examples" / "community-forum.xml"
FIRST_POLL = "watcher forum:"


def config(tmp: Path) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        f"database: sqlite:///{tmp / 'nocontact.db'}\n"
        "cases:\n"
        "  - id: bench\n"
        "    order: {effective: 2026-01-15}\n"
        "    protected: {names: [Alex Smith]}\n"
        "    restrained: {names: [John Doe], handles: {rss: [jdoe]}}\n"
        "watchers:\n"
        "  - type: rss\n"
        "    name: forum\n"
        f"    url: {FEED.as_uri()}\n"
        "    every: 10m\n",
        encoding="utf-8",
    )
    return path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def baseline() -> tuple[float, int]:
    """A bare interpreter: seconds to run ``pass`` and its peak resident memory."""
    start = time.perf_counter()
    code = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    return time.perf_counter() - start, int(out.stdout)


def service_once(idle: float, *, new_store: bool) -> tuple[float, int]:
    """Seconds from starting ``nocontact run`` to its first poll's log line; idle RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        path = config(Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        if not new_store:
            upgrade = [sys.executable, "-m", "service", "db", "upgrade", "-c", str(path)]
            subprocess.run(upgrade, cwd=tmp, env=env, check=True, capture_output=True)  # noqa: S603
        start = time.perf_counter()
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "service", "run", "-c", str(path)],
            cwd=tmp,
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stderr is not None
        try:
            for line in proc.stderr:
                if FIRST_POLL in line:
                    break
            else:
                raise RuntimeError("the service ended before its first poll")
            first_poll = time.perf_counter() - start
            time.sleep(idle)
            memory = rss_kib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    return first_poll, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before RSS")
    args = parser.parse_args()
    bare = [baseline() for _ in range(args.runs)]
    bare_s = min(s for s, _ in bare)
    bare_kib = min(k for _, k in bare)
    print(f"{'bare python -c pass:':<48} {bare_s:6.2f} s, {bare_kib / 1024:6.1f} MB RSS")
    for new_store, label in ((False, "existing store"), (True, "new store (migrations)")):
        runs = [service_once(args.idle, new_store=new_store) for _ in range(args.runs)]
        first = min(s for s, _ in runs)
        idle_kib = min(k for _, k in runs)
        print(
            f"{'nocontact run, one feed, ' + label + ':':<48} {first:6.2f} s to first poll, "
            f"{idle_kib / 1024:6.1f} MB idle RSS; "
            f"ratio: start {first / bare_s:.1f}×, memory {idle_kib / bare_kib:.1f}× the bare run"
        )
    print(f"goal (existing store): ≤ 1.0 s, ≤ 60 MB; best of {args.runs} runs each")


if __name__ == "__main__":
    main()
