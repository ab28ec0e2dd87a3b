"""A simulated clinic: many cases, many sources, several replicas on PostgreSQL (#15).

Serves ``--sources`` tiny RSS feeds over HTTP on ``--hosts`` loopback addresses
(127.0.2.1 …, one server each, 50 ms added to every response for a network round
trip), with ETags: in the steady state almost every poll is a conditional GET answered
304. One feed in ``--change`` gains an entry every interval, written by its case's
restrained party and naming the protected person (evidence to store); one static feed
in twenty names its protected person (matching does real work). Writes one config with
``--cases`` cases and one RSS watcher per source (each serving one case, five sources a
case at full scale), makes a throw-away PostgreSQL database, and starts ``--replicas``
``nocontact run`` service processes on it, which share the watchers through the
leases (``service/leases.py``).

After the start and a first round (every source polled once), it measures
``--intervals`` intervals of ``--interval`` seconds and prints:

- polls per source per interval (1.0 is ideal), with the sources polled twice within
  half an interval (doubled) and those left unpolled for 1.5 intervals (missed);
- CPU per poll: user+sys of the replica processes over the window ÷ the polls, against
  a bare ``httpx`` conditional GET answered 304 by the same servers, measured in the
  same run (a process doing only that, 16 at a time);
- connections: peak PostgreSQL connections to the database (``pg_stat_activity``) and
  HTTP connections opened and open at once, counted by the servers.

Then it stops the replicas (SIGTERM) and drops the database.

    .venv/bin/python -m benchmarks.bench_clinic     # the full clinic: ~35 min on 2 cores
    .venv/bin/python -m benchmarks.bench_clinic --sources 5000 --interval 120 --intervals 2
    .venv/bin/python -m benchmarks.bench_clinic --cases 50 --sources 200 --replicas 2 \
        --interval 30 --hosts 20 --change 10 --baseline 200    # a smoke test, ~1 min
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from statistics import median

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import ProgrammingError

from benchmarks.bench_feeds import answer_feed, serving
from benchmarks.bench_store import throwaway_postgres

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
SYLLABLES = "ka ro mi te su na lo vi be da ge hu jo pe ri zo".split()  # noqa: SIM905
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def word(number: int) -> str:
    """A pronounceable word per number (four syllables: 65,536 of them)."""
    parts = [SYLLABLES[(number >> shift) & 15] for shift in (0, 4, 8, 12)]
    return "".join(parts).capitalize()


def protected_name(case: int) -> str:
    return f"{word(case)} {word(case + 20_000)}"


def restrained_handle(case: int) -> str:
    return f"r{case:05d}{word(case + 40_000).lower()}"


# The feed server -----------------------------------------------------------------------


@dataclass
class Traffic:
    """What the servers saw: (time, source, status) of every request, connections."""

    began: float
    interval: float
    change: int
    cases: int
    # (time, source, status, replica): the replica is told by its User-Agent.
    requests: list[tuple[float, int, int, int]] = field(default_factory=list)
    baseline: int = 0
    opened: int = 0
    open_now: int = 0
    open_peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def connection(self, delta: int) -> None:
        with self.lock:
            self.opened += max(0, delta)
            self.open_now += delta
            self.open_peak = max(self.open_peak, self.open_now)

    def epoch(self, source: int) -> int:
        """How many times this source's feed has changed so far (0 for static feeds)."""
        if source % self.change:
            return 0
        return int((time.monotonic() - self.began) // self.interval)


def feed_xml(source: int, case: int, epoch: int) -> bytes:
    items = []
    if source % 20 == 1:  # a stranger names the protected person: matched, not evidence
        items.append(("reader", f"saw {protected_name(case)} at the market", "static"))
    else:
        items.append(("reader", f"notes {source} on gardens", "static"))
    for number in range(max(1, epoch - 2), epoch + 1):
        items.append((restrained_handle(case), f"{protected_name(case)}, answer me", number))
    rendered = "".join(
        f"<item><title>entry {key}</title><link>http://feeds.example/{source}/{key}</link>"
        f"<guid>s{source}-{key}</guid><author>{author}</author>"
        f"<pubDate>{format_datetime(START + timedelta(minutes=index))}</pubDate>"
        f"<description>{body}</description></item>"
        for index, (author, body, key) in enumerate(items)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>feed {source}</title><link>http://feeds.example/{source}</link>"
        f"<description>clinic</description>{rendered}</channel></rss>"
    ).encode()


def handler(traffic: Traffic) -> type:
    class Feed(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a pooled client expects
        timeout = 30  # an idle kept-alive connection is closed after this

        def setup(self) -> None:
            super().setup()
            traffic.connection(+1)

        def finish(self) -> None:
            traffic.connection(-1)
            super().finish()

        def do_GET(self) -> None:  # http.server's name
            time.sleep(DELAY)  # a network round trip
            path, _, query = self.path.partition("?")
            source = int(path.rsplit("/", 1)[-1].removesuffix(".xml"))
            epoch = traffic.epoch(source)
            etag = f'"{source}-{epoch}"'
            fresh = self.headers.get("If-None-Match") == etag
            agent = self.headers.get("User-Agent", "")
            replica = int(agent.rsplit(" ", 1)[-1]) if agent.startswith("clinic ") else -1
            with traffic.lock:
                if query:
                    traffic.baseline += 1
                else:
                    status = 304 if fresh else 200
                    traffic.requests.append((time.monotonic(), source, status, replica))
            body = None if fresh else feed_xml(source, source % traffic.cases, epoch)
            answer_feed(self, etag, body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Feed


DELAY = 0.05


@contextmanager
def feed_servers(hosts: int, sources: int, traffic: Traffic) -> Iterator[list[str]]:
    """Starts one server per loopback address; yields every source's URL."""
    paths = [f"/f/{s}.xml" for s in range(sources)]
    with serving("127.0.2", hosts, handler(traffic), paths, backlog=256) as urls:
        yield urls


# The clinic's config and database -----------------------------------------------------


def write_config(folder: Path, database: str, cases: int, urls: Sequence[str], every: int) -> Path:
    lines = [f"database: {database}", "max_concurrent_polls: 16", "cases:"]
    for case in range(cases):
        lines += [
            f"  - id: case{case:05d}",
            "    order: {effective: 2026-01-15}",
            f"    protected: {{names: [{protected_name(case)}]}}",
            f"    restrained: {{names: [{word(case + 60_000)} {word(case + 40_000)}], "
            f"handles: {{rss: [{restrained_handle(case)}]}}}}",
        ]
    lines.append("watchers:")
    for source, url in enumerate(urls):
        lines += [
            f"  - type: rss\n    name: s{source:05d}\n    url: {url}\n    every: {every}s",
            f"    cases: [case{source % cases:05d}]",
            # Tells the servers which replica polled (the config is the same for all).
            '    user_agent: "clinic ${CLINIC_REPLICA}"',
        ]
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Sampler(threading.Thread):
    """Peak PostgreSQL connections to the clinic's database, sampled every second."""

    def __init__(self, server: str, database: str) -> None:
        super().__init__(daemon=True)
        self._engine = create_engine(make_url(server), pool_size=1)
        self._database = database
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name")
        with self._engine.connect() as connection:
            while not self.stop.wait(1.0):
                count = connection.execute(query, {"name": self._database}).scalar_one()
                self.peak = max(self.peak, int(count))
                connection.rollback()
        self._engine.dispose()


def scalar(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar_one() or 0)
    finally:
        engine.dispose()


# The replicas ----------------------------------------------------------------------------


def start_replicas(count: int, config: Path, folder: Path) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "service", "run", "-c", str(config)]
    replicas = []
    for number in range(count):
        env = {**os.environ, "PYTHONPATH": str(REPO), "CLINIC_REPLICA": str(number)}
        with (folder / f"replica-{number}.log").open("wb") as log:
            replicas.append(
                subprocess.Popen(  # noqa: S603
                    command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            )
    return replicas


def cpu_seconds(pid: int) -> float:
    """user+sys of a live process so far, every thread included (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def backend_cpu(database: str, before: dict[int, float]) -> dict[int, float]:
    """CPU seconds of the PostgreSQL backends serving the database (by pid), less what
    ``before`` had for each; a backend that came or went in between is left out."""
    name = make_url(database).database
    engine = create_engine(make_url(database))
    try:
        with engine.connect() as connection:
            query = text("SELECT pid FROM pg_stat_activity WHERE datname = :name")
            pids = connection.execute(query, {"name": name}).scalars().all()
            mine = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    finally:
        engine.dispose()
    spent = {}
    for pid in pids:
        if pid == mine or (before and pid not in before):
            continue
        try:
            spent[pid] = cpu_seconds(pid) - before.get(pid, 0.0)
        except OSError:  # gone meanwhile
            continue
    return spent


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stop_replicas(replicas: Sequence[subprocess.Popen[bytes]]) -> None:
    for replica in replicas:
        if replica.poll() is None:
            replica.send_signal(signal.SIGTERM)
    for replica in replicas:
        try:
            replica.wait(timeout=120)
        except subprocess.TimeoutExpired:
            replica.kill()
            replica.wait()


def wait_until(
    what: str, done: object, limit: float, replicas: Sequence[subprocess.Popen[bytes]]
) -> float:
    """Seconds until ``done()`` holds; fails when a replica dies or ``limit`` passes."""
    began = time.monotonic()
    while not done():  # type: ignore[operator]
        dead = [r.args for r in replicas if r.poll() is not None]
        if dead:
            raise RuntimeError(f"a replica exited while waiting for {what}; see its log")
        if time.monotonic() - began > limit:
            raise RuntimeError(f"{what}: not within {limit:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - began


# The baseline -------------------------------------------------------------------------

BASELINE = """
import resource, sys, httpx
from concurrent.futures import ThreadPoolExecutor
urls = sys.argv[1:]
client = httpx.Client()
def get(pair):
    url, etag = pair
    return client.get(url + "?baseline", headers={"If-None-Match": etag}).status_code
pairs = [(u.split(" ")[0], u.split(" ")[1]) for u in urls]
list(ThreadPoolExecutor(16).map(get, pairs[:32]))  # warm the pool
before = resource.getrusage(resource.RUSAGE_SELF)
codes = list(ThreadPoolExecutor(16).map(get, pairs))
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(cpu, len(codes), sum(code == 304 for code in codes))
"""


def baseline_cpu(urls: Sequence[str], traffic: Traffic, count: int) -> float:
    """CPU seconds of one bare conditional GET answered 304 (httpx, 16 at a time)."""
    static = [s for s in range(len(urls)) if s % traffic.change][:count]
    pairs = [f'{urls[s]} "{s}-0"' for s in static]
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", BASELINE, *pairs], capture_output=True, check=True, text=True
    )
    cpu, total, not_modified = done.stdout.split()
    if int(not_modified) != int(total):
        raise RuntimeError("the baseline's requests were not all answered 304")
    return float(cpu) / int(total)


# The figures ----------------------------------------------------------------------------


@dataclass
class Window:
    began: float
    ended: float
    cpu: float
    database_cpu: float = 0.0

    @property
    def length(self) -> float:
        return self.ended - self.began


def poll_figures(
    traffic: Traffic, window: Window, sources: int
) -> tuple[dict[str, float], dict[int, int]]:
    """Polls in the window, and each source's gaps between its consecutive polls (the
    last one before the window included): a gap under half an interval is a doubled
    poll (by two replicas: a lease failed; by one: its scheduler catching up), a gap
    over 1.5 intervals (or none by the window's end) a missed one."""
    with traffic.lock:
        requests = [r for r in traffic.requests if r[0] < window.ended]
    polls: dict[int, list[tuple[float, int]]] = {}
    for when, source, _status, replica in requests:
        polls.setdefault(source, []).append((when, replica))
    figures = dict.fromkeys(("doubled_apart", "doubled_same", "missed"), 0.0)
    gaps: list[float] = []
    for source in range(sources):
        seen = polls.get(source, [])
        before = [p for p in seen if p[0] < window.began][-1:]
        points = before + [p for p in seen if p[0] >= window.began]
        for (a, by_a), (b, by_b) in itertools.pairwise(points):
            gaps.append(b - a)
            if b - a < 0.5 * traffic.interval:
                figures["doubled_apart" if by_a != by_b else "doubled_same"] += 1
        last = points[-1][0] if points else 0.0
        steps = [b[0] - a[0] for a, b in itertools.pairwise(points)]
        figures["missed"] += any(step > 1.5 * traffic.interval for step in steps) or (
            window.ended - last > 1.5 * traffic.interval
        )
    inside = [r for r in requests if r[0] >= window.began]
    figures["polls"] = len(inside)
    figures["not_modified"] = sum(r[2] == 304 for r in inside)
    figures["per_source_interval"] = len(inside) / sources / (window.length / traffic.interval)
    figures["median_gap"] = median(gaps) / traffic.interval if gaps else 0.0
    return figures, dict(sorted(Counter(r[3] for r in inside).items()))


def report(
    args: argparse.Namespace,
    result: tuple[dict[str, float], dict[int, int]],
    window: Window,
    bare: float,
) -> None:
    figures, by_replica = result
    polls = max(1, int(figures["polls"]))
    per_poll = window.cpu / polls
    print(f"  window: {window.length:.0f} s = {window.length / args.interval:.2f} intervals")
    print(
        f"  polls: {polls} ({figures['not_modified']:.0f} answered 304); "
        f"polls per source per interval {figures['per_source_interval']:.3f} (ideal 1.0); "
        f"median gap between a source's polls {figures['median_gap']:.3f} intervals"
    )
    print(
        f"  polls within half an interval of the source's previous one: "
        f"{figures['doubled_apart']:.0f} by another replica (doubled), "
        f"{figures['doubled_same']:.0f} by the same (its scheduler catching up); "
        f"sources left unpolled for 1.5 intervals: {figures['missed']:.0f}"
    )
    print(f"  polls per replica (0 …): {list(by_replica.values())}")
    print(
        f"  CPU per poll (replicas' user+sys ÷ polls): {per_poll * 1000:.2f} ms; "
        f"bare httpx 304 GET: {bare * 1000:.2f} ms; ratio {per_poll / bare:.1f}×"
    )
    database = (
        f"{window.database_cpu:.0f} s ({window.database_cpu / polls * 1000:.2f} ms per poll)"
        if window.database_cpu
        else "not measured (no backend lived through the window: the pool churns)"
    )
    print(
        f"  replicas' CPU in the window: {window.cpu:.0f} s of {window.length:.0f} s "
        f"({window.cpu / window.length:.2f} cores); PostgreSQL's backends for them: {database}"
    )


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--sources", type=int, default=50_000)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--interval", type=int, default=600, help="every, in seconds")
    parser.add_argument("--intervals", type=float, default=1.0, help="intervals measured")
    parser.add_argument("--hosts", type=int, default=200, help="loopback addresses serving")
    parser.add_argument("--change", type=int, default=100, help="one feed in N changes")
    parser.add_argument("--baseline", type=int, default=2000, help="bare GETs for the baseline")
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--start-limit", type=float, default=900, help="seconds to wait")
    return parser.parse_args()


def run(args: argparse.Namespace, folder: Path, database: str) -> None:
    traffic = Traffic(time.monotonic(), args.interval, args.change, args.cases)
    with feed_servers(min(args.hosts, args.sources), args.sources, traffic) as urls:
        began = time.perf_counter()
        config = write_config(folder, database, args.cases, urls, args.interval)
        print(f"config written in {time.perf_counter() - began:.1f} s")
        sampler = Sampler(args.postgres, make_url(database).database or "")
        sampler.start()
        traffic.began = time.monotonic()
        replicas = start_replicas(args.replicas, config, folder)
        try:
            measure(args, traffic, urls, replicas, database, sampler)
        finally:
            stop_replicas(replicas)
            sampler.stop.set()
            sampler.join()
        print(f"  peak PostgreSQL connections to the database: {sampler.peak}")
        rows = scalar(database, "SELECT count(*) FROM evidence")
        print(f"  evidence rows: {rows}")


def measure(
    args: argparse.Namespace,
    traffic: Traffic,
    urls: Sequence[str],
    replicas: Sequence[subprocess.Popen[bytes]],
    database: str,
    sampler: Sampler,
) -> None:
    def alive() -> bool:
        try:
            return scalar(database, "SELECT count(*) FROM heartbeat") >= args.replicas
        except ProgrammingError:  # the first replica has not made the tables yet
            return False

    def polled() -> bool:
        with traffic.lock:
            return len({r[1] for r in traffic.requests}) >= args.sources

    started = wait_until("every replica's heartbeat", alive, args.start_limit, replicas)
    print(f"  start: {started:.1f} s until every replica beat")
    first = wait_until("a first poll of every source", polled, args.start_limit * 2, replicas)
    print(f"  first round: every source polled {first:.1f} s later")
    cpu = sum(cpu_seconds(r.pid) for r in replicas)
    backends = backend_cpu(database, {})
    window = Window(time.monotonic(), time.monotonic() + args.intervals * args.interval, 0.0)
    while time.monotonic() < window.ended:
        if any(r.poll() is not None for r in replicas):
            raise RuntimeError("a replica exited during the window; see its log")
        time.sleep(1.0)
    window.cpu = sum(cpu_seconds(r.pid) for r in replicas) - cpu
    window.database_cpu = sum(backend_cpu(database, backends).values())
    opened, open_peak = traffic.opened, traffic.open_peak
    bare = baseline_cpu(urls, traffic, args.baseline)
    report(args, poll_figures(traffic, window, args.sources), window, bare)
    held = scalar(database, "SELECT count(DISTINCT holder) FROM watcher_leases")
    most = scalar(
        database, "SELECT max(n) FROM (SELECT count(*) AS n FROM watcher_leases GROUP BY holder) x"
    )
    print(f"  leases: held by {held} replicas, at most {most} by one")
    print(
        f"  HTTP connections (server side, until the window's end): {opened} opened, "
        f"at most {open_peak} open at once"
    )
    rss = ", ".join(f"{peak_rss_mb(r.pid):.0f}" for r in replicas)
    print(f"  replicas' peak RSS: {rss} MB")


def main() -> None:
    args = arguments()
    print(
        f"clinic: {args.cases} cases, {args.sources} sources on {args.hosts} hosts, "
        f"{args.replicas} replicas, every {args.interval} s, {args.intervals} interval(s) measured"
    )
    server = throwaway_postgres(args.postgres, "bench_clinic")
    with tempfile.TemporaryDirectory() as tmp, server as database:
        run(args, Path(tmp), database)


if __name__ == "__main__":
    main()
