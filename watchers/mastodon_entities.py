"""Mastodon API entities (Status, Account, StatusEdit) as JSON dicts → Observations.

Pure functions over the JSON exactly as the instance sent it, so that one status gives
the same Observation whichever endpoint returned it (notifications, an account's
statuses, a single status): the kind and the addressees are read from the status and
the protected account, never from the endpoint.

Handles are always ``user@instance``: an instance names its own accounts without the
domain (``acct: "alex"``), so those are qualified with the instance's domain.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from watchers.base import AccountInfo, Observation, ObservationKind, TransientError
from watchers.toolkit.text import html_to_text

PLATFORM = "mastodon"
CAPTURE_METHOD = "Mastodon API (Mastodon.py)"


@dataclasses.dataclass(frozen=True, slots=True)
class Viewer:
    """Whose eyes the watcher reads through: the protected account and its instance."""

    account_id: str
    domain: str


def qualify(acct: str, domain: str) -> str:
    """``user@instance`` for an ``acct`` as an instance gives it (local ones lack the domain)."""
    acct = acct.strip().removeprefix("@")
    return acct if "@" in acct else f"{acct}@{domain}"


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def id_key(value: str) -> tuple[int, str]:
    """Sort key of Mastodon ids: numeric strings of growing length (compare as numbers)."""
    return (len(value), value)


def newest(*ids: str | None) -> str | None:
    present = [i for i in ids if i]
    return max(present, key=id_key) if present else None


def dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def text_of(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def require_status(value: object, what: str) -> dict[str, Any]:
    """A Status entity, or a TransientError naming what answered garbage."""
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("id"), str)
        or not isinstance(value.get("account"), dict)
        or not isinstance(value["account"].get("acct"), str)
    ):
        raise TransientError(f"mastodon: {what}: answer does not have a Mastodon Status's shape")
    reblog = value.get("reblog")
    if reblog is not None:
        require_status(reblog, what)
    return value


def status_text(status: Mapping[str, Any]) -> str:
    """What a reader sees: the content warning, the text, then each attachment's
    description. Descriptions are appended, never in place of the text."""
    parts: list[str] = []
    spoiler = text_of(status.get("spoiler_text"))
    if spoiler:
        parts.append(f"Content warning: {spoiler}")
    content = text_of(status.get("content"))
    if content:
        body = html_to_text(content)
        if body:
            parts.append(body)
    poll = status.get("poll")
    if isinstance(poll, dict):
        options = [o["title"] for o in dicts(poll.get("options")) if text_of(o.get("title"))]
        if options:
            parts.append("Poll: " + " / ".join(options))
    for media in dicts(status.get("media_attachments")):
        kind = text_of(media.get("type")) or "media"
        description = text_of(media.get("description"))
        parts.append(f"[{kind}: {description}]" if description else f"[{kind}]")
    return "\n\n".join(parts)


def _kind(status: Mapping[str, Any], viewer: Viewer) -> ObservationKind:
    if isinstance(status.get("reblog"), dict):
        return "boost"
    if status.get("visibility") == "direct":
        return "direct_message"
    if status.get("in_reply_to_account_id") == viewer.account_id:
        return "reply"
    if any(m.get("id") == viewer.account_id for m in dicts(status.get("mentions"))):
        return "mention"
    if _quoted_account_id(status) == viewer.account_id:
        return "mention"
    return "reply" if status.get("in_reply_to_id") else "post"


def _quoted_account_id(status: Mapping[str, Any]) -> str | None:
    quote = status.get("quote")
    if not isinstance(quote, dict):
        return None
    quoted = quote.get("quoted_status")
    if isinstance(quoted, dict) and isinstance(quoted.get("account"), dict):
        return text_of(quoted["account"].get("id"))
    return None


def addressed_to(status: Mapping[str, Any], viewer: Viewer, me: str) -> tuple[str, ...]:
    """The accounts a status is sent to: its mentions, the account it replies to, and the
    protected account when it quotes them. A boost addresses nobody (it notifies no one
    it mentions)."""
    if isinstance(status.get("reblog"), dict):
        return ()
    found: dict[str, str] = {}
    ids: dict[str, str] = {viewer.account_id: me}
    for mention in dicts(status.get("mentions")):
        acct = text_of(mention.get("acct"))
        if acct:
            handle = qualify(acct, viewer.domain)
            found.setdefault(handle.casefold(), handle)
            if text_of(mention.get("id")):
                ids[mention["id"]] = handle
    for account_id in (status.get("in_reply_to_account_id"), _quoted_account_id(status)):
        addressee = ids.get(account_id) if isinstance(account_id, str) else None
        if addressee:
            found.setdefault(addressee.casefold(), addressee)
    return tuple(found.values())


def account_info(account: Mapping[str, Any], domain: str) -> AccountInfo:
    acct = qualify(str(account.get("acct", "")), domain)
    suspended = account.get("suspended") is True
    return AccountInfo(
        handle=acct,
        status="suspended" if suspended else "active",
        account_id=text_of(account.get("id")),
        created_at=parse_time(account.get("created_at")),
    )


def encode(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def observation(
    status: dict[str, Any],
    viewer: Viewer,
    me: str,
    watcher: str,
    history: Sequence[dict[str, Any]] | None = None,
) -> Observation:
    """One status as evidence. ``raw`` is the status as received (with its account);
    an edited status's raw is ``{"status": …, "history": […]}`` with its edit history."""
    shown = status["reblog"] if isinstance(status.get("reblog"), dict) else status
    account = status["account"]
    raw: object = status if history is None else {"status": status, "history": list(history)}
    return Observation(
        platform=PLATFORM,
        native_id=text_of(status.get("uri")) or status["id"],
        kind=_kind(status, viewer),
        raw=encode(raw),
        watcher=watcher,
        url=text_of(status.get("url")) or text_of(shown.get("url")) or text_of(shown.get("uri")),
        author_handle=qualify(account["acct"], viewer.domain),
        # The account's URI is its id on its home instance; ``id`` is this instance's.
        author_id=text_of(account.get("uri")) or text_of(account.get("id")),
        author_display_name=text_of(account.get("display_name")),
        author_created_at=parse_time(account.get("created_at")),
        addressed_to=addressed_to(status, viewer, me),
        text=status_text(shown),
        posted_at=parse_time(status.get("created_at")),
        capture_method=CAPTURE_METHOD,
    )
