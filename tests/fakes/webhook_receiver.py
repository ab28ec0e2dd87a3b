"""A local HTTP receiver on 127.0.0.1 that keeps every POST it gets.

Apprise's ``json://`` plugin POSTs ``{"version", "title", "message", "type"}`` to the
URL's path; its ``ntfy://host:port/topic`` plugin (private-server mode, plain http)
POSTs ``{"topic", "title", "message", ...}`` as JSON to the server root.

Usage::

    from tests.fakes.webhook_receiver import webhook_receiver  # noqa: F401

    def test_x(webhook_receiver: WebhookReceiver) -> None:
        url = webhook_receiver.json_url()
        webhook_receiver.fail_status = 500   # answer 500 until set back to None
        webhook_receiver.stop()              # connections refused
        webhook_receiver.start()             # same port again
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fakes.smtp_server import free_port


@dataclasses.dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # Status the receiver answered with (2xx = accepted).
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status = self.server.receiver._record(self, body)
        if self.server.receiver.delay:
            # A slow phone service: the request is in, the answer comes later.
            time.sleep(self.server.receiver.delay)
        payload = b'{"ok": true}' if status < 300 else b'{"error": "failing on purpose"}'
        if status >= 300 and self.server.receiver.echo_auth:
            # A hostile target: what it was sent comes back in the phrase and the body.
            sent = self.headers.get("Authorization") or ""
            payload = json.dumps({"error": f"bad credentials {sent} in {self.path}"}).encode()
            self.send_response(status, f"Rejected {sent}")
        else:
            self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # Keep test output quiet; requests are inspected through the receiver.
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], receiver: WebhookReceiver) -> None:
        super().__init__(address, _Handler)
        self.receiver = receiver


class WebhookReceiver:
    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        # When set, every POST is answered with this status (and still recorded).
        self.fail_status: int | None = None
        # With fail_status: the Authorization header and path echoed back in the answer.
        self.echo_auth = False
        # Seconds between receiving a POST and answering it.
        self.delay = 0.0
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes) -> int:
        status = self.fail_status or 200
        request = ReceivedRequest(
            method=handler.command,
            path=handler.path,
            headers={key: value for key, value in handler.headers.items()},
            body=body,
            status=status,
        )
        with self._lock:
            self._requests.append(request)
        return status

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every POST received (accepted or failed on purpose), oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def accepted(self) -> list[ReceivedRequest]:
        """POSTs answered with a 2xx status: the notifications actually delivered."""
        return [request for request in self.requests if request.status < 300]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        if self._server is not None:
            return
        server = _Server((self.host, self.port), self)
        thread = threading.Thread(target=server.serve_forever, name="webhook-receiver")
        thread.daemon = True
        thread.start()
        self._server, self._thread = server, thread

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread = None, None

    def json_url(self, path: str = "/hook") -> str:
        return f"json://{self.host}:{self.port}{path}"

    def ntfy_url(self, topic: str = "nocontact-alerts") -> str:
        # mode=private: a self-hosted ntfy server, plain http (ntfys:// would be https).
        return f"ntfy://{self.host}:{self.port}/{topic}?mode=private"


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
