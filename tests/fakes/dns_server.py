"""A tiny authoritative DNS server on 127.0.0.1 (dnslib) serving DKIM key TXT records.

Names in ``records`` answer with their TXT record; names in ``servfail`` answer
SERVFAIL (a broken resolver); anything else is NXDOMAIN (no key published). Every
query is recorded, so a test can tell a lookup happened through this server.
"""

from __future__ import annotations

import threading
from typing import Any

from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from tests.fakes.dovecot import free_port


def _chunks(text: str) -> list[bytes]:
    data = text.encode("ascii")
    return [data[i : i + 255] for i in range(0, len(data), 255)]  # TXT strings ≤ 255


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, server: KeyServer) -> None:
        self._server = server

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self._server.lock:
            self._server.queries.append(name)
            record = self._server.records.get(name)
            failing = name in self._server.servfail
        if failing:
            reply.header.rcode = RCODE.SERVFAIL
        elif record is None or request.q.qtype != QTYPE.TXT:
            reply.header.rcode = RCODE.NXDOMAIN
        else:
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(_chunks(record)), ttl=60))
        return reply


class KeyServer:
    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.servfail: set[str] = set()
        self.queries: list[str] = []
        self.lock = threading.Lock()
        self.port = free_port()
        quiet = DNSLogger(prefix=False, logf=lambda _line: None)
        self._server = DNSServer(_Resolver(self), port=self.port, address="127.0.0.1", logger=quiet)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> KeyServer:
        self._server.start_thread()
        return self

    def stop(self) -> None:
        self._server.stop()
