"""RSS and Atom feeds (``type: rss``): one feed URL, fetched with httpx, parsed by feedparser.

A feed is a hostile document from a server we do not control, so every fetch is bounded
(connect/read timeouts, a wall-clock deadline covering every socket operation of the
fetch, a byte limit that also caps gzip/deflate inflation, a redirect limit), XML
entity declarations are refused before feedparser sees the document, and feedparser is
only ever given a file object (given bytes, it would try them as a local file name).
The URL may carry a token, so it is shown masked everywhere (``mask_url``), including in
httpx's own log lines.

Evidence: each entry's ``raw`` is the exact byte range of its ``<item>``/``<entry>``
element in the document as received (after Content-Encoding is undone; the slice lacks
the namespace declarations of the root element), when the document is well-formed XML
in an ASCII-compatible encoding and its entries can be matched one-to-one to
feedparser's. Otherwise (a malformed feed feedparser still reads, UTF-16, …) every
entry's ``raw`` is the whole document. ``capture_method`` says which of the two it is.

HTTP status decisions: 304 → nothing new; 401/403 → ``AuthError``; 429, and 503 with
``Retry-After`` → ``RateLimitedError``; 5xx, 404, 408, timeouts, refused connections →
``TransientError`` (a 404 may be a blip during a redeploy, so the watcher keeps trying and
the service's failure alerts make a feed that stays gone loud); 410 Gone and the other
4xx → ``WatcherConfigError`` (the server says the URL cannot work).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import ssl
import threading
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit
from xml.parsers import expat

import feedparser
import httpcore
import httpx
from pydantic import Field, field_validator

from watchers.base import (
    AccountInfo,
    AuthError,
    Duration,
    Observation,
    PartyRole,
    PollResult,
    RateLimitedError,
    RecheckItem,
    RecheckResult,
    Targets,
    TransientError,
    WatcherConfigError,
    WatcherSettings,
)
from watchers.toolkit.redact import Redactor, mask_url, redact
from watchers.toolkit.text import html_to_text, tidy

_MIB = 1024 * 1024


def _default_user_agent() -> str:
    try:
        release = version("nocontact")
    except PackageNotFoundError:
        release = "0"
    return f"nocontact/{release} (+feed watcher)"


class RssSettings(WatcherSettings):
    type: Literal["rss"] = "rss"
    url: str
    # Set when the feed belongs to a party (their blog): every entry is theirs.
    posted_by: PartyRole | None = None
    # Connect and per-read timeout.
    timeout: Duration = Field(default=timedelta(seconds=10))
    # Wall-clock bound on one whole fetch (redirects, headers, body), so that a server
    # dripping a byte at a time cannot hold the watcher forever.
    deadline: Duration = Field(default=timedelta(seconds=60))
    max_bytes: int = Field(default=5 * _MIB, gt=0)
    user_agent: str = Field(default_factory=_default_user_agent, min_length=1)
    max_redirects: int = Field(default=5, ge=0, le=30)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # The message never repeats the value: it may carry a token.
        value = value.strip()
        try:
            parts = urlsplit(value)
            host = parts.hostname
            _ = parts.port  # raises ValueError on a malformed port
        except ValueError:
            raise ValueError("not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        if not host:
            raise ValueError("the URL has no host")
        return value

    @field_validator("timeout", "deadline")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be more than 0s")
        return value


class _MaskUrlsInRecords(logging.Filter):
    """httpx logs every request URL and status line at INFO, httpcore the response
    headers at DEBUG; a private feed's URL carries its token, and a hostile server can
    echo it back, so those records are masked at the source."""

    _QUERY = re.compile(r"\?[^\s'\"<>)]+")

    def __init__(self) -> None:
        super().__init__()
        self._secrets: frozenset[str] = frozenset()

    def add_secrets(self, secrets: frozenset[str]) -> None:
        self._secrets = self._secrets | secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self._QUERY.sub("?***", redact(message, self._secrets))
        if masked != message:
            record.msg, record.args = masked, None
        return True


_HTTP_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.proxy")


def _mask_http_client_logs(secrets: frozenset[str]) -> None:
    """Install one masking filter per process (at the first watcher, never at import)
    and teach it this watcher's URL secrets."""
    loggers = [logging.getLogger(name) for name in _HTTP_LOGGERS]
    found = [f for f in loggers[0].filters if isinstance(f, _MaskUrlsInRecords)]
    shared = found[0] if found else _MaskUrlsInRecords()
    shared.add_secrets(secrets)
    for logger in loggers:
        if shared not in logger.filters:
            logger.addFilter(shared)


# --- a wall-clock deadline over every socket operation -----------------------------------


class _Deadline:
    """The end of the current fetch, per thread; socket timeouts are clamped to it."""

    def __init__(self) -> None:
        self._local = threading.local()

    def start(self, seconds: float) -> None:
        self._local.end = time.monotonic() + seconds

    def clear(self) -> None:
        self._local.end = None

    def passed(self) -> bool:
        end: float | None = getattr(self._local, "end", None)
        return end is not None and time.monotonic() >= end

    def clamp(self, timeout: float | None, error: type[Exception]) -> float | None:
        end: float | None = getattr(self._local, "end", None)
        if end is None:
            return timeout
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise error("fetch deadline exceeded")
        return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        clamped = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, clamped), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: _Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        clamped = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, clamped, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        clamped = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_unix_socket(path, clamped, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        # httpx offers no public hook for the network backend; its pool is the public
        # httpcore.ConnectionPool, which takes one. Env proxies are not used.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=_DeadlineBackend(deadline),
        )


# --- XML pre-check and per-entry byte ranges ---------------------------------------------


class _EntityDeclared(Exception):
    """The document declares XML entities; we refuse it instead of expanding them."""


_ENTRY_NAMES = frozenset({"item", "entry"})
_ENTITY_DECL = "<!ENTITY"
_WIDE_ENCODINGS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")


def _declares_entity_bytes(data: bytes) -> bool:
    """Conservative check for documents expat cannot read: any ``<!ENTITY`` at all."""
    if _ENTITY_DECL.encode("ascii") in data:
        return True
    return any(_ENTITY_DECL.encode(enc) in data for enc in _WIDE_ENCODINGS)


def _is_ascii_compatible(data: bytes) -> bool:
    head = data[:4]
    return not (head.startswith((b"\xfe\xff", b"\xff\xfe")) or b"\x00" in head)


def _refuse_entities(*_args: object) -> int:
    raise _EntityDeclared


def _entry_ranges(data: bytes) -> list[tuple[int, int]] | None:
    """Byte ranges of the top-level ``item``/``entry`` elements, or None when the document
    is not well-formed XML. Raises ``_EntityDeclared`` if it declares entities."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = _refuse_entities
    parser.UnparsedEntityDeclHandler = _refuse_entities
    parser.ExternalEntityRefHandler = _refuse_entities
    ranges: list[tuple[int, int]] = []
    depth = 0
    # (start offset, depth) of the entry element we are inside; entries do not nest.
    inside: tuple[int, int] | None = None

    def start(name: str, _attrs: object) -> None:
        nonlocal depth, inside
        depth += 1
        if inside is None and name.rsplit(":", 1)[-1] in _ENTRY_NAMES:
            inside = (parser.CurrentByteIndex, depth)

    def end(_name: str) -> None:
        nonlocal depth, inside
        if inside is not None and inside[1] == depth:
            # The index points at the end tag's '<' (or at '<item/>' when empty).
            ranges.append((inside[0], data.index(b">", parser.CurrentByteIndex) + 1))
            inside = None
        depth -= 1

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except (expat.ExpatError, LookupError, ValueError):
        # Not well-formed, or an encoding expat cannot decode (LookupError): feedparser
        # may still read it, but only after the conservative entity check.
        if _declares_entity_bytes(data):
            raise _EntityDeclared from None
        return None
    return ranges


# --- the body, decompressed within the byte limit ----------------------------------------


class _TooBig(Exception):
    """The body (after decompression) passed ``max_bytes``."""


class _UndecodableBody(Exception):
    """The body's Content-Encoding is unknown or its data is corrupt."""


class _BoundedBody:
    """Collects a response body, inflating gzip/deflate ourselves with a cap on the
    output: httpx inflates whole chunks, so one 64 KiB chunk of a compression bomb
    would become tens of megabytes before any size check could run."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",")]
        codings = [c for c in codings if c not in ("", "identity")]
        self._limit = limit
        self._data = bytearray()
        self._raw_deflate_fallback = False
        self._inflater: Any = None  # zlib's decompress object has no public type name
        if not codings:
            return
        if codings in (["gzip"], ["x-gzip"]):
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif codings == ["deflate"]:
            # "deflate" is zlib-wrapped per RFC 9110, raw deflate from some servers.
            self._inflater = zlib.decompressobj()
            self._raw_deflate_fallback = True
        else:
            raise _UndecodableBody(f"an unsupported Content-Encoding ({', '.join(codings)[:40]})")

    def feed(self, chunk: bytes) -> None:
        if self._inflater is None:
            self._append(chunk)
            return
        pending = chunk
        while pending:
            room = self._limit + 1 - len(self._data)
            try:
                out = self._inflater.decompress(pending, room)
            except zlib.error as exc:
                if not (self._raw_deflate_fallback and not self._data):
                    raise _UndecodableBody("a corrupt compressed body") from exc
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                self._raw_deflate_fallback = False
                continue
            self._raw_deflate_fallback = False
            self._append(out)
            pending = self._inflater.unconsumed_tail

    def finish(self) -> bytes:
        if self._inflater is not None:
            try:
                self._append(self._inflater.flush())
            except zlib.error as exc:
                raise _UndecodableBody("a truncated compressed body") from exc
        return bytes(self._data)

    def _append(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > self._limit:
            raise _TooBig


# --- the watcher ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fetched:
    body: bytes
    status: int
    content_type: str
    etag: str | None
    last_modified: str | None
    final_url: str | None  # set when redirects led elsewhere


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _content_type(value: str | None) -> str:
    """Media type and charset of the body, as the server declared them."""
    if not value:
        return "application/xml"
    fields = [f.strip() for f in value.split(";")]
    media = fields[0].lower()[:60] or "application/xml"
    for param in fields[1:]:
        key, _, charset = param.partition("=")
        if key.strip().lower() == "charset" and charset:
            charset = charset.strip().strip('"')[:30]
            return f"{media}; charset={charset}"
    return media


def _looks_like_html(data: bytes, content_type: str) -> bool:
    head = data[:512].lstrip().lower()
    return content_type.startswith("text/html") or head.startswith((b"<!doctype html", b"<html"))


def _struct_to_utc(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        year, month, day, hour, minute, second = (int(v) for v in value[:6])
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError):
        return None


_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S")


class RssWatcher:
    type_name: ClassVar[str] = "rss"
    platform: ClassVar[str] = "rss"
    settings_model: ClassVar[type[WatcherSettings]] = RssSettings

    def __init__(self, settings: RssSettings, targets: Targets) -> None:
        self._settings = settings
        # Feeds carry no addressing, so the targets are not needed to poll.
        self._targets = targets
        self._url = settings.url
        self._shown_url = mask_url(settings.url)
        self._host = (urlsplit(settings.url).hostname or "").lower()
        self._scrub = Redactor.for_url(settings.url)
        self._deadline = _Deadline()
        _mask_http_client_logs(self._scrub.secrets)
        seconds = settings.timeout.total_seconds()
        self._client = httpx.Client(
            transport=_DeadlineTransport(self._deadline),
            timeout=httpx.Timeout(seconds),
            follow_redirects=True,
            max_redirects=settings.max_redirects,
            # Only what _BoundedBody can inflate within the byte limit.
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
        )

    @property
    def name(self) -> str:
        return self._settings.display_name

    def poll(self, state: Mapping[str, Any]) -> PollResult:
        fetched = self._fetch(state)
        if fetched is None:
            return PollResult([], dict(state))
        observations = self._observations(fetched)
        new_state: dict[str, Any] = {}
        if fetched.etag:
            new_state["etag"] = fetched.etag
        if fetched.last_modified:
            new_state["last_modified"] = fetched.last_modified
        return PollResult(observations, new_state)

    def lookup_account(self, handle: str) -> AccountInfo | None:
        return None  # a feed has no accounts to look up

    def recheck(self, items: Sequence[RecheckItem]) -> list[RecheckResult]:
        """An entry whose own page answers 404 or 410 was removed. The feed is not
        asked: a feed that rolls an old entry off has not deleted it."""
        results: list[RecheckResult] = []
        for item in items:
            if not item.url or not item.url.startswith(("http://", "https://")):
                continue
            self._deadline.start(self._settings.deadline.total_seconds())
            try:
                with self._client.stream("GET", item.url) as response:
                    status = response.status_code
            except httpx.HTTPError:
                continue  # unreachable now: asked again at the next re-check
            finally:
                self._deadline.clear()
            if status in (404, 410):
                detail = f"its page answers HTTP {status}"
                results.append(RecheckResult(item.native_id, "removed", detail))
            elif 200 <= status < 300:
                results.append(RecheckResult(item.native_id, "unchanged"))
        return results

    def close(self) -> None:
        self._client.close()

    # -- fetching

    def _fetch(self, state: Mapping[str, Any]) -> _Fetched | None:
        """The feed body, or None when the server says it has not changed (304)."""
        headers: dict[str, str] = {}
        etag, modified = state.get("etag"), state.get("last_modified")
        if isinstance(etag, str) and etag:
            headers["If-None-Match"] = etag
        if isinstance(modified, str) and modified:
            headers["If-Modified-Since"] = modified
        deadline = self._settings.deadline.total_seconds()
        self._deadline.start(deadline)
        try:
            with self._client.stream("GET", self._url, headers=headers) as response:
                return self._read(response)
        except httpx.TimeoutException as exc:
            if self._deadline.passed():
                raise TransientError(
                    f"feed at {self._shown_url} took longer than the {deadline:g}s deadline"
                ) from exc
            raise TransientError(
                f"feed at {self._shown_url} timed out ({self._timeout_kind(exc)} timeout "
                f"{self._settings.timeout.total_seconds():g}s)"
            ) from exc
        except httpx.TooManyRedirects as exc:
            raise TransientError(
                f"feed at {self._shown_url} redirected more than "
                f"{self._settings.max_redirects} times (a redirect loop?)"
            ) from exc
        except httpx.ConnectError as exc:
            raise TransientError(
                f"feed at {self._shown_url} is unreachable: {self._scrub(str(exc))}"
            ) from exc
        except httpx.RequestError as exc:
            reason = self._scrub(str(exc)) or type(exc).__name__
            raise TransientError(f"feed at {self._shown_url} failed: {reason}") from exc
        finally:
            self._deadline.clear()

    @staticmethod
    def _timeout_kind(exc: httpx.TimeoutException) -> str:
        if isinstance(exc, httpx.ConnectTimeout):
            return "connect"
        if isinstance(exc, httpx.WriteTimeout):
            return "write"
        return "read"

    def _read(self, response: httpx.Response) -> _Fetched | None:
        status = response.status_code
        if status == 304:
            return None
        self._check_status(response)
        limit = self._settings.max_bytes
        announced = response.headers.get("Content-Length", "")
        if announced.isdigit() and int(announced) > limit:
            raise self._too_big(f"{int(announced)} bytes announced")
        try:
            body = _BoundedBody(response.headers.get("Content-Encoding", ""), limit)
            for chunk in response.iter_raw():
                body.feed(chunk)
            data = body.finish()
        except _TooBig:
            raise self._too_big("body still arriving") from None
        except _UndecodableBody as exc:
            raise TransientError(f"feed at {self._shown_url} sent {exc}") from None
        final = str(response.url)
        return _Fetched(
            body=data,
            status=status,
            content_type=_content_type(response.headers.get("Content-Type")),
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            final_url=final if response.history and final != self._url else None,
        )

    def _too_big(self, detail: str) -> TransientError:
        return TransientError(
            f"feed at {self._shown_url} is larger than max_bytes={self._settings.max_bytes} "
            f"({detail}); download aborted"
        )

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        what = f"feed at {self._shown_url} answered HTTP {status}"
        # The server wrote the phrase; a hostile one could echo our token back.
        phrase = self._scrub(response.reason_phrase)[:60]
        if phrase:
            what += f" {phrase}"
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if status == 429 or (status == 503 and retry_after is not None):
            hint = f"; retry after {retry_after:g}s" if retry_after is not None else ""
            raise RateLimitedError(f"{what} (rate limited{hint})", retry_after=retry_after)
        if status in (401, 403):
            raise AuthError(f"{what}: access refused; check the feed URL's credentials or token")
        if status == 410:
            raise WatcherConfigError(f"{what}: the feed is gone for good; check the URL")
        if status >= 500 or status in (404, 408, 425):
            raise TransientError(what)
        if 400 <= status < 500:
            raise WatcherConfigError(f"{what}: the request cannot work as configured")
        raise TransientError(f"{what}: unexpected status")

    # -- parsing

    def _not_a_feed(self, reason: str) -> TransientError:
        return TransientError(f"feed at {self._shown_url} is not RSS/Atom: {reason}")

    def _observations(self, fetched: _Fetched) -> list[Observation]:
        body = fetched.body
        if not body.strip():
            raise self._not_a_feed("empty response")
        try:
            ranges = _entry_ranges(body)
        except _EntityDeclared:
            raise self._not_a_feed(
                "it declares XML entities (<!ENTITY>), refused to avoid entity-expansion "
                "and external-entity attacks"
            ) from None
        if not _is_ascii_compatible(body):
            ranges = None  # byte offsets of '>' are not searchable in UTF-16/32
        response_headers = {
            "content-type": fetched.content_type,
            "content-location": fetched.final_url or self._url,
        }
        # A file object, never bytes: feedparser would try short bytes as a local path.
        parsed = feedparser.parse(io.BytesIO(body), response_headers=response_headers)
        entries: list[Any] = list(parsed.get("entries") or [])
        if not parsed.get("version") and not entries:
            raise self._not_a_feed(self._why_not_a_feed(body, fetched.content_type, parsed))
        raws = self._raws(body, ranges, entries)
        method = self._capture_method(fetched, per_entry=raws is not None)
        feed_author = parsed.get("feed", {})
        observations = [
            self._observation(
                entry,
                raws[index] if raws is not None else body,
                fetched.content_type,
                method,
                feed_author,
            )
            for index, entry in enumerate(entries)
        ]
        return _oldest_first(observations)

    def _why_not_a_feed(self, body: bytes, content_type: str, parsed: Any) -> str:
        if _looks_like_html(body, content_type):
            return "the server sent an HTML page"
        error = parsed.get("bozo_exception")
        if error is not None:
            return self._scrub(f"unreadable XML ({error})")
        return "no RSS or Atom elements in the document"

    @staticmethod
    def _raws(
        body: bytes, ranges: list[tuple[int, int]] | None, entries: list[Any]
    ) -> list[bytes] | None:
        """Each entry's own element bytes, or None to keep the whole document."""
        if ranges is None or len(ranges) != len(entries):
            return None
        raws = [body[start:end] for start, end in ranges]
        for raw, entry in zip(raws, entries, strict=True):
            entry_id = str(entry.get("id") or "")
            plain = entry_id.isascii() and not set(entry_id) & set("&<>'\"")
            if plain and entry_id.encode("ascii") not in raw:
                return None  # the n-th element is not the n-th entry: do not guess
        return raws

    def _capture_method(self, fetched: _Fetched, *, per_entry: bool) -> str:
        details = [f"HTTP {fetched.status}"]
        if fetched.etag:
            details.append(f"ETag {self._scrub(fetched.etag)[:80]}")
        if fetched.last_modified:
            details.append(f"Last-Modified {self._scrub(fetched.last_modified)[:40]}")
        if fetched.final_url:
            details.append(f"redirected to {mask_url(fetched.final_url)}")
        raw = "raw: the entry's XML element" if per_entry else "raw: the whole feed document"
        return f"RSS/Atom fetch of {self._shown_url} ({', '.join(details)}); {raw}"

    def _observation(
        self, entry: Any, raw: bytes, content_type: str, method: str, feed: Any
    ) -> Observation:
        title = _entry_title(entry)
        content = _entry_text(entry)
        text = "\n\n".join(part for part in (title, content) if part)
        handle, display = _author(entry) or _author(feed) or (None, None)
        return Observation(
            platform=self.platform,
            native_id=self._native_id(entry, title, content),
            kind="feed_entry",
            raw=raw,
            watcher=self.name,
            url=str(entry.get("link") or "") or None,
            author_handle=handle,
            author_display_name=display,
            text=text,
            posted_at=_struct_to_utc(entry.get("published_parsed"))
            or _struct_to_utc(entry.get("updated_parsed")),
            raw_content_type=content_type,
            posted_by=self._settings.posted_by,
            capture_method=method,
        )

    def _native_id(self, entry: Any, title: str, content: str) -> str:
        """The entry's guid/id when it is a URI (unique on its own); a bare guid such as
        ``1234`` is qualified by the feed's host so two sites' ``1234`` stay apart; then
        the link; then a hash of the text, stable while the entry is unchanged."""
        guid = " ".join(str(entry.get("id") or "").split())
        if guid:
            return guid if _ABSOLUTE_URI.match(guid) else f"{self._host}#{guid}"
        link = str(entry.get("link") or "").strip()
        if link:
            return link
        digest = hashlib.sha256(f"{title}\n{content}".encode()).hexdigest()
        return f"{self._host}#sha256:{digest}"


def _detail_text(detail: Any) -> str:
    value = str(detail.get("value") or "")
    kind = str(detail.get("type") or "text/html")
    return tidy(value) if kind == "text/plain" else html_to_text(value)


def _entry_title(entry: Any) -> str:
    detail = entry.get("title_detail")
    if detail:
        return _detail_text(detail)
    return tidy(str(entry.get("title") or ""))


def _entry_text(entry: Any) -> str:
    """Full content when the feed has it, else the summary, as plain text."""
    contents = entry.get("content") or []
    if contents:
        return "\n\n".join(t for t in (_detail_text(c) for c in contents) if t)
    detail = entry.get("summary_detail")
    if detail:
        return _detail_text(detail)
    return html_to_text(str(entry.get("summary") or ""))


def _author(item: Any) -> tuple[str, str | None] | None:
    """(handle, display name): an email address when the author gives one (it is what
    the matching rules compare with), else the author's name."""
    detail = item.get("author_detail") or {}
    email = str(detail.get("email") or "").strip()
    name = str(detail.get("name") or "").strip() or None
    plain = str(item.get("author") or "").strip()
    if email:
        return email, name
    if name:
        return name, name
    if plain:
        return plain, plain
    return None


def _oldest_first(observations: list[Observation]) -> list[Observation]:
    """Dated entries by date; undated ones after them, in reverse document order since
    feeds list the newest first."""
    undated_last = list(reversed(observations))
    return sorted(undated_last, key=lambda o: (o.posted_at is None, o.posted_at or _EPOCH))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
