"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it receives.

Usage in a test module::

    from tests.fakes.smtp_server import smtp_server  # noqa: F401

    def test_x(smtp_server: FakeSmtpServer) -> None:
        url = smtp_server.mailto_url(to="alex@example.org")
        ...
        assert smtp_server.messages[0]["Subject"] == ...

``stop()`` closes the listening socket (connections are refused, as with a mail
server that is down); ``start()`` listens again on the same port.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

FROM_ADDRESS = "nocontact@example.org"


def free_port() -> int:
    """A TCP port that nothing listens on right now (small race accepted in tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def plain_text(message: EmailMessage) -> str:
    """The text/plain body of a message (Apprise sends multipart/alternative)."""
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        raise ValueError("message has no text/plain part")
    text: str = part.get_content()
    return text


def html_text(message: EmailMessage) -> str | None:
    """The text/html body of a message, if it has one."""
    part = message.get_body(preferencelist=("html",))
    if part is None:
        return None
    text: str = part.get_content()
    return text


class _CollectingHandler:
    """aiosmtpd handler: parse each DATA payload and keep it."""

    def __init__(self, sink: FakeSmtpServer) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._sink._add(message, list(envelope.rcpt_tos), envelope.mail_from)
        return "250 Message accepted for delivery"


class FakeSmtpServer:
    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        self._envelopes: list[tuple[str, list[str]]] = []
        self._controller: Controller | None = None

    # -- received mail -------------------------------------------------------
    def _add(self, message: EmailMessage, rcpt_tos: list[str], mail_from: str) -> None:
        with self._lock:
            self._messages.append(message)
            self._envelopes.append((mail_from, rcpt_tos))

    @property
    def messages(self) -> list[EmailMessage]:
        """Messages received so far (a copy), oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        """(MAIL FROM, RCPT TO list) of each message received, oldest first."""
        with self._lock:
            return list(self._envelopes)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._envelopes.clear()

    # -- up / down -----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is not None:
            return
        controller = Controller(_CollectingHandler(self), hostname=self.host, port=self.port)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is None:
            return
        self._controller.stop()
        self._controller = None

    # -- Apprise URL ---------------------------------------------------------
    def mailto_url(self, to: str = "alex@example.org", *, from_addr: str = FROM_ADDRESS) -> str:
        """An Apprise ``mailto://`` URL delivering to this server: plain SMTP
        (``mode=insecure``: no TLS, no STARTTLS), no login, an explicit sender."""
        return (
            f"mailto://{self.host}:{self.port}"
            f"?smtp={self.host}&mode=insecure&from={from_addr}&to={to}"
        )


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtpServer]:
    server = FakeSmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
