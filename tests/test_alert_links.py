"""An alert links to the violation it is about (#17, #18 item 7): with `public_url` set,
the message delivered to the phone carries `<public_url>/v/<violation id>`, which the web
view serves; without it, the `nocontact show <id>` command to run."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import Runner, item, nocontact, rss, timeline, write_config  # noqa: F401

CONTACT = rss(item("p1", "jdoe", "hey", "@alex_smith answer me", "Fri, 01 May 2026 10:00:00 GMT"))


def _run(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
    public_url: str | None,
) -> tuple[str, str]:
    feed_server.set("/forum.xml", body=CONTACT)
    config = write_config(
        tmp_path / "config.yaml",
        f"sqlite:///{tmp_path / 'nc.db'}",
        {"forum": feed_server.url("/forum.xml")},
        {"phone": {"urls": [webhook_receiver.json_url()]}},
    )
    if public_url is not None:
        config.write_text(f"public_url: {public_url}\n" + config.read_text(), encoding="utf-8")
    nocontact("run", "-c", str(config), "--once")
    [violation] = timeline(nocontact, config)
    [message] = [r.json["message"] for r in webhook_receiver.accepted]
    return violation["id"], message


def test_the_alert_carries_the_web_view_link_when_public_url_is_set(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    url = "https://nocontact.example/"
    violation_id, message = _run(tmp_path, nocontact, feed_server, webhook_receiver, url)
    assert f"https://nocontact.example/v/{violation_id}" in message
    assert "nocontact show" not in message


def test_without_public_url_the_alert_names_the_show_command(
    tmp_path: Path,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    violation_id, message = _run(tmp_path, nocontact, feed_server, webhook_receiver, None)
    assert f"nocontact show {violation_id}" in message
    assert "/v/" not in message
