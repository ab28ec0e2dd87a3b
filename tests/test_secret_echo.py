"""Servers that echo the credentials they were sent (#10 item 6): a feed server puts
the Basic credentials (base64 of user:password) and the password in its reason phrase
and body, another answers for a URL whose path holds a token, and the alert target
echoes its Authorization header. After three ``run --once`` (so that health alerts are
queued and tried), the secrets appear nowhere: stdout, stderr, any column of any table,
the alert bodies the target received, and a case export."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, table, text

from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import FORUM_FEED, Runner, nocontact, write_config  # noqa: F401
from watchers.toolkit.redact import basic_credentials

FEED_USER, FEED_PASSWORD = "alex", "s3cr3t-feed-pw"
PATH_TOKEN = "s3cr3tFeedToken1234"
HOOK_USER, HOOK_PASSWORD = "hook", "s3cr3t-hook-pw"
SECRETS = [
    FEED_PASSWORD,
    basic_credentials(FEED_USER, FEED_PASSWORD),
    PATH_TOKEN,
    HOOK_PASSWORD,
    basic_credentials(HOOK_USER, HOOK_PASSWORD),
    base64.b64encode(PATH_TOKEN.encode()).decode(),
]


def _leaks(where: str, content: str) -> list[str]:
    return [f"{where}: {secret[:3]}…" for secret in SECRETS if secret in content]


def _database_text(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        names = inspect(engine).get_table_names()
        parts = []
        with engine.connect() as connection:
            for name in names:
                columns = [c["name"] for c in inspect(engine).get_columns(name)]
                query = select(*(text(f'"{c}"') for c in columns)).select_from(table(name))
                for row in connection.execute(query):
                    parts.extend(
                        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                        for v in row
                    )
        return "\n".join(parts)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_echoed_credentials_appear_nowhere(
    tmp_path: Path,
    database_url: str,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    basic = basic_credentials(FEED_USER, FEED_PASSWORD)
    echo = f"Unauthorized Basic {basic} password {FEED_PASSWORD}"
    feed_server.set("/echo.xml", status=500, reason=echo, body=echo.encode())
    token_path = f"/u/{PATH_TOKEN}/feed.xml"
    feed_server.set(token_path, status=503, reason=f"Down {token_path}", body=token_path.encode())
    feed_server.set("/good.xml", body=FORUM_FEED)
    webhook_receiver.fail_status = 500
    webhook_receiver.echo_auth = True
    hook = webhook_receiver.json_url().replace("://", f"://{HOOK_USER}:{HOOK_PASSWORD}@", 1)
    host = feed_server.url("/").split("://", 1)[1].rstrip("/")
    config = write_config(
        tmp_path / "config.yaml",
        database_url,
        {
            "echo": f"http://{FEED_USER}:{FEED_PASSWORD}@{host}/echo.xml",
            "pathtoken": feed_server.url(token_path),
            "forum": feed_server.url("/good.xml"),
        },
        {"phone": {"urls": [hook], "operator": True}},
    )

    outputs = []
    for _ in range(3):
        run = nocontact("run", "-c", str(config), "--once", expect=1)
        outputs += [run.stdout, run.stderr]
    assert "echo: failed" in outputs[-1]
    assert "HTTP 500" in outputs[-1]
    assert "pathtoken: failed" in outputs[-1]
    for command in (("status",), ("status", "--health")):
        result = nocontact(*command, "-c", str(config), expect=None)
        outputs += [result.stdout, result.stderr]
    out_dir = tmp_path / "export"
    exported = nocontact(
        "export", "-c", str(config), "--case", "smith-v-doe", "--out", str(out_dir)
    )
    outputs += [exported.stdout, exported.stderr]

    assert webhook_receiver.requests, "the alert target was tried"
    leaks = _leaks("output", "\n".join(outputs))
    leaks += _leaks("database", _database_text(database_url))
    bodies = "\n".join(r.body.decode("utf-8", "replace") for r in webhook_receiver.requests)
    leaks += _leaks("alert bodies", bodies)
    for path in out_dir.rglob("*"):
        if path.is_file():
            leaks += _leaks(f"export {path.name}", path.read_bytes().decode("utf-8", "replace"))
    assert not leaks
    # Ordinary words and host names stay readable in the stored error.
    assert "127.0.0.1" in _database_text(database_url)
