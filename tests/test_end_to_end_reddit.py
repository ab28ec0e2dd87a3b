"""Reddit through the whole service: `nocontact run --once` with credentials from the
environment, against the local fake Reddit (recorded praw cassettes plus handcrafted
edge cases), then the timeline and a second run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.reddit_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USERNAME,
    FakeReddit,
    reddit_server,  # noqa: F401
)
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import Runner, nocontact  # noqa: F401
from tests.test_reddit import populate


@pytest.fixture
def reddit_env(reddit_server: FakeReddit) -> dict[str, str]:  # noqa: F811
    return {
        "REDDIT_CLIENT_ID": CLIENT_ID,
        "REDDIT_CLIENT_SECRET": CLIENT_SECRET,
        "REDDIT_USERNAME": USERNAME,
        "REDDIT_PASSWORD": PASSWORD,
        "REDDIT_URL": reddit_server.base_url,
    }


def test_reddit_run_fills_the_timeline_once(
    tmp_path: Path,
    reddit_server: FakeReddit,  # noqa: F811
    reddit_env: dict[str, str],
    nocontact: Runner,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    populate(reddit_server)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""\
database: sqlite:///nc.db
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15, reference: "PO-2026-1234", terms: [no_contact, no_mention]}}
    protected: {{names: ["Alex Smith"], handles: {{reddit: [{USERNAME}]}}}}
    restrained:
      names: ["John Doe"]
      handles: {{reddit: [jdoe]}}
      associates: {{reddit: [jdoe_friend]}}
    alert: [phone]
watchers:
  - type: reddit
    every: 5m
    client_id: ${{REDDIT_CLIENT_ID}}
    client_secret: ${{REDDIT_CLIENT_SECRET}}
    username: ${{REDDIT_USERNAME}}
    password: ${{REDDIT_PASSWORD}}
    user_agent: "nocontact tests (by u/{USERNAME})"
    oauth_url: ${{REDDIT_URL}}
    reddit_url: ${{REDDIT_URL}}
    search: true
alerts:
  phone:
    urls: ["{webhook_receiver.json_url()}"]
""",
        encoding="utf-8",
    )

    first = nocontact("run", "-c", str(config), "--once", env=reddit_env)
    assert "reddit: " in first.stdout
    assert "new violation(s)" in first.stdout

    def timeline(*extra: str) -> list[dict[str, Any]]:
        out = nocontact("timeline", "-c", str(config), "--format", "json", *extra, env=reddit_env)
        rows: list[dict[str, Any]] = json.loads(out.stdout)
        return rows

    rows = timeline()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    assert set(by_kind) == {"contact", "mention", "third_party", "suspected_alt"}
    evidence_ids = {e["native_id"] for row in rows for e in row["evidence"]}
    # The private message and the reply to the protected person's comment are contact.
    contact_ids = {e["native_id"] for row in by_kind["contact"] for e in row["evidence"]}
    assert {"t4_3nc0m01", "t1_n0c4r02"} <= contact_ids
    assert any("jdoe_friend" in row["reason"] for row in by_kind["third_party"])
    look_alike = [row for row in by_kind["suspected_alt"] if "j0hn_d0e" in row["reason"]]
    assert look_alike
    assert look_alike[0]["suspected"] is True
    for row in rows:
        assert row["reason"]
        for evidence in row["evidence"]:
            assert evidence["platform"] == "reddit"
            assert evidence["url"].startswith("https://www.reddit.com/")
    # jdoe's reply of 2026-01-10 came before the order: kept, shown only with --all.
    assert "t1_n0c4e01" not in evidence_ids
    early = [
        row
        for row in timeline("--all")
        if any(e["native_id"] == "t1_n0c4e01" for e in row["evidence"])
    ]
    assert len(early) == 1
    assert early[0]["in_order_period"] is False
    assert early[0]["alerted"] is False
    alerts = len(webhook_receiver.accepted)
    assert alerts == 1
    assert "smith-v-doe" in webhook_receiver.accepted[0].json["message"]

    second = nocontact("run", "-c", str(config), "--once", env=reddit_env)
    assert "0 new evidence, 0 new violation(s)" in second.stdout
    assert timeline() == rows
    assert len(webhook_receiver.accepted) == alerts
