"""E-mail through the whole service: `nocontact run` against a real Dovecot (through the
command-logging proxy that fails the test on any mailbox-changing command), DKIM keys
from a local DNS server, then the timeline, the export packet, IDLE and a bad password.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.fakes.dovecot import JUNK
from tests.fakes.mailbox import MailServer, mail_server, sign  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import Runner, nocontact  # noqa: F401
from tests.test_imap import message


def write_config(
    tmp_path: Path, server: MailServer, receiver: WebhookReceiver, **watcher: str
) -> Path:
    extra = "".join(f"    {key}: {value}\n" for key, value in watcher.items())
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""\
database: sqlite:///nc.db
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15, reference: "PO-2026-1234", terms: [no_contact]}}
    protected: {{names: ["Alex Smith"], handles: {{email: ["{server.user}"]}}}}
    restrained:
      names: ["John Doe"]
      handles: {{email: [john.doe@example.com]}}
      associates: {{email: [pat@friends.test]}}
    alert: [phone]
watchers:
  - type: imap
    name: mailbox
    host: 127.0.0.1
    port: {server.proxy.port}
    security: none
    username: "{server.user}"
    password: ${{IMAP_PASSWORD}}
    dns_resolver: "{server.dns.address}"
    dns_timeout: 2s
{extra}alerts:
  phone:
    urls: ["{receiver.json_url()}"]
""",
        encoding="utf-8",
    )
    return config


def mail(message_id: str, sender: str, body: str = "we need to talk") -> bytes:
    return message(message_id=f"<{message_id}>", sender=sender, body=body)


MESSAGES = {
    "contact@example.com": ("INBOX", "John Doe <john.doe@example.com>", "we need to talk"),
    "alt@example.com": (JUNK, "Johnny <j0hn.d0e@mail.test>", "it's me"),
    "display@example.com": (JUNK, "John Doe <fresh1@new.test>", "new address"),
    "friend@example.com": ("INBOX", "Pat <pat@friends.test>", "he misses you"),
    "proxy@example.com": ("INBOX", "Sam <sam@neighbours.test>", "John Doe asked me to write"),
    "news@example.com": ("INBOX", "Shop <news@shop.test>", "50% off"),
}


def test_mailbox_run_fills_the_timeline_once_without_touching_the_mailbox(
    tmp_path: Path,
    mail_server: MailServer,  # noqa: F811
    nocontact: Runner,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    env = {"IMAP_PASSWORD": mail_server.password}
    raws = {}
    for message_id, (folder, sender, body) in MESSAGES.items():
        raw = mail(message_id, sender, body)
        if message_id == "contact@example.com":
            raw = sign(raw)  # signed by example.com's key in the local DNS
        raws[message_id] = raw
        mail_server.append(raw, folder)
    flags = (mail_server.flags(), mail_server.flags(JUNK))
    config = write_config(tmp_path, mail_server, webhook_receiver)

    def timeline() -> list[dict[str, Any]]:
        out = nocontact("timeline", "-c", str(config), "--format", "json", env=env)
        rows: list[dict[str, Any]] = json.loads(out.stdout)
        return rows

    first = nocontact("run", "-c", str(config), "--once", env=env)
    assert "new violation(s)" in first.stdout
    rows = timeline()
    by_id = {row["evidence"][0]["native_id"]: row for row in rows}
    assert {key: row["kind"] for key, row in by_id.items()} == {
        "contact@example.com": "contact",
        "alt@example.com": "suspected_alt",
        "display@example.com": "suspected_alt",
        "friend@example.com": "third_party",
        "proxy@example.com": "suspected_proxy",
    }
    assert by_id["contact@example.com"]["reason"] == (
        "email from restrained address `john.doe@example.com` "
        f"to protected address `{mail_server.user}`"
    )
    assert "`j0hn.d0e@mail.test` resembles" in by_id["alt@example.com"]["reason"]
    assert 'display name "John Doe"' in by_id["display@example.com"]["reason"]
    assert "associate `pat@friends.test`" in by_id["friend@example.com"]["reason"]
    assert by_id["proxy@example.com"]["reason"].startswith(
        "`sam@neighbours.test` (unknown address) addresses the protected person"
    )
    assert by_id["proxy@example.com"]["suspected"] is True
    assert (mail_server.flags(), mail_server.flags(JUNK)) == flags  # nothing marked read

    second = nocontact("run", "-c", str(config), "--once", env=env)
    assert "0 new evidence, 0 new violation(s)" in second.stdout

    # The junk folder restored from a backup: a new UIDVALIDITY, the same messages.
    junk = [raws[key] for key, (folder, _, _) in MESSAGES.items() if folder == JUNK]
    mail_server.recreate(JUNK, junk)
    third = nocontact("run", "-c", str(config), "--once", env=env)
    assert "0 new evidence, 0 new violation(s)" in third.stdout
    assert timeline() == rows

    packet = tmp_path / "packet"
    nocontact("export", "-c", str(config), "--case", "smith-v-doe", "--out", str(packet), env=env)
    check_packet(packet, raws["contact@example.com"])


def check_packet(packet: Path, signed_raw: bytes) -> None:
    """Each e-mail's .eml with its DKIM record beside it; the verdicts in the report."""
    emls = sorted(packet.glob("raw/*.eml"))
    assert len(emls) == 5
    assert signed_raw in [path.read_bytes() for path in emls]
    [signed] = [p for p in emls if "contact_example.com" in p.name]
    record = json.loads(signed.with_suffix(".provenance.json").read_text())
    assert record["dkim"][0]["result"] == "pass"
    assert record["dkim"][0]["key_record"].startswith("v=DKIM1")
    report = (packet / "report.html").read_text()
    assert "DKIM: pass, d=example.com" in report
    assert "DKIM: none (the message is not signed)" in report


def test_idle_brings_a_new_message_into_the_timeline_within_5_seconds(
    tmp_path: Path,
    mail_server: MailServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    mail_server.append(mail("first@example.com", "john.doe@example.com"))
    config = write_config(tmp_path, mail_server, webhook_receiver, idle="true", every="1h")
    service = subprocess.Popen(  # noqa: S603 - our own CLI, as systemd would start it
        [sys.executable, "-m", "service", "run", "-c", str(config)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "IMAP_PASSWORD": mail_server.password},
    )
    try:
        assert _wait(lambda: _evidence(tmp_path, "first@example.com"), 60)
        assert _wait(lambda: mail_server.proxy.verbs().count("IDLE") >= 2, 30)
        mail_server.append(mail("pushed@example.com", "john.doe@example.com"))
        appended = time.monotonic()
        assert _wait(lambda: _evidence(tmp_path, "pushed@example.com"), 5)
        assert time.monotonic() - appended < 5
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=30)
    assert "nocontact stopped" in stderr


def test_wrong_password_disables_the_watcher_with_one_operator_alert(
    tmp_path: Path,
    mail_server: MailServer,  # noqa: F811
    nocontact: Runner,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    env = {"IMAP_PASSWORD": "wrong-s3cr3t-password"}
    config = write_config(tmp_path, mail_server, webhook_receiver)
    for _ in range(2):
        # Exit 1: the contract's "0 only when every watcher polled".
        result = nocontact("run", "-c", str(config), "--once", env=env, expect=1)
        assert "mailbox: failed: IMAP login" in result.stderr
    assert "DISABLED: " in nocontact("status", "-c", str(config), env=env).stdout
    messages = [r.json["message"] for r in webhook_receiver.accepted]
    assert sum("watcher mailbox is disabled" in m for m in messages) == 1
    assert len(messages) == 1


def _evidence(tmp_path: Path, native_id: str) -> bool:
    database = tmp_path / "nc.db"
    if not database.exists():
        return False
    with closing(sqlite3.connect(database)) as connection:
        try:
            row = connection.execute(
                "SELECT count(*) FROM evidence WHERE native_id = ?", (native_id,)
            ).fetchone()
        except sqlite3.OperationalError:
            return False  # not migrated yet
    return bool(row[0])


def _wait(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())
