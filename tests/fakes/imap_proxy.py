"""A logging TCP proxy between nocontact and Dovecot on 127.0.0.1.

It reads every command nocontact sends and records those that could change the
mailbox: STORE, COPY, MOVE, EXPUNGE, APPEND, SELECT (EXAMINE is the read-only open),
CREATE/DELETE/RENAME/(UN)SUBSCRIBE, and any FETCH of ``BODY[`` or ``RFC822`` without
PEEK (those set ``\\Seen``). The test fixture fails the test when any was sent. The test
harness appends its messages straight to Dovecot, never through this proxy.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading

from tests.fakes.dovecot import free_port

FORBIDDEN = frozenset(
    {
        "STORE", "COPY", "MOVE", "EXPUNGE", "APPEND", "SELECT", "CREATE", "DELETE",
        "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "SETMETADATA", "UID STORE", "UID COPY",
        "UID MOVE", "UID EXPUNGE",
    }
)  # fmt: skip
# A FETCH item that marks the message read: BODY[...] without .PEEK, RFC822, RFC822.TEXT.
_SEEN_FETCH = re.compile(rb"(?<!\.)\bBODY\[|\bRFC822(?!\.SIZE|\.HEADER)\b", re.IGNORECASE)
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


class ImapProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.commands: list[str] = []
        self.violations: list[str] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        self.drop_connections()

    def drop_connections(self) -> None:
        """Cut every open connection (a server restart, as the client sees it)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def verbs(self) -> list[str]:
        with self._lock:
            return [command.split(" ", 1)[0] for command in self.commands]

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            threading.Thread(
                target=self._pump_commands, args=(client, upstream), daemon=True
            ).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _pump_commands(self, client: socket.socket, upstream: socket.socket) -> None:
        buffer = b""
        skip = 0
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
                buffer += data
                while True:
                    if skip:
                        taken = min(skip, len(buffer))
                        buffer, skip = buffer[taken:], skip - taken
                        if skip:
                            break
                    line, sep, rest = buffer.partition(b"\r\n")
                    if not sep:
                        break
                    buffer = rest
                    self._record(line)
                    literal = _LITERAL.search(line)
                    skip = int(literal.group(1)) if literal else 0
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _record(self, line: bytes) -> None:
        parts = line.split(b" ")
        if len(parts) < 2:
            return  # DONE (ends IDLE), or a continuation
        verb = parts[1].decode("ascii", "replace").upper()
        if verb == "UID" and len(parts) > 2:
            verb = "UID " + parts[2].decode("ascii", "replace").upper()
        shown = verb if verb in ("LOGIN", "AUTHENTICATE") else line.decode("ascii", "replace")
        shown = shown if verb not in ("LOGIN", "AUTHENTICATE") else verb
        with self._lock:
            self.commands.append(shown[len(parts[0]) + 1 :] if shown != verb else verb)
            if verb in FORBIDDEN or (verb.endswith("FETCH") and _SEEN_FETCH.search(line)):
                self.violations.append(line.decode("ascii", "replace")[:200])
