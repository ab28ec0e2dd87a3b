"""The IMAP watcher against a real Dovecot (tests/fakes/mailbox.py): read-only, provably;
every kind of message; incremental state; DKIM provenance; IDLE."""

from __future__ import annotations

import email.policy
import hashlib
import imaplib
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
import trustme
from imapclient import IMAPClient
from pydantic import ValidationError

from tests.fakes import dovecot
from tests.fakes.dovecot import JUNK
from tests.fakes.mailbox import (
    DKIM_DOMAIN,
    MailServer,
    dkim_key,
    dkim_record,
    fixture,
    mail_server,  # noqa: F401
    sign,
)
from tests.fakes.oauth_introspection import TOKEN
from watchers import imap as imap_module
from watchers.base import (
    AuthError,
    Observation,
    Targets,
    TransientError,
    Wakeable,
    WatcherConfigError,
)
from watchers.imap import ImapSettings, ImapWatcher
from watchers.mail.provenance import summary


def settings(server: MailServer, **overrides: Any) -> ImapSettings:
    values: dict[str, Any] = {
        "type": "imap",
        "name": "mailbox",
        "host": "127.0.0.1",
        "port": server.proxy.port,
        "security": "none",
        "username": server.user,
        "password": server.password,
        "dns_resolver": server.dns.address,
        "dns_timeout": "2s",
    }
    values.update(overrides)
    return ImapSettings.model_validate(values)


def watcher(server: MailServer, **overrides: Any) -> ImapWatcher:
    return ImapWatcher(settings(server, **overrides), Targets())


def message(
    *,
    subject: str = "hello",
    sender: str = "John Doe <john@example.com>",
    to: str = "alex@example.org",
    body: str = "we need to talk",
    html: str | None = None,
    message_id: str | None = "<m1@example.com>",
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Fri, 01 May 2026 10:00:00 +0000"
    if message_id:
        msg["Message-ID"] = message_id
    if html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)


def by_id(observations: list[Observation]) -> dict[str, Observation]:
    return {obs.native_id: obs for obs in observations}


# --- settings --------------------------------------------------------------------------


def test_settings_need_one_credential_and_tls_off_localhost() -> None:
    base = {"type": "imap", "host": "imap.example.org", "username": "alex@example.org"}
    with pytest.raises(ValidationError, match="exactly one of password"):
        ImapSettings.model_validate(base)
    with pytest.raises(ValidationError, match="exactly one of password"):
        ImapSettings.model_validate({**base, "password": "a", "oauth2_token": "b"})
    with pytest.raises(ValidationError, match="allowed only for a server on localhost"):
        ImapSettings.model_validate({**base, "password": "a", "security": "none"})
    with pytest.raises(ValidationError, match=r'like "127\.0\.0\.1:5353"'):
        ImapSettings.model_validate({**base, "password": "a", "dns_resolver": "dns.google"})
    ok = ImapSettings.model_validate({**base, "oauth2_token": "t", "security": "starttls"})
    assert (ok.server_port, ok.mailbox_address) == (143, "alex@example.org")
    assert ok.secret_fields() == {"password", "oauth2_token"}
    assert ImapSettings.model_validate({**base, "password": "a"}).server_port == 993


# --- reading every kind of message, read-only ------------------------------------------


def big_message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Sam <sam@mail.test>"
    msg["To"] = "alex@example.org"
    msg["Subject"] = "photos"
    msg["Message-ID"] = "<big@mail.test>"
    msg.set_content("the pictures you asked for")
    blob = hashlib.sha256(b"seed").digest() * (15 * 1024 * 1024 // 32)  # 15 MB → 20 MB base64
    msg.add_attachment(blob, maintype="application", subtype="octet-stream", filename="a.bin")
    return msg.as_bytes(policy=email.policy.SMTP)


def append_every_kind(server: MailServer) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(INBOX, junk) messages of every kind, appended by the harness."""
    html_only = message(
        subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        html="<html><body><p>Hi <b>Alex</b></p><script>x()</script></body></html>",
        message_id="<html@example.com>",
    )
    inbox = {
        "plain": fixture("flanker/text-only.eml"),
        "html": html_only,
        "pdf": fixture("flanker/attached-pdf.eml"),  # no Message-ID
        "big": big_message(),
    }
    junk = {
        "koi8": fixture("mimekit/ukr.eml"),
        "encoded": fixture("flanker/encoded-header.eml"),
        "malformed": fixture("flanker/mailformed-headers.eml"),
    }
    for raw in inbox.values():
        server.append(raw)
    for raw in junk.values():
        server.append(raw, JUNK)
    server.append(message(message_id="<read@example.com>"), flags="\\Seen \\Flagged")
    return inbox, junk


def test_every_kind_of_message_in_inbox_and_junk_read_without_changing_flags(
    mail_server: MailServer,  # noqa: F811
) -> None:
    inbox, junk = append_every_kind(mail_server)
    before = (mail_server.flags(), mail_server.flags(JUNK))

    result = watcher(mail_server).poll({})

    assert (mail_server.flags(), mail_server.flags(JUNK)) == before
    verbs = mail_server.proxy.verbs()
    assert "EXAMINE" in verbs
    assert "SELECT" not in verbs
    assert any(c.startswith("UID FETCH") and "BODY.PEEK[]" in c for c in mail_server.proxy.commands)
    found = by_id(result.observations)
    assert len(found) == 8
    assert result.state["folders"].keys() == {"INBOX", JUNK}

    plain = found["CAEAsyCbSF1Bk7CBuu6zp3Qs8=j2iUkNi3dPkGe6z40q4dmaogQ@mail.gmail.com"]
    assert plain.raw == inbox["plain"]  # the RFC 822 bytes exactly as fetched
    assert (plain.platform, plain.kind, plain.raw_content_type) == (
        "email",
        "email",
        "message/rfc822",
    )
    assert (plain.author_handle, plain.author_display_name) == ("bob@marley.com", "Bob Marley")
    assert plain.addressed_to == ("alex@example.org", "hello@there.com")
    assert plain.text.startswith("Testing message parsing\n\nHello,")
    assert plain.posted_at == datetime(2011, 12, 29, 10, 6, 53, tzinfo=UTC)
    assert plain.provenance is not None
    imap = plain.provenance["imap"]
    assert (imap["folder"], imap["uid"]) == ("INBOX", 1)
    assert imap["internaldate"]
    assert imap["uidvalidity"] == result.state["folders"]["INBOX"]["uidvalidity"]

    html = found["html@example.com"]
    assert html.text == "Grüße\n\nHi Alex"

    pdf = found["sha256:" + hashlib.sha256(inbox["pdf"]).hexdigest()]
    assert pdf.provenance is not None
    [attachment] = pdf.provenance["attachments"]
    assert (attachment["filename"], attachment["content_type"]) == ("test.pdf", "application/pdf")
    assert attachment["size"] == 6940
    assert len(attachment["sha256"]) == 64

    big = found["big@mail.test"]
    assert big.raw == inbox["big"]
    assert len(big.raw) > 20_000_000
    assert big.provenance is not None
    assert big.provenance["attachments"][0]["size"] == 15 * 1024 * 1024 // 32 * 32

    koi8 = next(o for o in found.values() if o.native_id.startswith("AM0PR0702MB3522"))
    assert "шостий" in koi8.text
    assert koi8.provenance is not None
    assert koi8.provenance["imap"]["folder"] == JUNK
    encoded = found["1234567890-1234-4567@example.com"]
    assert encoded.author_display_name == "Foo, Bar"
    malformed = next(o for o in found.values() if o.author_handle == "headers@gmail.com")
    assert malformed.raw == junk["malformed"]
    assert malformed.provenance is not None
    assert malformed.provenance["defects"]


def test_state_is_incremental_per_folder(mail_server: MailServer) -> None:  # noqa: F811
    mail_server.append(message(message_id="<one@example.com>"))
    mail_server.append(message(message_id="<two@example.com>"), JUNK)
    first = watcher(mail_server).poll({})
    assert set(by_id(first.observations)) == {"one@example.com", "two@example.com"}
    assert watcher(mail_server).poll(first.state).observations == []
    mail_server.append(message(message_id="<three@example.com>"), JUNK)
    third = watcher(mail_server).poll(first.state)
    assert set(by_id(third.observations)) == {"three@example.com"}
    assert third.state["folders"][JUNK]["last_uid"] == 2
    assert third.state["folders"]["INBOX"] == first.state["folders"]["INBOX"]


def test_backlog_limits_the_first_read(mail_server: MailServer) -> None:  # noqa: F811
    for n in range(5):
        mail_server.append(message(message_id=f"<n{n}@example.com>"))
    result = watcher(mail_server, backlog=2, folders=["INBOX"]).poll({})
    assert set(by_id(result.observations)) == {"n3@example.com", "n4@example.com"}
    assert result.state["folders"]["INBOX"]["last_uid"] == 5


def test_uidvalidity_change_rereads_the_same_items(mail_server: MailServer) -> None:  # noqa: F811
    raws = [message(message_id="<a@example.com>"), message(message_id=None, subject="no id")]
    for raw in raws:
        mail_server.append(raw, JUNK)
    first = watcher(mail_server).poll({})
    mail_server.recreate(JUNK, raws)
    again = watcher(mail_server).poll(first.state)
    assert (
        again.state["folders"][JUNK]["uidvalidity"] != first.state["folders"][JUNK]["uidvalidity"]
    )
    # Same native ids and content: the store keeps one piece of evidence for each.
    assert [(o.native_id, o.text, o.raw) for o in again.observations] == [
        (o.native_id, o.text, o.raw) for o in first.observations
    ]


def test_wrong_password_is_an_auth_error_without_the_password(
    mail_server: MailServer,  # noqa: F811
) -> None:
    with pytest.raises(AuthError) as raised:
        watcher(mail_server, password="wrong-s3cr3t").poll({})
    assert "rejected" in str(raised.value)
    assert "s3cr3t" not in str(raised.value)
    assert "\n" not in str(raised.value)


def test_server_down_is_transient(mail_server: MailServer) -> None:  # noqa: F811
    from tests.fakes.dovecot import free_port

    with pytest.raises(TransientError, match=r"IMAP server 127\.0\.0\.1"):
        watcher(mail_server, port=free_port()).poll({})


def test_missing_folder_is_a_note_not_a_failure(mail_server: MailServer) -> None:  # noqa: F811
    mail_server.append(message())
    result = watcher(mail_server, folders=["INBOX", "Nope"]).poll({})
    assert len(result.observations) == 1
    assert any("'Nope'" in note for note in result.status_notes)


# --- DKIM provenance -------------------------------------------------------------------


def test_dkim_pass_fail_no_key_and_dns_failure(mail_server: MailServer) -> None:  # noqa: F811
    good = sign(message(message_id="<pass@example.com>", body="signed"))
    changed = sign(message(message_id="<fail@example.com>", body="signed")).replace(
        b"signed", b"SIGNED"
    )
    no_key = sign(message(message_id="<nokey@example.com>"), selector="gone")
    broken = sign(message(message_id="<dns@example.com>"), selector="broken")
    mail_server.dns.servfail.add(f"broken._domainkey.{DKIM_DOMAIN}")
    for raw in (good, changed, no_key, broken):
        mail_server.append(raw)
    mail_server.append(message(message_id="<unsigned@example.com>"))

    found = by_id(watcher(mail_server, folders=["INBOX"]).poll({}).observations)

    def verdict(native_id: str) -> dict[str, Any]:
        record = found[native_id].provenance
        assert record is not None
        [entry] = record["dkim"]
        assert (entry["domain"], entry["selector"]) in {
            (DKIM_DOMAIN, s) for s in ("test", "gone", "broken")
        }
        result: dict[str, Any] = entry
        return result

    assert verdict("pass@example.com")["result"] == "pass"
    assert verdict("pass@example.com")["key_record"] == dkim_record()
    assert verdict("fail@example.com")["result"] == "fail"
    assert verdict("fail@example.com")["key_record"] == dkim_record()
    assert verdict("nokey@example.com")["result"] == "no key"
    assert verdict("nokey@example.com")["key_record"] is None
    assert verdict("dns@example.com")["result"] == "unverified (DNS)"
    record = found["pass@example.com"].provenance
    assert record is not None
    assert summary(record) == "DKIM: pass, d=example.com"
    unsigned = found["unsigned@example.com"].provenance
    assert unsigned is not None
    assert unsigned["dkim"] == []
    assert "test._domainkey.example.com" in mail_server.dns.queries


def test_unreachable_resolver_is_unverified_not_a_poll_failure(
    mail_server: MailServer,  # noqa: F811
) -> None:
    from tests.fakes.dovecot import free_port

    mail_server.append(sign(message()))
    result = watcher(mail_server, dns_resolver=f"127.0.0.1:{free_port()}", dns_timeout="0.5s").poll(
        {}
    )
    [obs] = result.observations
    assert obs.provenance is not None
    assert obs.provenance["dkim"][0]["result"] == "unverified (DNS)"


def test_authentication_results_kept_as_received(mail_server: MailServer) -> None:  # noqa: F811
    header = b"Authentication-Results: mx.example.org;\r\n dkim=pass header.d=example.com\r\n"
    mail_server.append(header + message())
    [obs] = watcher(mail_server, folders=["INBOX"]).poll({}).observations
    assert obs.provenance is not None
    assert obs.provenance["authentication_results"] == [
        "mx.example.org; dkim=pass header.d=example.com"
    ]


# --- IDLE ------------------------------------------------------------------------------


def test_idle_wakes_the_service_when_mail_arrives_and_after_a_reconnect(
    mail_server: MailServer,  # noqa: F811
) -> None:
    arrived = threading.Event()
    imap = watcher(mail_server, idle=True, folders=["INBOX"])
    assert isinstance(imap, Wakeable)
    try:
        imap.set_wakeup(arrived.set)
        _wait_for_idle(mail_server)
        mail_server.append(message(message_id="<pushed@example.com>"))
        assert arrived.wait(5), "IDLE did not report the new message within 5 s"
        arrived.clear()
        mail_server.proxy.drop_connections()
        # A lost connection wakes the service too (mail may have come meanwhile) ...
        assert arrived.wait(5)
        arrived.clear()
        _wait_for_idle(mail_server, 2)
        mail_server.append(message(message_id="<after@example.com>"))
        # ... and IDLE resumes on a new connection.
        assert arrived.wait(5)
    finally:
        imap.close()


def test_without_idle_no_thread_is_started(mail_server: MailServer) -> None:  # noqa: F811
    imap = watcher(mail_server)
    imap.set_wakeup(lambda: None)
    imap.close()
    assert "IDLE" not in mail_server.proxy.verbs()


def _wait_for_idle(server: MailServer, count: int = 1) -> None:
    """Until the proxy has seen ``count`` IDLE commands (each on its own connection)."""
    pause = threading.Event()
    for _ in range(200):
        if server.proxy.verbs().count("IDLE") >= count:
            return
        pause.wait(0.05)
    raise AssertionError(f"the watcher never entered IDLE: {server.proxy.commands}")


# --- TLS: a self-hosted server with a private CA -----------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[dovecot.Dovecot, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    server = dovecot.start(tmp_path / "tls-dovecot", (chain, cert.private_key_pem.bytes()))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    try:
        yield server, ca_file
    finally:
        server.stop()


def tls_settings(server: dovecot.Dovecot, **values: Any) -> ImapSettings:
    return ImapSettings.model_validate(
        {
            "type": "imap",
            "host": "127.0.0.1",
            "username": server.user,
            "password": server.password,
            "folders": ["INBOX"],
            "dns_resolver": "127.0.0.1:9",
            "dns_timeout": "0.5s",
            **values,
        }
    )


def test_tls_and_starttls_with_a_private_ca(tls_server: tuple[dovecot.Dovecot, Path]) -> None:
    server, ca_file = tls_server
    harness = imaplib.IMAP4("127.0.0.1", server.port)
    harness.starttls(ssl.create_default_context(cafile=str(ca_file)))
    harness.login(server.user, server.password)
    harness.append("INBOX", None, None, message())
    harness.logout()
    for security, port in (("tls", server.tls_port), ("starttls", server.port)):
        imap = ImapWatcher(
            tls_settings(server, security=security, port=port, ca_file=str(ca_file)), Targets()
        )
        [obs] = imap.poll({}).observations
        assert obs.native_id == "m1@example.com"
    untrusted = ImapWatcher(tls_settings(server, port=server.tls_port), Targets())
    with pytest.raises(WatcherConfigError, match="not trusted"):
        untrusted.poll({})


def test_arc_chain_verdict_is_recorded(mail_server: MailServer) -> None:  # noqa: F811
    # A mailing list (lists.example.com) forwarded the message and sealed the chain.
    raw = b"Authentication-Results: lists.example.com; dkim=none\r\n" + message()
    seal = dkim.arc_sign(raw, b"test", DKIM_DOMAIN.encode(), dkim_key(), b"lists.example.com")
    mail_server.append(b"".join(seal) + raw)
    [obs] = watcher(mail_server, folders=["INBOX"]).poll({}).observations
    assert obs.provenance is not None
    arc = obs.provenance["arc"]
    assert arc["result"] == "pass"
    assert arc["instances"][0]["domain"] == DKIM_DOMAIN
    assert arc["key_records"] == {"test._domainkey.example.com": dkim_record()}


# --- the test bench fails a test that changes the mailbox --------------------------------


def test_the_proxy_catches_mailbox_changing_commands(mail_server: MailServer) -> None:  # noqa: F811
    mail_server.append(message())
    client = IMAPClient("127.0.0.1", port=mail_server.proxy.port, ssl=False)
    client.login(mail_server.user, mail_server.password)
    client.select_folder("INBOX")
    client.fetch([1], ["BODY[]"])
    client.add_flags([1], [b"\\Flagged"])
    client.logout()
    caught = list(mail_server.proxy.violations)
    mail_server.proxy.violations.clear()  # this test made them on purpose
    assert [line.split(" ", 2)[1:] for line in caught] == [
        ["SELECT", '"INBOX"'],
        ["UID", "FETCH 1 (BODY[])"],
        ["UID", "STORE 1 +FLAGS (\\Flagged)"],
    ]
    assert "\\Seen" in mail_server.flags()[1]  # what a careless reader would have done


def test_oauth2_token_goes_through_xoauth2_and_a_rejection_is_an_auth_error(
    mail_server: MailServer,  # noqa: F811
) -> None:
    mail_server.append(message())
    good = watcher(mail_server, password=None, oauth2_token=TOKEN, folders=["INBOX"])
    assert len(good.poll({}).observations) == 1
    assert "AUTHENTICATE" in mail_server.proxy.verbs()
    assert "LOGIN" not in mail_server.proxy.verbs()
    imap = watcher(mail_server, password=None, oauth2_token="expired-s3cr3t-token")
    with pytest.raises(AuthError, match="rejected") as raised:
        imap.poll({})
    assert "s3cr3t" not in str(raised.value)
    assert mail_server.proxy.verbs()[-1] == "AUTHENTICATE"


def test_a_poll_reads_a_bounded_number_of_bytes_and_continues_next_time(
    mail_server: MailServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Limits scaled down from 32 MB per FETCH and 256 MB per poll to one message each.
    monkeypatch.setattr(imap_module, "FETCH_BYTES", 100)
    monkeypatch.setattr(imap_module, "POLL_BYTES", 100)
    for n in range(3):
        mail_server.append(message(message_id=f"<part{n}@example.com>"))
    imap = watcher(mail_server, folders=["INBOX"])
    state: dict[str, Any] = {}
    seen: list[str] = []
    notes: list[list[str]] = []
    for _ in range(3):
        result = imap.poll(state)
        state = result.state
        seen += [obs.native_id for obs in result.observations]
        notes.append(result.status_notes)
    assert seen == ["part0@example.com", "part1@example.com", "part2@example.com"]
    assert notes == [
        ["INBOX: 2 message(s) left for the next poll"],
        ["INBOX: 1 message(s) left for the next poll"],
        [],
    ]
    fetches = [c for c in mail_server.proxy.commands if "BODY.PEEK[]" in c]
    assert fetches == [f"UID FETCH {n} (BODY.PEEK[] INTERNALDATE RFC822.SIZE)" for n in (1, 2, 3)]
