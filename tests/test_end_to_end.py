"""The whole service as a user runs it: `nocontact run --once` in a subprocess against a
local feed server, a local SMTP server and a local webhook receiver, then the timeline,
status and a second run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.fakes.smtp_server import FakeSmtpServer, plain_text, smtp_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_store import CONTRACT_KEYS as CONTRACT_VIOLATION_KEYS
from tests.test_store import EVIDENCE_KEYS as CONTRACT_EVIDENCE_KEYS


def item(guid: str, author: str, title: str, body: str, date: str) -> str:
    return f"""
    <item>
      <guid isPermaLink="false">{guid}</guid>
      <title>{title}</title>
      <link>https://blog.example/{guid}</link>
      <author>{author}</author>
      <description><![CDATA[<p>{body}</p>]]></description>
      <pubDate>{date}</pubDate>
    </item>"""


def rss(*items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        "<title>Public forum</title><link>https://blog.example/</link>"
        "<description>posts</description>" + "".join(items) + "</channel></rss>"
    ).encode()


FORUM_FEED = rss(
    # contact: the restrained party @-mentions the protected person
    item(
        "p1",
        "jdoe",
        "hey",
        "@alex_smith you cannot hide from me",
        "Fri, 01 May 2026 10:00:00 GMT",
    ),
    # suspected alt: a look-alike of jdoe (Cyrillic о, leetspeak) names the protected person
    item(
        "p2",
        "j0hn.dоe",
        "news",
        "Everyone should know what Alex Smith did",
        "Sat, 02 May 2026 12:00:00 GMT",
    ),
    # third party: an associate names the protected person
    item("p3", "jdoe_friend", "re", "Tell Alex Smith to call him", "Sun, 03 May 2026 09:00:00 GMT"),
    # outside the order period: before it took effect
    item("p0", "jdoe", "old", "Alex Smith and me, years ago", "Mon, 05 Jan 2026 09:00:00 GMT"),
    # not a hit: a stranger, and a name that only starts like hers
    item(
        "p4",
        "gardener42",
        "roses",
        "The Alex Smithson rose is lovely",
        "Mon, 04 May 2026 09:00:00 GMT",
    ),
)


def write_config(path: Path, database: str, feeds: dict[str, str], routes: dict[str, Any]) -> Path:
    watchers = "\n".join(
        f'  - {{type: rss, name: {name}, url: "{url}", every: 5m, timeout: 2s}}'
        for name, url in feeds.items()
    )
    alerts = "\n".join(
        f"  {name}:\n    urls: {json.dumps(route['urls'])}\n"
        f"    min_severity: {route.get('min_severity', 'low')}\n"
        f"    operator: {str(route.get('operator', False)).lower()}"
        for name, route in routes.items()
    )
    path.write_text(
        f"""\
database: {database}
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15, expires: 2027-01-15, reference: "PO-2026-1234",
            terms: [no_contact, no_mention]}}
    protected:
      names: ["Alex Smith"]
      handles: {{rss: [alex_smith]}}
    restrained:
      names: ["John Doe"]
      handles: {{rss: [jdoe]}}
      associates: {{rss: [jdoe_friend]}}
    alert: [{", ".join(routes)}]
watchers:
{watchers}
alerts:
{alerts}
""",
        encoding="utf-8",
    )
    return path


Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def nocontact(tmp_path: Path) -> Runner:
    def run(
        *args: str, expect: int | None = 0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("NOCONTACT_")}
        # Rich folds tables to the terminal width; keep each status row on one line.
        environment["COLUMNS"] = "300"
        environment |= env or {}
        result = subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "service", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=environment,
            timeout=120,
            check=False,
        )
        if expect is not None:
            assert result.returncode == expect, (result.stdout, result.stderr)
        return result

    return run


def timeline(nocontact: Runner, config: Path, *extra: str) -> list[dict[str, Any]]:
    out = nocontact("timeline", "-c", str(config), "--format", "json", *extra).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


@pytest.mark.postgres
def test_feed_to_phone_end_to_end(
    tmp_path: Path,
    database_url: str,
    nocontact: Runner,
    feed_server: FeedServer,  # noqa: F811
    smtp_server: FakeSmtpServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    feed_server.set("/forum.xml", body=FORUM_FEED, headers={"ETag": '"v1"'})
    feed_server.set("/broken.xml", status=500, body=b"oops")
    config = write_config(
        tmp_path / "config.yaml",
        database_url,
        {"forum": feed_server.url("/forum.xml"), "broken": feed_server.url("/broken.xml")},
        {"phone": {"urls": [smtp_server.mailto_url(), webhook_receiver.json_url()]}},
    )

    first = nocontact("run", "-c", str(config), "--once", expect=1)
    assert "forum: 5 item(s) read" in first.stdout
    assert "3 new violation(s) (and 1 outside the order period, kept)" in first.stdout
    assert first.stderr.endswith("run --once: not all is well: watcher(s) failed: broken\n")
    assert "broken: failed: " in first.stderr
    assert "HTTP 500" in first.stderr

    rows = timeline(nocontact, config)
    kinds = [(row["kind"], row["evidence"][0]["author"]) for row in rows]
    assert kinds == [
        ("contact", "jdoe"),
        ("suspected_alt", "j0hn.dоe"),
        ("third_party", "jdoe_friend"),
    ]
    for row in rows:
        assert set(row) >= CONTRACT_VIOLATION_KEYS
        assert row["case"] == "smith-v-doe"
        assert row["alerted"] is True
        for evidence in row["evidence"]:
            assert set(evidence) >= CONTRACT_EVIDENCE_KEYS
            assert evidence["platform"] == "rss"
            assert len(evidence["sha256"]) == 64
            assert evidence["captured_at"].endswith("Z")
    contact, suspected, third = rows
    assert (contact["severity"], contact["suspected"]) == ("high", False)
    assert contact["first_seen"] == "2026-05-01T10:00:00Z"
    assert "alex_smith" in contact["reason"]
    assert (suspected["severity"], suspected["suspected"]) == ("high", True)
    assert 'resembles restrained name "John Doe"' in suspected["reason"]
    assert (third["severity"], third["suspected"]) == ("medium", False)
    assert "associate" in third["reason"]

    everything = timeline(nocontact, config, "--all")
    outside = [row for row in everything if row["in_order_period"] is False]
    assert len(outside) == 1
    assert outside[0]["alerted"] is False
    assert outside[0]["first_seen"] == "2026-01-05T09:00:00Z"

    # One combined alert per target for the three violations; the text is not quoted.
    assert len(smtp_server.messages) == 1
    mail = plain_text(smtp_server.messages[0])
    for row in rows:
        assert row["id"] in mail
    assert "cannot hide" not in mail
    assert len(webhook_receiver.accepted) == 1
    assert "smith-v-doe" in webhook_receiver.accepted[0].json["message"]

    status = nocontact("status", "-c", str(config)).stdout
    assert "broken" in status
    assert "HTTP 500" in status

    # A second round: nothing new to store, nothing new to say.
    before = len(feed_server.requests_for("/forum.xml"))
    second = nocontact("run", "-c", str(config), "--once", expect=1)
    assert "forum: 0 item(s) read, 0 new evidence" in second.stdout
    forum_requests = feed_server.requests_for("/forum.xml")
    assert len(forum_requests) == before + 1
    assert forum_requests[-1].headers.get("If-None-Match") == '"v1"'
    assert timeline(nocontact, config, "--all") == everything
    assert len(smtp_server.messages) == 1
    assert len(webhook_receiver.accepted) == 1


def test_failing_watcher_alerts_operator_once_and_recovery_once(
    tmp_path: Path,
    nocontact: Runner,
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    feed_server.set("/good.xml", body=FORUM_FEED)
    feed_server.set("/flaky.xml", status=503, body=b"down for maintenance")
    config = write_config(
        tmp_path / "config.yaml",
        "sqlite:///nc.db",
        {"good": feed_server.url("/good.xml"), "flaky": feed_server.url("/flaky.xml")},
        {
            "phone": {"urls": [webhook_receiver.json_url("/phone")], "min_severity": "high"},
            "ops": {"urls": [webhook_receiver.json_url("/ops")], "operator": True},
        },
    )

    def ops_messages() -> list[str]:
        return [r.json["message"] for r in webhook_receiver.accepted if r.path == "/ops"]

    for _ in range(2):
        nocontact("run", "-c", str(config), "--once", expect=1)
    assert not any("failing" in m for m in ops_messages())
    nocontact("run", "-c", str(config), "--once", expect=1)
    failing = [m for m in ops_messages() if "flaky is failing" in m]
    assert len(failing) == 1
    # The good watcher kept working all along, and the phone route got no health alert.
    assert len(timeline(nocontact, config)) == 3
    assert not any(
        "failing" in r.json["message"] for r in webhook_receiver.accepted if r.path == "/phone"
    )
    nocontact("run", "-c", str(config), "--once", expect=1)
    assert len([m for m in ops_messages() if "flaky is failing" in m]) == 1

    feed_server.set("/flaky.xml", body=rss())
    nocontact("run", "-c", str(config), "--once")
    nocontact("run", "-c", str(config), "--once")
    recovered = [m for m in ops_messages() if "working again" in m]
    assert len(recovered) == 1
    status = nocontact("status", "-c", str(config)).stdout
    assert "FAILING" not in status


def test_alert_target_down_is_delivered_once_when_back(
    tmp_path: Path,
    nocontact: Runner,
    feed_server: FeedServer,  # noqa: F811
    smtp_server: FakeSmtpServer,  # noqa: F811
) -> None:
    feed_server.set("/forum.xml", body=FORUM_FEED)
    config = write_config(
        tmp_path / "config.yaml",
        "sqlite:///nc.db",
        {"forum": feed_server.url("/forum.xml")},
        {"phone": {"urls": [smtp_server.mailto_url()]}},
    )
    smtp_server.stop()
    first = nocontact("run", "-c", str(config), "--once", expect=1)
    assert "0 sent" in first.stdout
    assert first.stderr.endswith("run --once: not all is well: 3 alert(s) could not be delivered\n")
    assert "3 still queued" in first.stdout
    assert all(row["alerted"] is False for row in timeline(nocontact, config))
    status = nocontact("status", "-c", str(config)).stdout
    assert "Alerts queued: 3" in status

    smtp_server.start()
    nocontact("run", "-c", str(config), "--once")
    assert len(smtp_server.messages) == 1
    assert all(row["alerted"] is True for row in timeline(nocontact, config))
    nocontact("run", "-c", str(config), "--once")
    assert len(smtp_server.messages) == 1


def test_example_config_runs_once_without_network_and_exits_zero(
    tmp_path: Path, nocontact: Runner
) -> None:
    repo = Path(__file__).resolve().parents[1]
    config = tmp_path / "config.yaml"
    text = (repo / "config.yaml").read_text(encoding="utf-8")
    # The example reads its sample feed relative to where nocontact runs (the
    # repository); this run happens elsewhere, so name the same file absolutely.
    sample = (repo / "examples" / "community-forum.xml").as_uri()
    config.write_text(text.replace("file:examples/community-forum.xml", sample), encoding="utf-8")
    assert nocontact("check", "-c", str(config)).stdout.startswith(f"{config}: ok")
    result = nocontact("run", "-c", str(config), "--once")
    assert result.stdout.splitlines() == [
        "community-forum: 6 item(s) read, 4 new evidence, 4 new violation(s)",
        "alerts: 0 sent, 0 failed, 0 still queued",
        f"next: `nocontact timeline -c {config}` lists the violations; `nocontact show ID` "
        "shows one whole",
        "note: alert route(s) phone have no URL, so they send nothing; set the environment "
        "variable their urls name in config.yaml (e.g. NOCONTACT_ALERT_URL=ntfys://your-"
        "private-topic) to get alerts",
    ]
    assert result.stderr == ""
    kinds = [(row["kind"], row["evidence"][0]["author"]) for row in timeline(nocontact, config)]
    assert kinds == [
        ("contact", "jdoe"),
        ("suspected_alt", "j0hn.d0e"),
        ("third_party", "jdoe_friend"),
        ("suspected_proxy", "pat_m"),
    ]
    assert (tmp_path / "nocontact.db").exists()
    assert oct((tmp_path / "nocontact.db").stat().st_mode & 0o777) == "0o600"


def test_an_edited_entry_is_kept_as_a_second_version(
    tmp_path: Path,
    nocontact: Runner,
    feed_server: FeedServer,  # noqa: F811
) -> None:
    original = item("e1", "jdoe", "hey", "@alex_smith answer me", "Fri, 01 May 2026 10:00:00 GMT")
    feed_server.set("/forum.xml", body=rss(original), headers={"ETag": '"v1"'})
    config = write_config(
        tmp_path / "config.yaml",
        "sqlite:///nc.db",
        {"forum": feed_server.url("/forum.xml")},
        {"phone": {"urls": ["json://127.0.0.1:9/unused"]}},
    )
    nocontact("run", "-c", str(config), "--once", expect=1)  # the alert target is down
    edited = original.replace("answer me", "answer me or else")
    feed_server.set("/forum.xml", body=rss(edited), headers={"ETag": '"v2"'})
    second = nocontact("run", "-c", str(config), "--once", expect=None)
    assert "1 new evidence" in second.stdout

    (row,) = timeline(nocontact, config)
    versions = [(e["native_id"], e["version"], e["text"]) for e in row["evidence"]]
    assert [v[1] for v in versions] == [1, 2]
    assert versions[0][0] == versions[1][0]
    assert "or else" not in versions[0][2]
    assert "or else" in versions[1][2]
    assert "chain intact" in nocontact("verify", "-c", str(config)).stdout
