"""RSS and Atom feeds (``type: rss``): one feed URL, fetched with the toolkit's bounded
HTTP client (``watchers.toolkit.http``: timeouts, deadline, byte cap, redirects, HTTP
status → watcher errors), parsed by feedparser. A ``file:`` URL names a local feed file
(the offline quick start), read within the same byte cap.

XML entity declarations are refused before feedparser sees the document
(``watchers.toolkit.xmlguard``), and feedparser is only ever given a file object (given
bytes, it would try them as a local file name). The URL may carry a token, so it is shown
masked everywhere (``mask_url``).

Evidence: each entry's ``raw`` is the exact byte range of its ``<item>``/``<entry>``
element in the document as received (after Content-Encoding is undone; the slice lacks
the namespace declarations of the root element), when the document is well-formed XML
in an ASCII-compatible encoding and its entries can be matched one-to-one to
feedparser's. Otherwise (a malformed feed feedparser still reads, UTF-16, …) every
entry's ``raw`` is the whole document. ``capture_method`` says which of the two it is.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import feedparser
from pydantic import Field, field_validator

from watchers.base import (
    AccountInfo,
    Observation,
    PartyRole,
    PollResult,
    RecheckItem,
    RecheckResult,
    Targets,
    TransientError,
    WatcherSettings,
)
from watchers.feed_entries import author, entry_text, entry_title, feed_account, struct_to_utc
from watchers.toolkit.http import BoundedClient, Fetched, Validators, read_file
from watchers.toolkit.httpsettings import HttpWatcherSettings, check_http_url, default_user_agent
from watchers.toolkit.redact import Redactor, mask_url
from watchers.toolkit.xmlguard import (
    Bounded,
    DocumentRefused,
    EntityDeclared,
    bound_document,
    bound_loose,
    entry_ranges,
    is_ascii_compatible,
)


class RssSettings(HttpWatcherSettings):
    type: Literal["rss"] = "rss"
    url: str
    # Set when the feed belongs to a party (their blog): every entry is theirs.
    posted_by: PartyRole | None = None
    user_agent: str = Field(
        default_factory=lambda: default_user_agent("feed watcher"), min_length=1
    )

    @field_validator("url")
    @classmethod
    def _feed_url(cls, value: str) -> str:
        value = value.strip()
        if value[:5].lower() == "file:":
            return _feed_file_url(value)
        return check_http_url(value, "an http://, https:// or file: URL")


# A file: URL may only name a feed file: never /etc/passwd or a key into the evidence.
FEED_FILE_SUFFIXES = frozenset({".xml", ".rss", ".atom"})


def _feed_file_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.netloc not in ("", "localhost"):
        raise ValueError("a file: URL names a file on this machine, like file:///srv/feed.xml")
    if PurePosixPath(parts.path).suffix.lower() not in FEED_FILE_SUFFIXES:
        raise ValueError("a file: URL must name a feed file ending in .xml, .rss or .atom")
    return value


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
        self._what = f"feed at {self._shown_url}"
        self._client = BoundedClient(
            settings.limits(),
            user_agent=settings.user_agent,
            redactor=self._scrub,
            noun="feed",
            auth_hint="check the feed URL's credentials or token",
        )

    @property
    def name(self) -> str:
        return self._settings.display_name

    def poll(self, state: Mapping[str, Any]) -> PollResult:
        fetched = self._fetch(Validators.from_state(state))
        if fetched is None:
            return PollResult([], dict(state))
        return PollResult(self._observations(fetched), fetched.validators.as_state())

    def lookup_account(self, handle: str) -> AccountInfo | None:
        return None  # a feed has no accounts to look up

    def recheck(self, items: Sequence[RecheckItem]) -> list[RecheckResult]:
        """An entry whose own page answers 404 or 410 was removed. The feed is not
        asked: a feed that rolls an old entry off has not deleted it."""
        results: list[RecheckResult] = []
        for item in items:
            if not item.url or not item.url.startswith(("http://", "https://")):
                continue
            try:
                status = self._client.status(item.url, what=f"entry page {mask_url(item.url)}")
            except TransientError:
                continue  # unreachable now: asked again at the next re-check
            if status in (404, 410):
                detail = f"its page answers HTTP {status}"
                results.append(RecheckResult(item.native_id, "removed", detail))
            elif 200 <= status < 300:
                results.append(RecheckResult(item.native_id, "unchanged"))
        return results

    def close(self) -> None:
        self._client.close()

    def _fetch(self, validators: Validators) -> Fetched | None:
        """The feed, or None when the server says it has not changed (304)."""
        if urlsplit(self._url).scheme == "file":
            return read_file(self._url, max_bytes=self._settings.max_bytes, what=self._what)
        return self._client.get(self._url, what=self._what, validators=validators)

    # -- parsing

    def _not_a_feed(self, reason: str) -> TransientError:
        return TransientError(f"feed at {self._shown_url} is not RSS/Atom: {reason}")

    def _observations(self, fetched: Fetched) -> list[Observation]:
        body = fetched.body
        if not body.strip():
            raise self._not_a_feed("empty response")
        try:
            bounded = self._bounded(body)
            ranges = entry_ranges(body)
        except EntityDeclared:
            raise self._not_a_feed(
                "it declares XML entities (<!ENTITY>), refused to avoid entity-expansion "
                "and external-entity attacks"
            ) from None
        if not is_ascii_compatible(body):
            ranges = None  # byte offsets of '>' are not searchable in UTF-16/32
        elif ranges is not None and bounded.entries is not None:
            ranges = ranges[: bounded.entries]
        content_type = _content_type(fetched.headers.get("Content-Type"))
        response_headers = {
            "content-type": content_type,
            "content-location": fetched.final_url or self._url,
        }
        if bounded.cuts:
            # The copy is UTF-8 whatever the server declared.
            response_headers["content-type"] = "application/xml; charset=utf-8"
        # A file object, never bytes: feedparser would try short bytes as a local path.
        parsed = feedparser.parse(io.BytesIO(bounded.body), response_headers=response_headers)
        entries: list[Any] = list(parsed.get("entries") or [])
        if not parsed.get("version") and not entries:
            raise self._not_a_feed(self._why_not_a_feed(body, content_type, parsed))
        raws = self._raws(body, ranges, entries)
        method = self._capture_method(fetched, per_entry=raws is not None)
        if bounded.cuts:
            method += f"; cut before parsing: {', '.join(bounded.cuts)}"
        feed_author = parsed.get("feed", {})
        observations = [
            self._observation(
                entry,
                raws[index] if raws is not None else body,
                content_type,
                method,
                feed_author,
            )
            for index, entry in enumerate(entries)
        ]
        return _oldest_first(observations)

    def _bounded(self, body: bytes) -> Bounded:
        """The document within the parsing bounds (``watchers.toolkit.xmlguard``)."""
        try:
            bounded = bound_document(body)
            if bounded is None:
                bound_loose(body)  # not well-formed: refused, never cut, when too big
                return Bounded(body)
        except DocumentRefused as exc:
            raise self._not_a_feed(f"refused before parsing: {exc}") from None
        return bounded

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
            # feedparser resolves a bare guid against the feed's URL: "e1" becomes
            # "https://host/e1", so its last segment is what the element holds.
            bare = entry_id.rstrip("/").rsplit("/", 1)[-1]
            if plain and entry_id.encode("ascii") not in raw and bare.encode("ascii") not in raw:
                return None  # the n-th element is not the n-th entry: do not guess
        return raws

    def _capture_method(self, fetched: Fetched, *, per_entry: bool) -> str:
        details = [f"HTTP {fetched.status}" if fetched.status else "local file"]
        etag, modified = fetched.validators.etag, fetched.validators.last_modified
        if etag:
            details.append(f"ETag {self._scrub(etag)[:80]}")
        if modified:
            details.append(f"Last-Modified {self._scrub(modified)[:40]}")
        if fetched.final_url:
            details.append(f"redirected to {mask_url(fetched.final_url)}")
        raw = "raw: the entry's XML element" if per_entry else "raw: the whole feed document"
        return f"RSS/Atom fetch of {self._shown_url} ({', '.join(details)}); {raw}"

    def _observation(
        self, entry: Any, raw: bytes, content_type: str, method: str, feed: Any
    ) -> Observation:
        title = entry_title(entry)
        content = entry_text(entry)
        text = "\n\n".join(part for part in (title, content) if part)
        handle, display = (
            author(entry)
            or author(feed)
            or feed_account(feed, self._settings.posted_by)
            or (None, None)
        )
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
            posted_at=struct_to_utc(entry.get("published_parsed"))
            or struct_to_utc(entry.get("updated_parsed")),
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


def _oldest_first(observations: list[Observation]) -> list[Observation]:
    """Dated entries by date; undated ones after them, in reverse document order since
    feeds list the newest first."""
    undated_last = list(reversed(observations))
    return sorted(undated_last, key=lambda o: (o.posted_at is None, o.posted_at or _EPOCH))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
