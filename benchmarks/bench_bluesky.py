"""Bluesky's whole network through the watcher's parsing and the matcher, as a ratio to
a bare JSON decode of the same events.

Replays a stream in the shape of the recorded Jetstream corpus
(``tests/fixtures/bluesky/corpus_expected_v1.jsonl``: its post events are the templates,
with synthetic authors and texts; a few name or reply to a protected person, a few come
from restrained parties and their look-alikes) at a paced rate (default 250 events/s,
ten times the network's average of about 25 posts/s), through the same code as
``network: all``: ``parse_event``, the whole-network filter, Observations and
``Matcher.match``. Prints CPU per event, the share of one core at the paced rate and at
the real average, peak memory, and the ratio to ``json.loads`` of the same bytes
measured in the same run.

    .venv/bin/python -m benchmarks.bench_bluesky [--events 5000] [--rate 250] [--cases 100]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_matching import FILLER
from service.matching import Matcher
from service.pipeline import targets_for
from service.settings import CaseSettings
from watchers.bluesky import BlueskySettings, BlueskyWatcher
from watchers.bluesky_events import EventSink
from watchers.bluesky_records import Profile
from watchers.bluesky_state import BlueskyState
from watchers.bluesky_stream import parse_event

CORPUS = Path(__file__).resolve().parent.parent / "tests/fixtures/bluesky/corpus_expected_v1.jsonl"
REAL_AVERAGE_RATE = 25.0  # posts per second on the whole network
GOAL_SHARE = 5.0  # % of one core at the real average rate
# Ordinary English filler, the same as the matching benchmark's.
WORDS = FILLER
FIRST = ["alex", "sam", "kim", "robin", "casey", "morgan", "taylor", "jamie", "noor", "yuki"]
LAST = ["smith", "garcia", "lee", "nguyen", "okafor", "muller", "rossi", "silva", "khan"]


def did(name: str) -> str:
    return "did:plc:" + (name.replace(".", "").replace("-", "") + "0" * 24)[:24]


def make_cases(count: int, rng: random.Random) -> list[CaseSettings]:
    cases = []
    for index in range(count):
        protected = f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}{index}"
        cases.append(
            CaseSettings.model_validate(
                {
                    "id": f"case-{index}",
                    "order": {"effective": "2026-01-01", "terms": ["no_contact", "no_mention"]},
                    "protected": {
                        "names": [protected],
                        "handles": {"bluesky": [f"prot{index}.bsky.social"]},
                    },
                    "restrained": {
                        "names": [f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}"],
                        "handles": {"bluesky": [f"restr{index}.bsky.social"]},
                        "associates": {"bluesky": [f"friend{index}.bsky.social"]},
                    },
                }
            )
        )
    return cases


def make_stream(cases: list[CaseSettings], count: int, rng: random.Random) -> list[bytes]:
    """Post events shaped like the corpus's, as the bytes Jetstream sends."""
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    templates = [
        e
        for e in map(json.loads, lines)
        if e["kind"] == "commit"
        and e["commit"]["collection"] == "app.bsky.feed.post"
        and e["commit"]["operation"] == "create"
    ]
    stream = []
    time_us = templates[0]["time_us"]
    for index in range(count):
        event = copy.deepcopy(rng.choice(templates))
        case = rng.choice(cases)
        record = event["commit"]["record"]
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 50))]
        author = did(f"user{rng.randint(0, 10**6)}")
        roll = rng.random()
        if roll < 0.01:  # names a protected person
            words.insert(rng.randint(0, len(words)), case.protected.names[0])
        elif roll < 0.02:  # replies into a protected person's thread
            ref = {
                "uri": f"at://{did(case.protected.handles['bluesky'][0])}/app.bsky.feed.post/3x",
                "cid": "b",
            }
            record["reply"] = {"root": ref, "parent": ref}
        if roll < 0.005:
            author = did(case.restrained.handles["bluesky"][0])
        record["text"] = " ".join(words)
        event["did"] = author
        event["commit"]["rkey"] = f"3bench{index}"
        time_us += rng.randint(1, 80_000)
        event["time_us"] = time_us
        stream.append(json.dumps(event).encode("utf-8"))
    return stream


def make_watcher(cases: list[CaseSettings]) -> BlueskyWatcher:
    """A ``network: all`` watcher whose identities and profiles are already known, so
    that the benchmark measures parsing and matching, not (absent) network calls."""
    settings = BlueskySettings.model_validate(
        {
            "type": "bluesky",
            "network": "all",
            "realtime": False,
            "appview_url": "http://127.0.0.1:9",
        }
    )
    watcher = BlueskyWatcher(settings, targets_for("bluesky", cases))
    for case in cases:
        for handle in (
            *case.protected.handles["bluesky"],
            *case.restrained.handles["bluesky"],
            *case.restrained.associates["bluesky"],
        ):
            watcher._dids[handle] = did(handle)
    return watcher


class Pipeline:
    """What the service does with one batch of Jetstream events in ``network: all``."""

    def __init__(self, cases: list[CaseSettings]) -> None:
        self.watcher = make_watcher(cases)
        self.matcher = Matcher(cases)
        self.case_ids = [case.id for case in cases]
        self.state = BlueskyState(dids=dict(self.watcher._dids))
        self.kept = 0
        self.hits = 0

    def run(self, batch: list[bytes]) -> None:
        events = [e for e in map(parse_event, batch) if e is not None]
        sink = EventSink(self.watcher, self.state, [])
        sink.stream(events, [])
        for event in events:  # authors' profiles: fetched once each in real life
            self.watcher._asked.add(event.did)
            self.watcher._profiles.setdefault(event.did, Profile(event.did, "x.bsky.social"))
        for obs in sink.observations():
            self.kept += 1
            self.hits += len(self.matcher.match(obs, self.case_ids, self.watcher.lookup_account))
        self.state.recent.clear()


def cpu(action: Callable[[], object]) -> float:
    start = time.process_time()
    action()
    return time.process_time() - start


def paced(
    stream: list[bytes], rate: float, handle: Callable[[list[bytes]], None]
) -> tuple[float, float]:
    """Feed ``stream`` at ``rate`` events/s in 100 ms batches (as polls drain a buffer);
    returns (wall seconds, CPU seconds)."""
    per_batch = max(1, int(rate / 10))
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    for index in range(0, len(stream), per_batch):
        due = wall_start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        handle(stream[index : index + per_batch])
    return time.perf_counter() - wall_start, time.process_time() - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cases = make_cases(args.cases, rng)
    stream = make_stream(cases, args.events, rng)
    size = sum(map(len, stream)) / len(stream)
    print(f"{args.cases} cases, {len(stream)} post events of {size:.0f} bytes on average")

    def bare(batch: list[bytes]) -> None:
        for line in batch:
            json.loads(line)

    baseline = cpu(lambda: bare(stream))
    warm = Pipeline(cases)
    warm.run(stream[:200])  # builds caches, as a running service has them
    pipeline = Pipeline(cases)
    full = cpu(lambda: pipeline.run(stream))
    per_event = full / len(stream)
    print(f"  bare json.loads                 {baseline / len(stream) * 1e6:9.1f} µs/event")
    print(f"  parse + filter + match          {per_event * 1e6:9.1f} µs/event")
    print(f"  ratio to the bare decode        {full / baseline:9.1f}×")
    print(f"  kept for matching: {pipeline.kept}, hits: {pipeline.hits}")

    replay = Pipeline(cases)
    wall, used = paced(stream, args.rate, replay.run)
    print(
        f"  paced replay: {len(stream) / wall:.0f} events/s (asked {args.rate:.0f}), "
        f"CPU {used / wall * 100:.1f}% of one core"
    )
    share = per_event * REAL_AVERAGE_RATE * 100
    verdict = "ok" if share <= GOAL_SHARE else "OVER GOAL"
    print(
        f"  at the real average ({REAL_AVERAGE_RATE:.0f} posts/s): {share:.2f}% of one core "
        f"(goal ≤ {GOAL_SHARE:.0f}%: {verdict})"
    )

    tracemalloc.start()
    Pipeline(cases).run(stream)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  peak memory while processing    {peak / 2**20:9.1f} MiB (tracemalloc)")


if __name__ == "__main__":
    main()
