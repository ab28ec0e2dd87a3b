"""Pipeline pieces that the end-to-end tests only see from afar."""

from __future__ import annotations

from datetime import timedelta

from service.config import parse_config
from service.pipeline import Pipeline, targets_for

CONFIG = """\
cases:
  - id: one
    order: {effective: 2026-01-15}
    protected: {names: ["Alex Smith"], aliases: [Lexi], handles: {x: [alexsmith], reddit: [a]}}
    restrained: {names: ["John Doe"], handles: {x: [johndoe]}, associates: {x: [friend1]}}
  - id: two
    order: {effective: 2026-02-01}
    protected: {names: ["Sam Lee"], handles: {x: [samlee]}}
    restrained: {names: ["Max Roe"], aliases: [Maxi], handles: {x: [maxroe]}}
watchers:
  - {type: rss, name: feed, url: "https://e.example/f.xml", every: 5m}
"""


def test_targets_merge_every_case_for_the_watchers_platform() -> None:
    settings = parse_config(CONFIG)
    targets = targets_for("x", settings.cases)
    assert targets.protected_handles == {"alexsmith", "samlee"}
    assert targets.protected_names == {"Alex Smith", "Lexi", "Sam Lee"}
    assert targets.restrained_handles == {"johndoe", "maxroe"}
    assert targets.associate_handles == {"friend1"}
    assert targets.restrained_names == {"John Doe", "Max Roe", "Maxi"}
    only_one = targets_for("reddit", settings.cases[:1])
    assert only_one.protected_handles == {"a"}
    assert only_one.restrained_handles == frozenset()


def test_a_failing_source_is_polled_less_often_up_to_an_hour() -> None:
    watcher = parse_config(CONFIG).watchers[0]
    waits = [Pipeline._backoff(watcher, failures) for failures in range(1, 9)]
    assert waits[:5] == [timedelta(minutes=m) for m in (5, 10, 20, 40, 60)]
    assert set(waits[4:]) == {timedelta(hours=1)}
    daily = watcher.model_copy(update={"every": timedelta(hours=2)})
    # A source polled less often than hourly keeps its own interval.
    assert Pipeline._backoff(daily, 5) == timedelta(hours=2)
