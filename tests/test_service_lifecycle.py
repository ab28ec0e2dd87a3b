"""The long-running service and broken sources, through the real CLI in subprocesses."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import FORUM_FEED, Runner, nocontact, timeline  # noqa: F401

CASE = """\
cases:
  - id: smith-v-doe
    order: {effective: 2026-01-15, terms: [no_contact, no_mention]}
    protected: {names: ["Alex Smith"], handles: {rss: [alex_smith]}}
    restrained: {names: ["John Doe"], handles: {rss: [jdoe]}, associates: {rss: [jdoe_friend]}}
    alert: [ops]
"""


def start_service(config: Path) -> subprocess.Popen[str]:
    """``nocontact run`` as systemd would start it, in the config's folder."""
    return subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "service", "run", "-c", str(config)],
        cwd=config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_violations(nocontact: Runner, config: Path, count: int) -> list[dict[str, Any]]:  # noqa: F811
    """The timeline once it holds ``count`` violations (or whatever it holds after 60 s)."""
    deadline = time.monotonic() + 60
    rows = timeline(nocontact, config)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = timeline(nocontact, config)
    return rows


def test_every_broken_source_is_one_line_and_the_good_one_still_stores(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    feed_server.set("/good.xml", body=FORUM_FEED)
    feed_server.set("/500.xml", status=500, body=b"Internal Server Error")
    feed_server.set("/garbage.xml", body=b"\x00\xff\xfe not a feed at all {]")
    feed_server.set("/huge.xml", body=b"<rss>" + b"A" * 200_000 + b"</rss>")
    feed_server.set("/slow.xml", body=FORUM_FEED, delay=5)
    broken = {
        "down": "http://127.0.0.1:9/feed.xml",
        "error500": feed_server.url("/500.xml"),
        "garbage": feed_server.url("/garbage.xml"),
        "huge": feed_server.url("/huge.xml"),
        "slow": feed_server.url("/slow.xml"),
    }
    watchers = [f'  - {{type: rss, name: good, url: "{feed_server.url("/good.xml")}", every: 5m}}']
    watchers += [
        f'  - {{type: rss, name: {name}, url: "{url}", every: 5m, timeout: 1s, '
        f"deadline: 2s, max_bytes: 50000}}"
        for name, url in broken.items()
    ]
    config = tmp_path / "config.yaml"
    config.write_text(
        "database: sqlite:///nc.db\n"
        + CASE
        + "watchers:\n"
        + "\n".join(watchers)
        + f'\nalerts:\n  ops:\n    urls: ["{webhook_receiver.json_url("/ops")}"]\n'
        "    operator: true\n",
        encoding="utf-8",
    )

    first = nocontact("run", "-c", str(config), "--once", expect=1)
    assert first.stderr.rstrip().endswith(f"watcher(s) failed: {', '.join(broken)}")
    failures = [line for line in first.stderr.splitlines() if ": failed: " in line]
    assert sorted(line.split(":")[0] for line in failures) == sorted(broken)
    assert "Traceback" not in first.stderr
    assert len(timeline(nocontact, config)) == 3

    status = nocontact("status", "-c", str(config)).stdout
    for name in broken:
        assert name in status
    assert status.count("FAILING (1 in a row)") == len(broken)

    nocontact("run", "-c", str(config), "--once", expect=1)
    nocontact("run", "-c", str(config), "--once", expect=1)
    health = [
        r.json["message"] for r in webhook_receiver.accepted if "is failing" in r.json["message"]
    ]
    for name in broken:
        assert sum(f"watcher {name} is failing" in message for message in health) == 1
    assert not any("watcher good is failing" in message for message in health)
    # Nothing was lost along the way: the good watcher's evidence is all still there.
    assert len(timeline(nocontact, config)) == 3


def test_service_runs_beats_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
) -> None:
    feed_server.set("/good.xml", body=FORUM_FEED)
    config = tmp_path / "config.yaml"
    config.write_text(
        "database: sqlite:///nc.db\n"
        + CASE.replace("alert: [ops]", "alert: []")
        + f'watchers:\n  - {{type: rss, name: good, url: "{feed_server.url("/good.xml")}", '
        "every: 1h}\n",
        encoding="utf-8",
    )
    service = start_service(config)
    try:
        rows = wait_for_violations(nocontact, config, 3)
        assert len(rows) == 3
        healthy = nocontact("status", "-c", str(config), "--health", expect=None)
        assert healthy.returncode == 0, healthy.stdout
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=60)
    assert service.returncode == 0, stderr
    assert "received SIGTERM, stopping" in stderr
    assert "nocontact stopped" in stderr

    time.sleep(1.5)
    stale = nocontact("status", "-c", str(config), "--health", "--stale-after", "1s", expect=1)
    assert "heartbeat" in stale.stdout.lower()


def test_rejected_credentials_disable_the_watcher_with_one_alert(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    feed_server.set("/private.xml", status=401, body=b"Unauthorized")
    feed_server.set("/good.xml", body=FORUM_FEED)
    config = tmp_path / "config.yaml"
    config.write_text(
        "database: sqlite:///nc.db\n"
        + CASE
        + f'watchers:\n  - {{type: rss, name: private, url: "{feed_server.url("/private.xml")}", '
        "every: 5m}\n"
        f'  - {{type: rss, name: good, url: "{feed_server.url("/good.xml")}", every: 5m}}\n'
        f'alerts:\n  ops:\n    urls: ["{webhook_receiver.json_url("/ops")}"]\n',
        encoding="utf-8",
    )
    for _ in range(3):
        result = nocontact("run", "-c", str(config), "--once", expect=1)
        assert "private: failed: " in result.stderr
    status = nocontact("status", "-c", str(config)).stdout
    assert "DISABLED: " in status
    messages = [r.json["message"] for r in webhook_receiver.accepted]
    assert sum("watcher private is disabled" in m for m in messages) == 1
    assert not any("watcher private is failing" in m for m in messages)
    assert len(timeline(nocontact, config)) == 3


def test_killed_mid_cycle_then_restarted_loses_nothing_and_alerts_once(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    feed_server.set("/good.xml", body=FORUM_FEED)
    config = tmp_path / "config.yaml"
    config.write_text(
        "database: sqlite:///nc.db\n"
        + CASE
        + f'watchers:\n  - {{type: rss, name: good, url: "{feed_server.url("/good.xml")}", '
        "every: 1h}\n"
        f'alerts:\n  ops:\n    urls: ["{webhook_receiver.json_url("/ops")}"]\n'
        # Alerts wait an hour, so the kill lands between storing and delivering.
        "    group_wait: 1h\n",
        encoding="utf-8",
    )
    service = start_service(config)
    try:
        rows = wait_for_violations(nocontact, config, 3)
    finally:
        service.send_signal(signal.SIGKILL)
        service.communicate(timeout=30)
    assert len(rows) == 3
    assert webhook_receiver.accepted == []

    nocontact("run", "-c", str(config), "--once")
    assert timeline(nocontact, config) == [dict(row, alerted=True) for row in rows]
    assert len(webhook_receiver.accepted) == 1
    nocontact("run", "-c", str(config), "--once")
    assert len(webhook_receiver.accepted) == 1
    verify = nocontact("verify", "-c", str(config))
    assert "chain intact" in verify.stdout
