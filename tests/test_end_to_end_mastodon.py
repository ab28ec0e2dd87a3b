"""Mastodon through the whole service: `nocontact run` with the token from the environment,
against the local fake instance, then the timeline, a second run, an edit, a rejected
token, a rate limit, and the user stream of the long-running service."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.fakes.mastodon_server import DOMAIN, TOKEN, FakeMastodon, mastodon_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import Runner, nocontact  # noqa: F401
from tests.test_mastodon import ASSOCIATE, PROTECTED, RESTRAINED, populate


def write_config(path: Path, route_url: str, *, streaming: bool = False, every: str = "5m") -> Path:
    path.write_text(
        f"""\
database: sqlite:///nc.db
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15, reference: "PO-2026-1234", terms: [no_contact, no_mention]}}
    protected: {{names: ["Alex Smith"], handles: {{mastodon: ["{PROTECTED}"]}}}}
    restrained:
      names: ["John Doe"]
      handles: {{mastodon: ["{RESTRAINED}"]}}
      associates: {{mastodon: ["{ASSOCIATE}"]}}
    alert: [phone]
watchers:
  - type: mastodon
    every: {every}
    instance_url: ${{MASTODON_URL}}
    access_token: ${{MASTODON_TOKEN}}
    streaming: {str(streaming).lower()}
    stream_retry: 1s
alerts:
  phone:
    urls: ["{route_url}"]
""",
        encoding="utf-8",
    )
    return path


def env(fake: FakeMastodon) -> dict[str, str]:
    return {"MASTODON_URL": fake.base_url, "MASTODON_TOKEN": TOKEN}


def timeline(nocontact: Runner, config: Path, fake: FakeMastodon) -> list[dict[str, Any]]:  # noqa: F811
    out = nocontact("timeline", "-c", str(config), "--format", "json", env=env(fake)).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def test_mastodon_run_fills_the_timeline_once_and_keeps_edits(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    mastodon_server: FakeMastodon,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    found = populate(mastodon_server)
    config = write_config(tmp_path / "config.yaml", webhook_receiver.json_url())
    first = nocontact("run", "-c", str(config), "--once", env=env(mastodon_server))
    assert "mastodon: 11 item(s) read" in first.stdout

    rows = timeline(nocontact, config, mastodon_server)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    assert set(by_kind) == {"contact", "mention", "third_party", "suspected_alt", "suspected_proxy"}
    contact = {row["evidence"][0]["kind"] for row in by_kind["contact"]}
    assert contact == {"mention", "direct_message", "reply"}
    assert all(f"to protected account `{PROTECTED}`" in r["reason"] for r in by_kind["contact"])
    mentions = {row["evidence"][0]["kind"]: row for row in by_kind["mention"]}
    assert set(mentions) == {"post", "boost"}
    assert "[image: a photo of a market stall]" in mentions["post"]["evidence"][0]["text"]
    assert mentions["boost"]["reason"].startswith(
        f"boosted post by restrained account `{RESTRAINED}`"
    )
    (third,) = by_kind["third_party"]
    assert ASSOCIATE in third["reason"]
    alts = {row["evidence"][0]["author"]: row for row in by_kind["suspected_alt"]}
    assert set(alts) == {"j0hndoe@evil.example", "jd1987@other.example"}
    assert (
        f"resembles restrained handle `{RESTRAINED}` (score 100)"
        in (alts["j0hndoe@evil.example"]["reason"])
    )
    assert "account created 2026-03-02, after the order" in alts["j0hndoe@evil.example"]["reason"]
    assert 'display name "John Doe"' in alts["jd1987@other.example"]["reason"]
    (proxy,) = by_kind["suspected_proxy"]
    assert proxy["evidence"][0]["author"] == "gardener@garden.example"
    assert proxy["suspected"] is True
    for row in rows:
        for evidence in row["evidence"]:
            assert evidence["platform"] == "mastodon"
            assert evidence["url"].startswith("https://")
    alerts = len(webhook_receiver.accepted)
    assert alerts == 1

    second = nocontact("run", "-c", str(config), "--once", env=env(mastodon_server))
    assert "0 new evidence, 0 new violation(s)" in second.stdout
    assert timeline(nocontact, config, mastodon_server) == rows
    assert len(webhook_receiver.accepted) == alerts

    mastodon_server.edit(found["mention"], "you cannot hide from me, ever", "2026-05-01T10:05:00")
    third_run = nocontact("run", "-c", str(config), "--once", env=env(mastodon_server))
    assert "1 new evidence" in third_run.stdout
    (edited,) = [
        row
        for row in timeline(nocontact, config, mastodon_server)
        if row["evidence"][0]["native_id"] == found["mention"]["uri"]
    ]
    assert [e["version"] for e in edited["evidence"]] == [1, 2]
    assert "ever" not in edited["evidence"][0]["text"]
    assert edited["evidence"][1]["text"].endswith("you cannot hide from me, ever")
    assert "chain intact" in nocontact("verify", "-c", str(config), env=env(mastodon_server)).stdout
    assert mastodon_server.write_attempts == []


def test_rejected_token_disables_the_watcher_with_one_alert(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    mastodon_server: FakeMastodon,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    populate(mastodon_server)
    config = write_config(tmp_path / "config.yaml", webhook_receiver.json_url())
    wrong = env(mastodon_server) | {"MASTODON_TOKEN": "s3cr3t-revoked-token"}
    for _ in range(3):
        result = nocontact("run", "-c", str(config), "--once", env=wrong, expect=None)
        assert "mastodon: " in result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr
    status = nocontact("status", "-c", str(config), env=wrong).stdout
    assert "DISABLED: " in status
    assert "(401)" in status
    messages = [r.json["message"] for r in webhook_receiver.accepted]
    assert sum("watcher mastodon is disabled" in m for m in messages) == 1


def test_rate_limit_is_reported_with_the_servers_wait(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    mastodon_server: FakeMastodon,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    populate(mastodon_server)
    config = write_config(tmp_path / "config.yaml", webhook_receiver.json_url())
    reset = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 600))
    mastodon_server.fail_next(429, "Too many requests", {"X-RateLimit-Reset": reset})
    result = nocontact("run", "-c", str(config), "--once", env=env(mastodon_server), expect=None)
    assert "rate limited" in result.stderr
    wait = int(result.stderr.split("retrying in ")[1].split("s")[0])
    assert 590 <= wait <= 600


def start_service(config: Path, environment: dict[str, str]) -> subprocess.Popen[str]:
    """``nocontact run`` as systemd would start it, with the token in its environment."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("NOCONTACT_")}
    return subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "service", "run", "-c", str(config)],
        cwd=config.parent,
        env=variables | environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def evidence_count(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
        try:
            (count,) = connection.execute("SELECT count(*) FROM evidence").fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(count)


def first_poll_done(database: Path) -> bool:
    """The first poll's results are stored (only what involves the case is evidence, so
    the evidence count says nothing about it)."""
    if not database.exists():
        return False
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
        try:
            row = connection.execute("SELECT last_success_at FROM watcher_state").fetchone()
        except sqlite3.OperationalError:
            return False
    return row is not None and row[0] is not None


def wait_until(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_the_stream_brings_a_new_mention_to_the_store_within_seconds(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    mastodon_server: FakeMastodon,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    found = populate(mastodon_server)
    # Polls are an hour apart: only the stream can bring the mention in time.
    config = write_config(
        tmp_path / "config.yaml", webhook_receiver.json_url(), streaming=True, every="1h"
    )
    database = tmp_path / "nc.db"
    service = start_service(config, env(mastodon_server))
    try:
        assert wait_until(lambda: first_poll_done(database), 60), "first poll never stored"
        assert wait_until(lambda: mastodon_server.stream_clients() == 1, 30), "no stream"
        # The catch-up poll after connecting has run once the stream is up; let it finish.
        time.sleep(1)
        before = evidence_count(database)
        mastodon_server.post(
            found["jdoe"], "I am outside", "2026-05-06T09:00:00", mentions=(found["alex"],)
        )
        assert wait_until(lambda: evidence_count(database) == before + 1, 5)
    finally:
        service.terminate()
        service.communicate(timeout=30)
    rows = timeline(nocontact, config, mastodon_server)
    assert any(e["text"] == "@alex I am outside" for row in rows for e in row["evidence"])
