"""What a feed entry says, read from feedparser's parse: its title and text (HTML as
visible text, media descriptions appended, never replacing the text), its author (or,
for a feed such as Mastodon's that names none per entry, the feed's own account) and
its dates. Shared by the feed watcher's poll and its re-check."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from watchers.toolkit.text import html_to_text, tidy


def struct_to_utc(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        year, month, day, hour, minute, second = (int(v) for v in value[:6])
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def detail_text(detail: Any) -> str:
    value = str(detail.get("value") or "")
    kind = str(detail.get("type") or "text/html")
    return tidy(value) if kind == "text/plain" else html_to_text(value)


def entry_title(entry: Any) -> str:
    detail = entry.get("title_detail")
    if detail:
        return detail_text(detail)
    return tidy(str(entry.get("title") or ""))


def entry_text(entry: Any) -> str:
    """Full content when the feed has it, else the summary, as plain text; media
    descriptions are appended to the text, never in its place."""
    contents = entry.get("content") or []
    media = entry.get("media_content") or []
    summary = entry.get("summary_detail")
    if media and summary and all(c.get("type") == "text/plain" for c in contents):
        # feedparser files <media:description> (an image's alt text in Mastodon's feeds)
        # under ``content``; then the summary is the post itself.
        described = [media_line(media, i, detail_text(c)) for i, c in enumerate(contents)]
        return "\n\n".join(t for t in (detail_text(summary), *described) if t)
    if contents:
        return "\n\n".join(t for t in (detail_text(c) for c in contents) if t)
    detail = entry.get("summary_detail")
    if detail:
        return detail_text(detail)
    return html_to_text(str(entry.get("summary") or ""))


def media_line(media: list[Any], index: int, description: str) -> str:
    kind = str(media[index].get("medium") or "media") if index < len(media) else "media"
    return f"[{kind}: {description}]" if description else ""


# A Mastodon-style profile address: https://mastodon.social/@johndoe
PROFILE_PATH = re.compile(r"^/@([A-Za-z0-9_.-]+)/?$")


def feed_account(feed: Any, posted_by: str | None) -> tuple[str | None, str | None] | None:
    """Who writes a feed whose entries name no author (Mastodon's do not): its profile
    link gives ``name@host``, its title the display name; with ``posted_by`` set, the
    title alone names the party."""
    title = tidy(str(feed.get("title") or "")) or None
    link = urlsplit(str(feed.get("link") or ""))
    match = PROFILE_PATH.match(link.path)
    if match and link.hostname:
        return f"{match.group(1)}@{link.hostname}", title
    if posted_by and title:
        return None, title
    return None


def author(item: Any) -> tuple[str, str | None] | None:
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
