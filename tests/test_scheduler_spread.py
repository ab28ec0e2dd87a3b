"""The first polls after a start: spread so that the pool can start each in time (#15)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from service.config import load_config
from service.scheduler import MISFIRE_GRACE, Service, first_poll_spread

CASE = """\
database: sqlite:///nc.db
max_concurrent_polls: 2
cases:
  - id: c
    order: {effective: 2026-01-15}
    protected: {names: [Alex Smith]}
    restrained: {names: [John Doe]}
watchers:
"""


def test_a_few_watchers_start_within_seconds() -> None:
    ten = timedelta(minutes=10)
    assert first_poll_spread(1, ten) == 0.0
    assert first_poll_spread(11, ten) == 1.0
    assert first_poll_spread(100, ten) == 5.0


def test_more_watchers_than_the_pool_starts_at_once_are_spread_over_their_interval() -> None:
    ten = timedelta(minutes=10)
    # 16 slots start at least 32 polls a second: 5,001 watchers need 156 s of spread.
    assert first_poll_spread(5_001, ten, 16) == 5_000 / 32
    # Never longer than a watcher's own interval.
    assert first_poll_spread(50_000, ten, 16) == ten.total_seconds()


def test_the_scheduler_spreads_many_first_polls_beyond_the_misfire_grace(tmp_path: Path) -> None:
    # 2 slots, 4,000 watchers every 20 minutes: 1,000 s of spread, more than the 5
    # minutes after which APScheduler drops a job still waiting in the pool as missed.
    watchers = "".join(
        f"  - {{type: rss, name: w{n}, url: 'http://127.0.0.1:9/{n}', every: 20m}}\n"
        for n in range(4_000)
    )
    config = tmp_path / "config.yaml"
    config.write_text(CASE + watchers, encoding="utf-8")
    service = Service(load_config(config))
    try:
        scheduler = service._scheduler()
        jobs = [job for job in scheduler.get_jobs() if job.id.startswith("watch:")]
        times = sorted(job.next_run_time.timestamp() for job in jobs)
        span = times[-1] - times[0]
        assert len(jobs) == 4_000
        assert MISFIRE_GRACE.total_seconds() < span <= 1_000
        # Spread, not bunched: every 100 s of the span has its share of first polls.
        assert all(
            sum(times[0] + k * 100 <= t < times[0] + (k + 1) * 100 for t in times) > 250
            for k in range(9)
        )
    finally:
        service.close()
