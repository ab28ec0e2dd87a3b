"""Bluesky through the whole service: `nocontact run --once` against the local fake
Bluesky (XRPC) and fake Jetstream, then the timeline, a handle change, a deletion and a
restart that resumes from the stored cursor."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fakes.bluesky_server import (
    APP_PASSWORD,
    IDENTIFIER,
    PROTECTED_DID,
    FakeBluesky,
    FakeJetstream,
    bluesky_server_fixture,  # noqa: F401
    jetstream_fixture,  # noqa: F401
)
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_bluesky import (
    ALT_DID,
    FRIEND_DID,
    JDOE_DID,
    STRANGER_DID,
    mention_facet,
    record,
    reply_to,
)
from tests.test_end_to_end import Runner, nocontact  # noqa: F401

# Jetstream replays about a day: the scenario happens in the last hour.
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


def populate(server: FakeBluesky, jet: FakeJetstream) -> None:
    server.add_account(JDOE_DID, "johndoe.bsky.social", "John Doe", "2023-02-01T00:00:00.000Z")
    server.add_account(FRIEND_DID, "jdoefriend.bsky.social", "Jim", "2023-03-01T00:00:00.000Z")
    server.add_account(ALT_DID, "j0hnd0e.bsky.social", "J", "2026-04-20T00:00:00.000Z")
    server.add_account(STRANGER_DID, "helper.bsky.social", "H", "2022-01-01T00:00:00.000Z")
    reply = record("you cannot hide", at(1), reply=reply_to(PROTECTED_DID, "3alex1"))
    server.add_post(JDOE_DID, "3jdoe1", reply, at(1), notify="reply")
    server.add_post(JDOE_DID, "3jdoe2", record("Alex Smith is a liar", at(2)), at(2))
    server.add_post(FRIEND_DID, "3friend1", record("Tell Alex Smith to call", at(3)), at(3))
    tag = mention_facet(PROTECTED_DID, 0, 17)
    server.add_post(
        ALT_DID, "3alt1", record("@alex.bsky.social hi", at(30), facets=tag), at(30), "mention"
    )
    proxy = record("@alex.bsky.social John Doe says call him", at(60), facets=tag)
    server.add_post(STRANGER_DID, "3proxy1", proxy, at(60), notify="mention")
    # In real time: the restrained party names her again.
    jet.post(JDOE_DID, "3live1", record("Alex Smith again and again", at(50)), at(50))


def write_config(path: Path, server: FakeBluesky, jet: FakeJetstream, hook: str) -> Path:
    path.write_text(
        f"""\
database: sqlite:///nc.db
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15, reference: "PO-2026-1234", terms: [no_contact, no_mention]}}
    protected: {{names: ["Alex Smith"], handles: {{bluesky: [{IDENTIFIER}]}}}}
    restrained:
      names: ["John Doe"]
      handles: {{bluesky: [johndoe.bsky.social]}}
      associates: {{bluesky: [jdoefriend.bsky.social]}}
    alert: [phone]
watchers:
  - type: bluesky
    every: 1m
    identifier: {IDENTIFIER}
    app_password: ${{BSKY_APP_PASSWORD}}
    service_url: {server.base_url}
    appview_url: {server.base_url}
    jetstream_url: {jet.url}
    realtime: true
    catchup: 5s
alerts:
  phone:
    urls: ["{hook}"]
""",
        encoding="utf-8",
    )
    return path


def evidence_versions(tmp_path: Path) -> list[tuple[str, int, str, bytes]]:
    with sqlite3.connect(tmp_path / "nc.db") as db:
        return list(
            db.execute("SELECT native_id, version, capture_method, raw FROM evidence ORDER BY seq")
        )


def test_bluesky_run_fills_the_timeline_follows_a_renamed_account_and_resumes(
    tmp_path: Path,
    bluesky_server: FakeBluesky,
    jetstream: FakeJetstream,
    nocontact: Runner,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    populate(bluesky_server, jetstream)
    config = write_config(
        tmp_path / "config.yaml", bluesky_server, jetstream, webhook_receiver.json_url()
    )
    env = {"BSKY_APP_PASSWORD": APP_PASSWORD}

    def timeline() -> list[dict[str, Any]]:
        out = nocontact("timeline", "-c", str(config), "--format", "json", env=env)
        rows: list[dict[str, Any]] = json.loads(out.stdout)
        return rows

    first = nocontact("run", "-c", str(config), "--once", env=env)
    assert "new violation(s)" in first.stdout
    rows = timeline()
    kinds = {row["kind"]: row for row in rows}
    assert set(kinds) == {"contact", "mention", "third_party", "suspected_alt", "suspected_proxy"}
    assert "restrained account `johndoe.bsky.social`" in kinds["contact"]["reason"]
    alt = kinds["suspected_alt"]
    assert alt["suspected"] is True
    assert "j0hnd0e.bsky.social" in alt["reason"]
    assert "after the order" in alt["reason"]
    assert kinds["suspected_proxy"]["suspected"] is True
    assert "jdoefriend.bsky.social" in kinds["third_party"]["reason"]
    live = f"at://{JDOE_DID}/app.bsky.feed.post/3live1"
    evidence = [e for row in rows for e in row["evidence"]]
    assert live in {e["native_id"] for e in evidence}
    for item in evidence:
        assert item["platform"] == "bluesky"
        assert item["url"].startswith("https://bsky.app/profile/did:plc:")
    assert webhook_receiver.accepted
    # The record's CID (its content hash on the network) is in the evidence report.
    packet = tmp_path / "packet"
    nocontact("export", "-c", str(config), "--case", "smith-v-doe", "--out", str(packet), env=env)
    report = (packet / "report.html").read_text(encoding="utf-8")
    assert "record CID bafyrei3jdoe1cid" in report

    # While nocontact is stopped: jdoe renames, replies under the new handle, and
    # deletes the post seen in real time.
    jetstream.identity(JDOE_DID, "johnny.bsky.social", at(70), seq=501)
    bluesky_server.rename(JDOE_DID, "johnny.bsky.social")
    reply = record("still here", at(71), reply=reply_to(PROTECTED_DID, "3alex1"))
    jetstream.post(JDOE_DID, "3jdoe9", reply, at(71))
    jetstream.delete(JDOE_DID, "3live1", at(72))

    second = nocontact("run", "-c", str(config), "--once", env=env)
    assert "new violation(s)" in second.stdout
    # The restart resumed from the stored cursor (minus Jetstream's rewind margin).
    assert "cursor" in jetstream.connections[-1]
    renamed = [
        row
        for row in timeline()
        if any(e["native_id"].endswith("/3jdoe9") for e in row["evidence"])
    ]
    assert len(renamed) == 1
    assert renamed[0]["kind"] == "contact"
    assert "`johndoe.bsky.social` (now `johnny.bsky.social`)" in renamed[0]["reason"]
    stored = evidence_versions(tmp_path)
    versions = [(n, v) for n, v, _m, _r in stored]
    # Nothing stored twice although the stream replayed part of the first run.
    assert len(versions) == len(set(versions))
    # The deletion is not a version (which would say the author edited the post) but a
    # chain record with its window: from the capture to the delete event's time.
    assert [v for n, v, _m, _r in stored if n == live] == [1]
    with sqlite3.connect(tmp_path / "nc.db") as db:
        [(data, blob)] = db.execute("SELECT data, blob FROM chain_records WHERE record='recheck'")
    assert json.loads(data)["outcome"] == "deleted"
    assert json.loads(blob)["commit"]["operation"] == "delete"
    gone = next(e for row in timeline() for e in row["evidence"] if e["native_id"] == live)
    deleted_at = at(72).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert gone["deleted_at"] == deleted_at
    assert gone["deleted_between"][1] == deleted_at
    assert gone["deleted_between"][0] < deleted_at
    nocontact("verify", "-c", str(config), env=env)
    again = tmp_path / "packet2"
    nocontact("export", "-c", str(config), "--case", "smith-v-doe", "--out", str(again), env=env)
    report = (again / "report.html").read_text(encoding="utf-8")
    assert "Platform delete event: DELETED (deleted by its author (Jetstream" in report
    handle_change = [m for n, _v, m, _r in stored if n == f"{JDOE_DID}#identity-501"]
    assert handle_change == ["Bluesky Jetstream account event"]

    third = nocontact("run", "-c", str(config), "--once", env=env)
    assert "0 new evidence, 0 new violation(s)" in third.stdout
    assert bluesky_server.write_attempts == []
    # The stored delete event is covered by the chain record's event_sha256.
    with sqlite3.connect(tmp_path / "nc.db") as db:
        db.execute("UPDATE chain_records SET blob = ? WHERE record = 'recheck'", (b"{}",))
    broken = nocontact("verify", "-c", str(config), expect=None, env=env)
    assert broken.returncode != 0
    assert "event_sha256" in broken.stdout + broken.stderr


def test_the_running_service_stores_a_post_the_moment_jetstream_sends_it(
    tmp_path: Path,
    bluesky_server: FakeBluesky,
    jetstream: FakeJetstream,
    nocontact: Runner,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    """``nocontact run`` (not --once): the reader thread keeps the WebSocket open, and
    each poll (here every 10 s, the shortest allowed) stores what arrived since the last one."""
    bluesky_server.add_account(
        JDOE_DID, "johndoe.bsky.social", "John Doe", "2023-02-01T00:00:00.000Z"
    )
    bluesky_server.add_account(
        FRIEND_DID, "jdoefriend.bsky.social", "Jim", "2023-03-01T00:00:00.000Z"
    )
    config = write_config(
        tmp_path / "config.yaml", bluesky_server, jetstream, webhook_receiver.json_url()
    )
    config.write_text(
        config.read_text(encoding="utf-8").replace("every: 1m", "every: 10s"), encoding="utf-8"
    )
    service = start_service(config, {"BSKY_APP_PASSWORD": APP_PASSWORD})
    try:
        deadline = time.monotonic() + 30
        while not jetstream.connections and time.monotonic() < deadline:
            time.sleep(0.1)
        assert jetstream.connections, "the service never connected to Jetstream"
        reply = record("I see you", at(80), reply=reply_to(PROTECTED_DID, "3alex1"))
        jetstream.post(JDOE_DID, "3rt1", reply, datetime.now(UTC))
        rows = wait_for_violations(nocontact, config, 1, env={"BSKY_APP_PASSWORD": APP_PASSWORD})
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=60)
    assert [row["kind"] for row in rows] == ["contact"]
    assert rows[0]["evidence"][0]["native_id"] == f"at://{JDOE_DID}/app.bsky.feed.post/3rt1"
    assert service.returncode == 0, stderr
    assert len(jetstream.connections) == 1  # one connection kept across polls


def start_service(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NOCONTACT_")}
    return subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "service", "run", "-c", str(config)],
        cwd=config.parent,
        env=environment | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_violations(
    nocontact: Runner,  # noqa: F811
    config: Path,
    count: int,
    env: dict[str, str],
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        out = nocontact("timeline", "-c", str(config), "--format", "json", env=env)
        rows: list[dict[str, Any]] = json.loads(out.stdout)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)
