"""Logging for a service that runs unattended: one line per event, no secrets, ever.

``configure_logging`` installs one handler on the root logger, so records of third-party
libraries (praw, apprise, httpx, urllib3) pass through the same redaction as ours.
Nothing is configured at import time; calling it again replaces only its own handler.

Text lines are journald-friendly: under systemd (``JOURNAL_STREAM`` names our stream)
they carry a ``<N>`` syslog priority prefix instead of a timestamp, since journald stamps
every line itself and turns the prefix into the entry's priority (``journalctl -p err``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from service.settings import Settings
from watchers.toolkit.redact import (
    MIN_SECRET_LENGTH,
    Redactor,
    apprise_url_secrets,
    url_secrets,
)
from watchers.toolkit.text import escape_line_breaks

LogFormat = Literal["text", "json"]
NOISY_LOGGERS = ("httpx", "httpcore", "urllib3", "hpack")
# Say nothing a user needs at INFO (every job run, every migration check); heard with --debug.
CHATTY_LOGGERS = ("apscheduler", "alembic")
# Libraries that log request URLs, headers or Apprise URLs: their records are redacted at
# their own loggers (before any handler sees them), with the secrets watchers register.
# Apprise's debug output includes full request URLs (for Telegram, the bot token): it
# is kept at WARNING or above whatever the root level is.
# (A logger's filters apply to records made at that logger only: the names are exact.)
LIBRARY_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "apprise",
    "urllib3.connectionpool",
)
QUIET_LOGGERS = (*NOISY_LOGGERS, "apprise")


def SecretRedactor(secrets: Iterable[str] = ()) -> Redactor:
    """The redactor of log lines: URLs keep their shape, only their credentials go."""
    return Redactor(secrets, mask_urls=False, apprise_urls=True, registered=True)


_STANDARD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__
) | {"message", "asctime", "taskName"}


class RedactingFilter(logging.Filter):
    """Redacts a record in place: message with its args, exception and stack text,
    and string ``extra`` fields. Never drops a record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.redact(_message_of(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        for key, value in extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, key, self.redactor.redact(value))
        return True


def _message_of(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError, KeyError):
        # A bad format string must not lose the event: keep its parts, unformatted.
        return f"{record.msg!s} {record.args!r}"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Fields given through ``extra=`` (everything not standard on a LogRecord)."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


def _iso_utc(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# syslog priorities for journald's "<N>" line prefix.
_SYSLOG_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4))


def _syslog_priority(levelno: int) -> int:
    for threshold, priority in _SYSLOG_PRIORITY:
        if levelno >= threshold:
            return priority
    return 6 if levelno >= logging.INFO else 7


class TextFormatter(logging.Formatter):
    """``2026-05-01T10:00:00.123Z INFO service.x: message key=value`` on one line;
    under journald ``<6>INFO service.x: message`` (journald adds the time)."""

    def __init__(self, *, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        extras = extra_fields(record)
        if extras:
            text += " " + " ".join(f"{k}={_scalar(v)}" for k, v in sorted(extras.items()))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += " | " + record.exc_text
        if record.stack_info:
            text += " | " + record.stack_info
        line = escape_line_breaks(text)
        if self.journald:
            return f"<{_syslog_priority(record.levelno)}>{line}"
        return f"{_iso_utc(record.created)} {line}"


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            event.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            event["exc"] = record.exc_text
        if record.stack_info:
            event["stack"] = record.stack_info
        return json.dumps(event, default=str, ensure_ascii=False)


class _ServiceHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure_logging`` owns (a second call replaces it). Besides the
    filter, it redacts the finished line: non-string ``extra`` values (dicts, lists)
    are only rendered by the formatter."""

    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        super().__init__(stream)
        self.redactor = redactor
        self.addFilter(RedactingFilter(redactor))

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.redact(super().format(record))


def under_journald(stream: TextIO) -> bool:
    """True when ``stream`` is the journald stream systemd connected us to.

    systemd sets ``JOURNAL_STREAM=<dev>:<inode>`` of that stream; comparing it (as
    sd_journal_stream_fd's documentation advises) avoids a false match when a
    program started from a unit redirects its output to a file or a pipe."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def configure_logging(
    level: str = "INFO",
    fmt: LogFormat = "text",
    secrets: Iterable[str] = (),
    *,
    stream: TextIO | None = None,
) -> None:
    """Send every log record, ours and third parties', as one redacted line to
    ``stream`` (default stderr). Safe to call again, e.g. once the config (and so
    the secrets to redact) is known."""
    target = stream if stream is not None else sys.stderr
    secrets = list(secrets)
    handler = _ServiceHandler(target, SecretRedactor(secrets))
    journald = under_journald(target)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(journald=journald))

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ServiceHandler)]:
        root.removeHandler(old)
        old.close()  # flushes; never closes the stream, which is not ours
    # First in line: the filter redacts the record in place, so any handler added to
    # the root logger later (a library's, an error reporter's) receives it redacted.
    root.handlers.insert(0, handler)
    root.setLevel(level.upper())
    guard_library_loggers(secrets)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    debug = root.getEffectiveLevel() <= logging.DEBUG
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.WARNING)


def guard_library_loggers(secrets: Iterable[str] = ()) -> None:
    """Redact what third-party libraries log at their own loggers, before any handler
    (ours or another's) sees it. Calling it again replaces the filter."""
    guard = RedactingFilter(Redactor(secrets, apprise_urls=True, registered=True))
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
            logger.removeFilter(old)
        logger.addFilter(guard)


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value the config holds: watcher secret fields and the credentials
    in watcher URLs, alert URLs (whole, and their secret parts per Apprise), and the
    database password."""
    found: list[str] = []
    for watcher in settings.watchers:
        for name in type(watcher).model_fields:
            value = getattr(watcher, name)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
            elif name in watcher.secret_fields() and isinstance(value, str):
                found.append(value)
            elif isinstance(value, str) and "://" in value:
                found.extend(url_secrets(value))
    for route in settings.alerts.values():
        for url in route.urls:
            found.extend(apprise_url_secrets(url))
    if settings.heartbeat_url:
        # A push URL's last path segment is its token (healthchecks.io, Uptime Kuma).
        token = urlsplit(settings.heartbeat_url).path.rstrip("/").rsplit("/", 1)[-1]
        found.extend([settings.heartbeat_url, token])
    db_password = urlsplit(settings.database).password
    if db_password:
        found.append(unquote(db_password))
    return [value for value in found if len(value) >= MIN_SECRET_LENGTH]
