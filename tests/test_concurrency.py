"""Many sources at once: bounded concurrency, at most 2 requests in flight per host, and
one slow source never holding up the others' evidence or alerts."""

from __future__ import annotations

from pathlib import Path

from service.concurrency import HostLimiter, endpoint_host, run_bounded
from tests.fakes.feed_server import FeedServer, feed_server, wait_until  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import FORUM_FEED, Runner, nocontact, timeline  # noqa: F401
from tests.test_service_lifecycle import CASE, start_service
from watchers.rss import RssSettings


def _config(tmp_path: Path, feeds: dict[str, str], alert_url: str, **top: object) -> Path:
    watchers = "".join(
        f'  - {{type: rss, name: {name}, url: "{url}", every: 5m, deadline: 30s, timeout: 30s}}\n'
        for name, url in feeds.items()
    )
    extra = "".join(f"{key}: {value}\n" for key, value in top.items())
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database: sqlite:///nc.db\n{extra}{CASE}watchers:\n{watchers}"
        f'alerts:\n  ops:\n    urls: ["{alert_url}"]\n    group_wait: 1s\n',
        encoding="utf-8",
    )
    return config


def test_endpoint_host_reads_the_watchers_url() -> None:
    settings = RssSettings(url="https://Blog.Example:8443/feed.xml")
    assert endpoint_host(settings) == "blog.example"


def test_run_bounded_keeps_order_and_returns_every_result() -> None:
    watchers = [RssSettings(url=f"https://h{i % 3}.example/f", name=f"w{i}") for i in range(9)]
    names = run_bounded(lambda w: w.display_name, watchers, max_workers=4, limiter=HostLimiter())
    assert names == [f"w{i}" for i in range(9)]


def test_once_polls_feeds_concurrently_but_two_per_host(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    feeds = {}
    for index in range(5):
        feed_server.set(f"/slow{index}.xml", body=FORUM_FEED, delay=1.0)
        feeds[f"slow{index}"] = feed_server.url(f"/slow{index}.xml")
    feed_server.set("/other.xml", body=FORUM_FEED, delay=1.0)
    # The same server under another host name: a second host.
    feeds["other"] = feed_server.url("/other.xml").replace("127.0.0.1", "localhost")
    config = _config(tmp_path, feeds, webhook_receiver.json_url("/ops"))
    result = nocontact("run", "-c", str(config), "--once")
    for name in feeds:
        assert f"{name}: 5 item(s) read" in result.stdout
    assert feed_server.max_in_flight["127.0.0.1"] == 2
    assert feed_server.max_in_flight["localhost"] == 1


def test_once_with_one_poll_at_a_time(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    feeds = {}
    for index in range(3):
        feed_server.set(f"/f{index}.xml", body=FORUM_FEED, delay=0.3)
        feeds[f"f{index}"] = feed_server.url(f"/f{index}.xml")
    config = _config(tmp_path, feeds, webhook_receiver.json_url("/ops"), max_concurrent_polls=1)
    nocontact("run", "-c", str(config), "--once")
    assert feed_server.max_in_flight["127.0.0.1"] == 1


def test_a_slow_source_does_not_hold_up_the_others(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    feed_server.set("/slow.xml", body=b"<rss/>", delay=60)
    feed_server.set("/forum.xml", body=FORUM_FEED)
    feeds = {"slow": feed_server.url("/slow.xml"), "forum": feed_server.url("/forum.xml")}
    config = _config(tmp_path, feeds, webhook_receiver.json_url("/ops"))
    process = start_service(config)
    try:
        assert wait_until(lambda: feed_server.in_flight("127.0.0.1") >= 1, seconds=20)
        # While the slow feed is still being answered, the forum's violations are stored
        # and alerted (delivery runs every 15 s).
        assert wait_until(lambda: len(webhook_receiver.requests) >= 1, seconds=40)
        assert len(timeline(nocontact, config)) == 3
        assert not any(r.path == "/slow.xml" for r in feed_server.responses)
    finally:
        process.kill()  # the slow poll would otherwise be waited for
        process.communicate(timeout=10)
