"""Re-check of captured Mastodon statuses (#12 item 4, #14 item 2), through the real
Mastodon.py against the fake instance: deleted (404 and 410), edited, the account
suspended, unchanged; a 429 leaves the rest for after the reset; and `nocontact recheck`
prints what changed without alerting at once."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.fakes.mastodon_server import TOKEN, FakeMastodon, mastodon_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import Runner, nocontact  # noqa: F401
from tests.test_end_to_end_mastodon import env, write_config
from tests.test_mastodon import make_watcher, populate
from watchers.base import Observation, RecheckItem


def item(observation: Observation) -> RecheckItem:
    return RecheckItem(observation.native_id, observation.url, observation.text, observation.raw)


def test_recheck_finds_deleted_edited_suspended_and_unchanged_statuses(
    mastodon_server: FakeMastodon,  # noqa: F811
) -> None:
    found = populate(mastodon_server)
    watcher = make_watcher(mastodon_server)
    captured = {o.native_id: o for o in watcher.poll({}).observations}
    alt = next(a for a in mastodon_server.accounts.values() if a["acct"].startswith("j0hndoe"))
    alt_post = next(o for o in captured.values() if o.author_handle == alt["acct"])
    mastodon_server.delete(found["direct"])
    mastodon_server.delete(found["reply"], gone=True)
    mastodon_server.edit(found["mention"], "you cannot hide from me, ever", "2026-05-01T10:05:00")
    mastodon_server.suspend(alt)
    wanted = [captured[found[k]["uri"]] for k in ("direct", "reply", "mention", "image")] + [
        alt_post
    ]
    results = {r.native_id: r for r in watcher.recheck([item(o) for o in wanted])}

    assert results[found["direct"]["uri"]].outcome == "deleted"
    assert results[found["reply"]["uri"]].outcome == "deleted"
    edited = results[found["mention"]["uri"]]
    assert edited.outcome == "edited"
    assert edited.observation is not None
    assert edited.observation.text == "@alex you cannot hide from me, ever"
    assert edited.observation.kind == "mention"
    assert len(json.loads(edited.observation.raw)["history"]) == 2
    assert results[found["image"]["uri"]].outcome == "unchanged"
    suspended = results[alt_post.native_id]
    assert (suspended.outcome, suspended.detail) == ("unavailable", "account suspended")
    # Each status was read by the id this instance gave it, and nothing was written.
    asked = {r.path for r in mastodon_server.requests_to("/api/v1/statuses/")}
    assert f"/api/v1/statuses/{found['direct']['id']}" in asked
    assert mastodon_server.write_attempts == []
    watcher.close()


def test_a_429_leaves_the_rest_until_the_reset(
    mastodon_server: FakeMastodon,  # noqa: F811
) -> None:
    found = populate(mastodon_server)
    watcher = make_watcher(mastodon_server)
    captured = {o.native_id: o for o in watcher.poll({}).observations}
    wanted = [item(captured[found[k]["uri"]]) for k in ("direct", "reply", "mention")]
    reset = datetime.fromtimestamp(time.time() + 120, tz=UTC).isoformat()
    mastodon_server.fail_next(
        429,
        "Too many requests",
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset.replace("+00:00", "Z")},
        path_contains=f"/statuses/{found['reply']['id']}",
    )
    first = watcher.recheck(wanted)
    assert [r.native_id for r in first] == [found["direct"]["uri"]]
    before = len(mastodon_server.requests)
    assert watcher.recheck(wanted) == []
    assert len(mastodon_server.requests) == before, "nothing asked before the reset"
    watcher.close()


def test_cli_recheck_prints_a_mastodon_deletion_and_alerts_nothing(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    mastodon_server: FakeMastodon,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    found = populate(mastodon_server)
    config = write_config(tmp_path / "config.yaml", webhook_receiver.json_url())
    nocontact("run", "-c", str(config), "--once", env=env(mastodon_server))
    db = tmp_path / "nc.db"
    with sqlite3.connect(db) as conn:
        (alerts,) = conn.execute("SELECT count(*) FROM alert_outbox").fetchone()
    mastodon_server.delete(found["direct"])

    result = nocontact("recheck", "-c", str(config), env=env(mastodon_server))
    lines = result.stdout.splitlines()
    assert f"mastodon {found['direct']['uri']}: deleted (deleted by its author), between " in (
        "\n".join(lines)
    )
    assert lines[-1] == "1 item(s) changed since they were captured or last checked"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM alert_outbox").fetchone() == (alerts,)
    rows = json.loads(
        nocontact(
            "timeline", "-c", str(config), "--format", "json", env=env(mastodon_server)
        ).stdout
    )
    (row,) = [r for r in rows if found["direct"]["uri"] in {e["native_id"] for e in r["evidence"]}]
    (item,) = [e for e in row["evidence"] if e["native_id"] == found["direct"]["uri"]]
    assert item["deleted_at"] is not None

    # `show` gives the deletion: outcome, when, the window and its chain record.
    shown = nocontact("show", row["id"][:8], "-c", str(config), "--format", "json")
    (deletion,) = json.loads(shown.stdout)["deletions"]
    assert deletion["outcome"] == "deleted"
    assert deletion["native_id"] == found["direct"]["uri"]
    assert deletion["deleted_at"] == item["deleted_at"] == deletion["deleted_between"][1]
    assert deletion["deleted_between"][0] == item["captured_at"]
    assert isinstance(deletion["chain_record"], int)
    text = nocontact("show", row["id"][:8], "-c", str(config)).stdout
    assert "Found gone since capture:" in text
    assert f"mastodon {found['direct']['uri']}: DELETED (deleted by its author)" in text
    assert f"between {item['captured_at']} (" in text
    assert f"(chain record {deletion['chain_record']})" in text
    assert mastodon_server.write_attempts == []
    assert TOKEN not in result.stdout + result.stderr
