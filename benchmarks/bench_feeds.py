"""A clinic's feeds: 200 local feeds × 20 entries, 50 ms added to every response (#15).

Serves the feeds over HTTP on 100 loopback addresses (127.0.1.1 … 127.0.1.100, two feeds
each, as a clinic's feeds sit on many hosts), with ETag support and a 50 ms delay per
response standing for a network round trip. Runs ``nocontact run --once`` twice: the
first poll (everything new) and the steady state (nothing changed: every request is
conditional and answered 304, nothing new is written). Prints wall time, peak memory
(the child's maxrss), requests, 304 answers and new evidence rows for each.

When ``pip install rss2email`` works into a temporary virtualenv of its own, the same
feeds are read by ``r2e run --no-send`` in the same run, as the reference; otherwise
the reference is reported as unavailable.

    .venv/bin/python -m benchmarks.bench_feeds [--feeds 200] [--entries 20] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
HOSTS = 100
START = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@dataclass
class Counters:
    requests: int = 0
    not_modified: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, not_modified: bool) -> None:
        with self.lock:
            self.requests += 1
            self.not_modified += int(not_modified)

    def take(self) -> tuple[int, int]:
        with self.lock:
            taken = (self.requests, self.not_modified)
            self.requests = self.not_modified = 0
            return taken


def feed_xml(number: int, entries: int) -> bytes:
    items = []
    for entry in range(entries):
        # One feed in ten carries a reply by the restrained party: a few hits to store.
        author = "jdoe" if number % 10 == 0 and entry == 0 else f"reader{number}_{entry}"
        text = "Alex Smith, answer me" if author == "jdoe" else f"notes {number}/{entry} on gardens"
        when = format_datetime(START + timedelta(minutes=entry))
        items.append(
            f"<item><title>entry {entry}</title><link>http://feeds.example/{number}/{entry}</link>"
            f"<guid>feed{number}-entry{entry}</guid><author>{escape(author)}</author>"
            f"<pubDate>{when}</pubDate><description>{escape(text)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>feed {number}</title><link>http://feeds.example/{number}</link>"
        f"<description>bench</description>{''.join(items)}</channel></rss>"
    ).encode()


def handler(bodies: dict[str, bytes], delay: float, counters: Counters) -> type:
    class Feed(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            time.sleep(delay)  # a network round trip
            body = bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return
            etag = f'"{abs(hash(body))}"'
            fresh = self.headers.get("If-None-Match") == etag
            counters.count(fresh)
            answer_feed(self, etag, None if fresh else body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Feed


def answer_feed(request: BaseHTTPRequestHandler, etag: str, body: bytes | None) -> None:
    """The feed with its ETag, or 304 Not Modified when ``body`` is None (the client's
    If-None-Match named the current ETag)."""
    request.send_response(304 if body is None else 200)
    request.send_header("ETag", etag)
    if body is not None:
        request.send_header("Content-Type", "application/rss+xml")
        request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    if body is not None:
        request.wfile.write(body)


@contextmanager
def serving(
    network: str, hosts: int, handler_class: type, paths: Sequence[str], backlog: int = 5
) -> Iterator[list[str]]:
    """One threading HTTP server on each loopback address ``network.1`` to
    ``network.<hosts>``; yields every path's URL, the paths dealt to the servers in turn."""
    servers = []
    for host in range(hosts):
        server = ThreadingHTTPServer((f"{network}.{host + 1}", 0), handler_class)
        server.daemon_threads = True
        server.request_queue_size = backlog
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        yield [
            f"http://{network}.{n % hosts + 1}:{servers[n % hosts].server_port}{path}"
            for n, path in enumerate(paths)
        ]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@contextmanager
def feed_servers(feeds: int, entries: int, delay: float, counters: Counters) -> Iterator[list[str]]:
    """Starts the servers; yields every feed's URL."""
    bodies = {f"/feed/{n}.xml": feed_xml(n, entries) for n in range(feeds)}
    feed = handler(bodies, delay, counters)
    with serving("127.0.1", min(HOSTS, feeds), feed, list(bodies)) as urls:
        yield urls


def config(folder: Path, urls: Sequence[str]) -> Path:
    lines = [
        f"database: sqlite:///{folder / 'nocontact.db'}",
        "cases:",
        "  - id: bench",
        "    order: {effective: 2026-01-15}",
        "    protected: {names: [Alex Smith]}",
        "    restrained: {names: [John Doe], handles: {rss: [jdoe]}}",
        "watchers:",
    ]
    for number, url in enumerate(urls):
        lines += [f"  - type: rss\n    name: feed-{number}\n    url: {url}\n    every: 10m"]
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def timed_child(command: Sequence[str], cwd: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds) of one child process. The CPU time
    says how much of the wall was work, on a machine shared with other load."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Its log goes to a file: a pipe nobody reads would stop a chatty child when full.
    with tempfile.TemporaryFile() as log:
        began = time.perf_counter()
        proc = subprocess.Popen(  # noqa: S603
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - began
        if status != 0:
            log.seek(0)
            raise RuntimeError(f"{command[2:4]} failed: {log.read().decode()[-500:]}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def evidence_rows(folder: Path) -> int:
    with sqlite3.connect(folder / "nocontact.db") as connection:
        (count,) = connection.execute("SELECT count(*) FROM evidence").fetchone()
        return int(count)


def rss2email(folder: Path) -> Path | None:
    """rss2email in a virtualenv of its own, or None when it cannot be installed."""
    venv = folder / "r2e-venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)  # noqa: S603
        pip = [str(venv / "bin" / "pip"), "install", "-q", "rss2email"]
        subprocess.run(pip, check=True, timeout=300, capture_output=True)  # noqa: S603
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"rss2email: not available ({type(exc).__name__}); no reference in this run")
        return None
    return venv / "bin" / "r2e"


def r2e_setup(r2e: Path, folder: Path, urls: Sequence[str]) -> list[str]:
    base = [str(r2e), "-c", str(folder / "r2e.cfg"), "-d", str(folder / "r2e.json")]
    subprocess.run([*base, "new", "bench@example.org"], check=True, capture_output=True)  # noqa: S603
    outlines = "".join(
        f'<outline type="rss" text="feed-{n}" xmlUrl="{url}"/>' for n, url in enumerate(urls)
    )
    opml = folder / "feeds.opml"
    opml.write_text(f'<?xml version="1.0"?><opml version="1.0"><body>{outlines}</body></opml>')
    subprocess.run([*base, "opmlimport", str(opml)], check=True, capture_output=True)  # noqa: S603
    return [*base, "run", "--no-send"]


def show(
    label: str, timed: tuple[float, float, float], counters: Counters, extra: str = ""
) -> None:
    wall, peak, cpu = timed
    requests, not_modified = counters.take()
    print(
        f"  {label:<38} {wall:6.2f} s ({cpu:5.2f} s CPU)  {peak:6.1f} MB peak  "
        f"{requests} requests ({not_modified} answered 304){extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per response")
    args = parser.parse_args()
    counters = Counters()
    print(f"{args.feeds} feeds × {args.entries} entries, {args.delay * 1000:.0f} ms per response")
    with (
        tempfile.TemporaryDirectory() as tmp,
        feed_servers(args.feeds, args.entries, args.delay, counters) as urls,
    ):
        folder = Path(tmp)
        path = config(folder, urls)
        once = [sys.executable, "-m", "service", "run", "--once", "-c", str(path)]
        results = {}
        for label in ("first poll", "steady state"):
            before = evidence_rows(folder) if label != "first poll" else 0
            timed = timed_child(once, folder)
            written = evidence_rows(folder) - before
            results[label] = timed[0]
            show(f"nocontact run --once, {label}", timed, counters, f", {written} new rows")
        r2e = rss2email(folder)
        if r2e is None:
            return
        command = r2e_setup(r2e, folder, urls)
        for label in ("first poll", "steady state"):
            timed = timed_child(command, folder)
            show(f"rss2email run --no-send, {label}", timed, counters)
            print(f"    nocontact / rss2email: {results[label] / timed[0]:.2f}× (goal ≤ 0.2×)")


if __name__ == "__main__":
    main()
