"""The e-mail test bench: a real Dovecot, the command-logging proxy nocontact talks
through, a DNS server for DKIM keys, and the harness that appends messages.

The harness speaks to Dovecot directly with the standard library's imaplib (APPEND,
and EXAMINE + FETCH FLAGS to check flags); nocontact only ever reaches Dovecot through
the proxy, which fails the test on any command that could change the mailbox.
"""

from __future__ import annotations

import dataclasses
import imaplib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from imapclient.imap_utf7 import encode as utf7

from tests.fakes import dovecot
from tests.fakes.dns_server import KeyServer
from tests.fakes.imap_proxy import ImapProxy
from tests.fakes.oauth_introspection import IntrospectionServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "email"
DKIM_DOMAIN = "example.com"
DKIM_SELECTOR = "test"
_FLAGS = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)")


def crlf(raw: bytes) -> bytes:
    """IMAP messages use CRLF line ends; the fixture files use LF."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def fixture(name: str) -> bytes:
    return crlf((FIXTURES / name).read_bytes())


def dkim_key() -> bytes:
    return (FIXTURES / "dkimpy" / "test.private").read_bytes()


def dkim_record() -> str:
    return (FIXTURES / "dkimpy" / "test.txt").read_text().strip()


def sign(raw: bytes, selector: str = DKIM_SELECTOR, domain: str = DKIM_DOMAIN) -> bytes:
    """``raw`` with a DKIM-Signature (dkimpy, the test key) prepended."""
    header = dkim.sign(
        raw,
        selector.encode(),
        domain.encode(),
        dkim_key(),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    return bytes(header) + raw


@dataclasses.dataclass
class MailServer:
    dovecot: dovecot.Dovecot
    proxy: ImapProxy
    dns: KeyServer

    @property
    def user(self) -> str:
        return self.dovecot.user

    @property
    def password(self) -> str:
        return self.dovecot.password

    def _harness(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.dovecot.port)
        client.login(self.user, self.password)
        return client

    def append(self, raw: bytes, folder: str = "INBOX", flags: str = "") -> None:
        client = self._harness()
        try:
            status, data = client.append(_mailbox(folder), flags or None, None, raw)
            assert status == "OK", data
        finally:
            client.logout()

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        """UID → flags, read with EXAMINE so that reading changes nothing."""
        client = self._harness()
        try:
            status, _ = client.select(_mailbox(folder), readonly=True)
            assert status == "OK"
            status, data = client.uid("FETCH", "1:*", "(FLAGS)")
            assert status == "OK"
            found: dict[int, set[str]] = {}
            for item in data:
                line = item[0] if isinstance(item, tuple) else item
                match = _FLAGS.search(line or b"")
                if match:
                    uid = match.group(1) or match.group(4)
                    flags = match.group(2) if match.group(2) is not None else match.group(3)
                    found[int(uid)] = set(flags.decode().split())
            return found
        finally:
            client.logout()

    def uidvalidity(self, folder: str) -> int:
        client = self._harness()
        try:
            status, data = client.status(_mailbox(folder), "(UIDVALIDITY)")
            assert status == "OK"
            match = re.search(rb"UIDVALIDITY (\d+)", data[0] or b"")
            assert match
            return int(match.group(1))
        finally:
            client.logout()

    def recreate(self, folder: str, messages: list[bytes]) -> None:
        """Delete and re-create ``folder`` with ``messages``: a new UIDVALIDITY, as after
        a server migration or restore."""
        before = self.uidvalidity(folder)
        client = self._harness()
        try:
            while True:
                assert client.delete(_mailbox(folder))[0] == "OK"
                assert client.create(_mailbox(folder))[0] == "OK"
                if self._validity(client, folder) != before:
                    break
                time.sleep(0.2)  # Dovecot derives UIDVALIDITY from the clock's second
        finally:
            client.logout()
        for raw in messages:
            self.append(raw, folder)

    @staticmethod
    def _validity(client: imaplib.IMAP4, folder: str) -> int:
        _, data = client.status(_mailbox(folder), "(UIDVALIDITY)")
        match = re.search(rb"UIDVALIDITY (\d+)", data[0] or b"")
        return int(match.group(1)) if match else 0


def _mailbox(folder: str) -> str:
    name = utf7(folder).decode("ascii")
    return f'"{name}"' if " " in name else name


@pytest.fixture
def mail_server(tmp_path: Path) -> Iterator[MailServer]:
    tokens = IntrospectionServer(dovecot.USER)
    server = dovecot.start(tmp_path / "dovecot", introspection_url=tokens.url)
    proxy = ImapProxy(server.port)
    dns = KeyServer().start()
    dns.records[f"{DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}"] = dkim_record()
    try:
        yield MailServer(server, proxy, dns)
    finally:
        proxy.stop()
        dns.stop()
        server.stop()
        tokens.stop()
    assert proxy.violations == [], f"nocontact sent mailbox-changing commands: {proxy.violations}"
