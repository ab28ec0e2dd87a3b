"""A local OAuth2 token introspection endpoint (RFC 7662) for Dovecot's oauth2 passdb:
the one token in ``TOKEN`` is active for the test user, every other token is not. It is
how the tests give XOAUTH2 logins a real server to succeed or fail against."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TOKEN = "oauth-s3cr3t-access-token"


class _Handler(BaseHTTPRequestHandler):
    server: IntrospectionServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode("ascii", "replace"))
        token = form.get("token", [""])[0]
        answer = {"active": token == TOKEN, "username": self.server.username}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the test output stays readable


class IntrospectionServer(ThreadingHTTPServer):
    def __init__(self, username: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.username = username
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/introspect"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
