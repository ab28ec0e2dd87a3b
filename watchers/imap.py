"""E-mail: the protected person's mailbox over IMAP, read-only, with DKIM provenance.

Read-only, provably: folders are opened with EXAMINE and messages fetched with
``BODY.PEEK[]``, so no flag (``\\Seen`` included) ever changes; the watcher sends no
STORE, COPY, MOVE, EXPUNGE or APPEND. State per folder is its UIDVALIDITY and the
highest UID read; a changed UIDVALIDITY re-reads the newest ``backlog`` messages and
the store's (native id, content) dedup keeps evidence single.

Push (``idle: true``): once the service hands the watcher a wakeup callback
(:class:`watchers.base.Wakeable`), one background thread per folder holds an IMAP
IDLE connection and calls it when mail arrives; the service then polls at once. The
thread reconnects with backoff; the scheduler's ``every`` is the poll fallback.
"""

from __future__ import annotations

import imaplib
import ipaddress
import logging
import ssl
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.imapclient import JUNK
from pydantic import Field, SecretStr, field_validator, model_validator

from watchers.base import (
    AccountInfo,
    AuthError,
    Duration,
    Observation,
    PollResult,
    Targets,
    TransientError,
    WatcherConfigError,
    WatcherError,
    WatcherSettings,
)
from watchers.mail import idle, parse, provenance
from watchers.toolkit.redact import Redactor

log = logging.getLogger(__name__)
# IMAPClient logs every line it exchanges at DEBUG: whole messages (private mail, up to
# tens of MB per line) must never reach the service's logs, even with --debug.
logging.getLogger("imapclient").setLevel(logging.WARNING)

# One FETCH asks for at most this many messages or bytes (by RFC822.SIZE; a bigger
# message goes alone), and one poll reads at most POLL_BYTES per folder: the rest waits
# for the next poll, so a folder of 20 MB attachments cannot exhaust memory.
FETCH_MESSAGES = 50
FETCH_BYTES = 32 * 1024 * 1024
POLL_BYTES = 256 * 1024 * 1024
MAX_BACKLOG = 5000
_DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}


class ImapSettings(WatcherSettings):
    type: Literal["imap"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = Field(min_length=1)
    password: SecretStr | None = None
    oauth2_token: SecretStr | None = None
    # The mailbox's own address (it is added to every message's recipients: Bcc
    # mail reaches the protected person too). Default: the username if it is one.
    address: str | None = None
    # Default: INBOX and the folder with the SPECIAL-USE \Junk flag.
    folders: list[str] | None = None
    ca_file: Path | None = None
    idle: bool = False
    timeout: Duration = Field(default=timedelta(seconds=30))
    backlog: int = Field(default=200, ge=1, le=MAX_BACKLOG)
    # DKIM key lookups: "127.0.0.1:5353", or the system's resolver when unset.
    dns_resolver: str | None = None
    dns_timeout: Duration = Field(default=timedelta(seconds=5))

    def secret_fields(self) -> frozenset[str]:
        return frozenset({"password", "oauth2_token"})

    @field_validator("password", "oauth2_token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # An unset ${IMAP_PASSWORD} arrives as "": that is "not given".
        return None if isinstance(value, str) and not value else value

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file {value}; give the PEM file of your mail server's CA")
        return value

    @field_validator("dns_resolver")
    @classmethod
    def _valid_resolver(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
        try:
            ipaddress.ip_address(host.strip("[]"))
            if port and not 0 < int(port) < 65536:
                raise ValueError
        except ValueError:
            raise ValueError(
                'expected an IP address and optional port, like "127.0.0.1:5353"'
            ) from None
        return value

    @model_validator(mode="after")
    def _credentials_and_transport(self) -> ImapSettings:
        if (self.password is None) == (self.oauth2_token is None):
            raise ValueError("give exactly one of password (an app password) or oauth2_token")
        if self.security == "none" and not _is_loopback(self.host):
            raise ValueError(
                "security: none sends the password in clear; it is allowed only for a "
                "server on localhost (use tls or starttls)"
            )
        return self

    @property
    def server_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.security]

    @property
    def mailbox_address(self) -> str | None:
        if self.address:
            return self.address
        return self.username if "@" in self.username else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ImapWatcher:
    type_name: ClassVar[str] = "imap"
    platform: ClassVar[str] = "email"
    settings_model: ClassVar[type[WatcherSettings]] = ImapSettings

    def __init__(self, settings: ImapSettings, targets: Targets) -> None:
        self.settings = settings
        self.targets = targets
        secrets = [s.get_secret_value() for s in (settings.password, settings.oauth2_token) if s]
        self._scrub = Redactor(secrets)
        self._idle: idle.IdleGroup | None = None

    @property
    def name(self) -> str:
        return self.settings.display_name

    # -- the Watcher protocol -------------------------------------------------------

    def poll(self, state: Mapping[str, Any]) -> PollResult:
        saved = state.get("folders")
        old: Mapping[str, Any] = saved if isinstance(saved, Mapping) else {}
        observations: list[Observation] = []
        new_state: dict[str, Any] = {}
        notes: list[str] = []
        with self._session() as client:
            for folder in self._folders(client, notes):
                try:
                    found, cursor, left = self._read_folder(client, folder, old.get(folder))
                except _FolderUnavailable as exc:
                    notes.append(str(exc))
                    if folder in old:
                        new_state[folder] = old[folder]
                    continue
                observations.extend(found)
                new_state[folder] = cursor
                if left:
                    notes.append(f"{folder}: {left} message(s) left for the next poll")
        return PollResult(observations, {"folders": new_state}, notes)

    def lookup_account(self, handle: str) -> AccountInfo | None:
        return None  # e-mail has no account registry to ask

    def close(self) -> None:
        if self._idle is not None:
            self._idle.stop()
            self._idle = None

    def set_wakeup(self, wakeup: Callable[[], None]) -> None:
        """Start IDLE (when configured): ``wakeup`` is called when new mail arrives."""
        if not self.settings.idle or self._idle is not None:
            return
        with self._session() as client:
            folders = self._folders(client, [])
        self._idle = idle.IdleGroup(self._connect, folders, wakeup, label=self.name)
        self._idle.start()

    # -- connection -----------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[IMAPClient]:
        with self._translated():
            client = self._connect()
        try:
            with self._translated():
                yield client
        finally:
            try:
                client.logout()
            except (IMAPClientError, OSError, imaplib.IMAP4.error):
                client.shutdown()

    def _connect(self) -> IMAPClient:
        """A logged-in client; raises the library's errors (callers translate)."""
        settings = self.settings
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )
        client = IMAPClient(
            settings.host,
            port=settings.server_port,
            ssl=settings.security == "tls",
            ssl_context=context if settings.security == "tls" else None,
            timeout=settings.timeout.total_seconds(),
        )
        client.normalise_times = False
        try:
            if settings.security == "starttls":
                client.starttls(context)
            if settings.oauth2_token is not None:
                client.oauth2_login(settings.username, settings.oauth2_token.get_secret_value())
            elif settings.password is not None:
                client.login(settings.username, settings.password.get_secret_value())
        except BaseException:
            client.shutdown()
            raise
        return client

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Library and socket errors as watcher errors: one line, no secrets."""
        where = f"{self.settings.host}:{self.settings.server_port}"
        try:
            yield
        except LoginError as exc:
            detail = self._scrub.one_line(str(exc), 160)
            raise AuthError(
                f"IMAP login to {where} as {self.settings.username} was rejected ({detail}); "
                "check the app password or OAuth2 token"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise WatcherConfigError(
                f"the certificate of {where} is not trusted ({exc.verify_message}); "
                "for a private CA set ca_file"
            ) from exc
        except TimeoutError as exc:
            raise TransientError(f"IMAP server {where} timed out") from exc
        except (IMAPClientError, imaplib.IMAP4.error, OSError) as exc:
            detail = self._scrub.one_line(str(exc) or type(exc).__name__, 160)
            raise TransientError(f"IMAP server {where}: {detail}") from exc

    # -- folders --------------------------------------------------------------------

    def _folders(self, client: IMAPClient, notes: list[str]) -> list[str]:
        if self.settings.folders is not None:
            return list(dict.fromkeys(self.settings.folders))
        folders = ["INBOX"]
        junk = client.find_special_folder(JUNK)
        if junk is None:
            notes.append("no Junk folder found (no SPECIAL-USE \\Junk); reading INBOX only")
        elif junk not in folders:
            folders.append(junk)
        return folders

    def _read_folder(
        self, client: IMAPClient, folder: str, saved: object
    ) -> tuple[list[Observation], dict[str, int], int]:
        """New messages of one folder, its new cursor, and how many are left unread."""
        try:
            # readonly=True is EXAMINE: the server changes no flag for this session.
            info = client.select_folder(folder, readonly=True)
        except IMAPClientError as exc:
            raise _FolderUnavailable(f"folder {folder!r} cannot be opened: {exc}") from exc
        validity = int(info.get(b"UIDVALIDITY", 0))
        cursor = saved if isinstance(saved, Mapping) else {}
        last = int(cursor.get("last_uid", 0)) if cursor.get("uidvalidity") == validity else 0
        if last:
            uids = [uid for uid in client.search(["UID", f"{last + 1}:*"]) if uid > last]
        else:
            if cursor:
                log.info("%s: %s has a new UIDVALIDITY; re-reading it", self.name, folder)
            uids = sorted(client.search("ALL"))[-self.settings.backlog :]
        uids = sorted(uids)
        observations, read_up_to = self._fetch(client, folder, validity, uids)
        newest = max(last, read_up_to)
        left = sum(1 for uid in uids if uid > newest)
        return observations, {"uidvalidity": validity, "last_uid": newest}, left

    def _fetch(
        self, client: IMAPClient, folder: str, validity: int, uids: list[int]
    ) -> tuple[list[Observation], int]:
        """Observations of ``uids`` in batches, up to POLL_BYTES; the last UID read."""
        sizes = client.fetch(uids, ["RFC822.SIZE"]) if uids else {}
        observations: list[Observation] = []
        read_up_to = total = 0
        for batch in _batches(uids, {uid: _size(sizes.get(uid)) for uid in uids}):
            batch_bytes = sum(_size(sizes.get(uid)) for uid in batch)
            if observations and total + batch_bytes > POLL_BYTES:
                break
            fetched = client.fetch(batch, ["BODY.PEEK[]", "INTERNALDATE", "RFC822.SIZE"])
            for uid in batch:
                data = fetched.get(uid)
                if data is not None and b"BODY[]" in data:
                    observations.append(self._observe(folder, validity, uid, data))
            total += batch_bytes
            read_up_to = batch[-1]
        return observations, read_up_to

    # -- observations ---------------------------------------------------------------

    def _observe(
        self, folder: str, validity: int, uid: int, data: Mapping[bytes, Any]
    ) -> Observation:
        raw = bytes(data[b"BODY[]"])
        mail = parse.parse_or_note(raw)
        lookup = provenance.KeyLookup(
            self.settings.dns_resolver, self.settings.dns_timeout.total_seconds()
        )
        checked = provenance.verify_or_note(raw, lookup)
        internal = data.get(b"INTERNALDATE")
        owner = self.settings.mailbox_address
        recipients = tuple(dict.fromkeys([*([owner] if owner else []), *mail.recipients]))
        record = {
            "imap": {
                "host": self.settings.host,
                "folder": folder,
                "uidvalidity": validity,
                "uid": uid,
                "internaldate": _iso(internal),
                "size": data.get(b"RFC822.SIZE", len(raw)),
            },
            **checked,
            "authentication_results": list(mail.authentication_results),
            "attachments": [attachment.as_dict() for attachment in mail.attachments],
            "defects": list(mail.defects),
        }
        return Observation(
            platform="email",
            native_id=parse.native_id(raw, mail.message_id),
            kind="email",
            raw=raw,
            watcher=self.name,
            author_handle=mail.from_address,
            author_display_name=mail.from_name,
            addressed_to=recipients,
            text=mail.text,
            posted_at=mail.date,
            raw_content_type="message/rfc822",
            capture_method=f"IMAP BODY.PEEK[] via IMAPClient from {self.settings.host}, "
            f"folder {folder}",
            provenance=record,
        )


def _size(data: object) -> int:
    size = data.get(b"RFC822.SIZE") if isinstance(data, Mapping) else None
    return size if isinstance(size, int) else 0


def _batches(uids: list[int], sizes: Mapping[int, int]) -> Iterator[list[int]]:
    batch: list[int] = []
    batch_bytes = 0
    for uid in uids:
        if batch and (len(batch) >= FETCH_MESSAGES or batch_bytes + sizes[uid] > FETCH_BYTES):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(uid)
        batch_bytes += sizes[uid]
    if batch:
        yield batch


def _iso(value: object) -> str | None:
    # With normalise_times off, INTERNALDATE keeps the server's own UTC offset.
    return value.isoformat() if isinstance(value, datetime) else None


class _FolderUnavailable(WatcherError):
    """One folder cannot be read; the others still are."""
