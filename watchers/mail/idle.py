"""IMAP IDLE in background threads: one connection per folder, a wakeup call when mail
arrives, reconnection with backoff. The threads never read messages themselves; the
service's poll does, so there is one code path for evidence."""

from __future__ import annotations

import imaplib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

log = logging.getLogger(__name__)

# RFC 2177: servers may drop an IDLE after 30 minutes; renew well before.
RENEW_AFTER = 9 * 60.0
CHECK_EVERY = 1.0  # how often a thread looks at its stop flag while idling
BACKOFF_START = 1.0
BACKOFF_MAX = 120.0
_NEW_MAIL = (b"EXISTS", b"RECENT")


class IdleGroup:
    def __init__(
        self,
        connect: Callable[[], IMAPClient],
        folders: Sequence[str],
        wakeup: Callable[[], None],
        *,
        label: str,
    ) -> None:
        self._connect = connect
        self._wakeup = wakeup
        self._label = label
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._run, args=(folder,), name=f"idle {label} {folder}", daemon=True
            )
            for folder in folders
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CHECK_EVERY * 5)

    def _run(self, folder: str) -> None:
        delay = BACKOFF_START
        while not self._stop.is_set():
            try:
                if not self._idle(folder):
                    return  # the server has no IDLE: polling alone it is
                delay = BACKOFF_START
            except LoginError:
                # The poll reports rejected credentials (and disables the watcher).
                log.info("%s: IDLE on %s stopped: login rejected", self._label, folder)
                return
            except (TimeoutError, IMAPClientError, imaplib.IMAP4.error, OSError) as exc:
                log.info(
                    "%s: IDLE on %s lost (%s); reconnecting in %.0fs",
                    self._label,
                    folder,
                    type(exc).__name__,
                    delay,
                )
                # New mail may have come while the connection was down.
                self._wakeup()
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX)

    def _idle(self, folder: str) -> bool:
        """One connection's life; False when the server cannot IDLE."""
        client = self._connect()
        try:
            if not client.has_capability("IDLE"):
                log.warning("%s: the server does not support IDLE; polling only", self._label)
                return False
            client.select_folder(folder, readonly=True)
            while not self._stop.is_set():
                client.idle()
                started = time.monotonic()
                while not self._stop.is_set() and time.monotonic() - started < RENEW_AFTER:
                    responses = client.idle_check(timeout=CHECK_EVERY)
                    if _has_new_mail(responses):
                        self._wakeup()
                    elif not responses and _peer_closed(client):
                        # IMAPClient's idle_check swallows EOF and returns nothing.
                        raise ConnectionResetError("the server closed the IDLE connection")
                client.idle_done()
            return True
        finally:
            try:
                client.logout()
            except (IMAPClientError, imaplib.IMAP4.error, OSError):
                client.shutdown()


def _peer_closed(client: IMAPClient) -> bool:
    """Whether the server has closed the connection, without reading from it: a peek
    at the TCP socket (under TLS too: the FIN is below the encryption)."""
    probe = socket.socket(fileno=os.dup(client.socket().fileno()))
    try:
        return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        probe.close()


def _has_new_mail(responses: list[Any]) -> bool:
    return any(
        isinstance(item, tuple) and len(item) >= 2 and item[1] in _NEW_MAIL for item in responses
    )
