"""Reddit's data as the Reddit watcher reads it: listings and things (checked, since
they come from a server we do not control), their text, public links and raw bytes,
and Reddit's rate-limit headers. No I/O: ``watchers.reddit`` drives them."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import prawcore.const
import requests

from watchers.base import TransientError

# Evidence links point at the public site, whatever endpoint the API was read through.
PUBLIC_SITE = "https://www.reddit.com"
# u/name or /u/name as Reddit links it (and notifies the user named).
USER_TAG = re.compile(r"(?<![\w/])/?u/([A-Za-z0-9_-]{3,20})\b")


@dataclasses.dataclass(slots=True)
class Budget:
    """Reddit's rate-limit headers as last seen, so that a poll with no requests left
    fails fast with a retry time instead of sleeping inside prawcore for minutes."""

    remaining: float | None = None
    reset_at: float | None = None  # time.monotonic() when the window resets

    def seconds_to_wait(self) -> float:
        if self.remaining is None or self.reset_at is None or self.remaining > 0:
            return 0.0
        return max(0.0, self.reset_at - time.monotonic())

    def update(self, headers: Mapping[str, str]) -> None:
        remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
        if remaining is None or reset is None:
            return
        try:
            self.remaining = float(remaining)
            self.reset_at = time.monotonic() + float(reset)
        except ValueError:
            return


def is_token_request(response: requests.Response) -> bool:
    return urlsplit(response.url).path.endswith(prawcore.const.ACCESS_TOKEN_PATH)


def retry_after_seconds(response: requests.Response) -> float:
    for header in ("retry-after", "x-ratelimit-reset"):
        value = response.headers.get(header)
        if value is None:
            continue
        try:
            return max(1.0, float(value))
        except ValueError:
            continue
    return 60.0


def listing_data(body: Any, path: str) -> Mapping[str, Any]:
    """The ``data`` of a Listing, with every child checked to be a thing we can read."""
    data = body.get("data") if isinstance(body, Mapping) else None
    children = data.get("children") if isinstance(data, Mapping) else None
    if (
        not isinstance(data, Mapping)
        or body.get("kind") != "Listing"
        or not isinstance(children, list)
    ):
        raise TransientError(f"reddit: unexpected response to GET /{path.rstrip('/')}")
    for child in children:
        if not is_thing(child):
            raise TransientError(f"reddit: malformed item in GET /{path.rstrip('/')}")
    return data


def is_thing(child: object) -> bool:
    if not isinstance(child, Mapping) or child.get("kind") not in ("t1", "t3", "t4"):
        return False
    data = child.get("data")
    return (
        isinstance(data, Mapping)
        and isinstance(data.get("name"), str)
        and isinstance(data.get("created_utc"), int | float)
    )


def created_utc(data: Mapping[str, Any]) -> float:
    return float(data["created_utc"])


def opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def unique_ci(values: Sequence[str]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for value in values:
        if value and value.casefold() not in {v.casefold() for v in out}:
            out[value] = None
    return tuple(out)


def user_tags(text: str) -> list[str]:
    return USER_TAG.findall(text)


def thing_text(thing: Mapping[str, Any]) -> str:
    data = thing["data"]
    if thing["kind"] == "t3":
        parts = [data.get("title"), data.get("selftext")]
    elif thing["kind"] == "t4":
        parts = [data.get("subject"), data.get("body")]
    else:
        parts = [data.get("body")]
    return "\n\n".join(p for p in parts if isinstance(p, str) and p)


def public_url(thing: Mapping[str, Any]) -> str:
    data = thing["data"]
    if thing["kind"] == "t4":
        return f"{PUBLIC_SITE}/message/messages/{data.get('id') or data['name'][3:]}"
    link = data.get("permalink") or data.get("context")
    if isinstance(link, str) and link.startswith("/"):
        return PUBLIC_SITE + urlsplit(link).path
    # Older listings carry no permalink: build it from the post and comment ids.
    post = str(data.get("link_id") or "")[3:]
    sub = data.get("subreddit") or "all"
    return f"{PUBLIC_SITE}/r/{sub}/comments/{post}/_/{data.get('id', '')}/"


def raw_bytes(thing: Mapping[str, Any]) -> bytes:
    # The thing ({"kind", "data"}) as parsed from Reddit's response, keys in Reddit's
    # order, re-serialised compactly: the listing envelope around it is not kept.
    return json.dumps(thing, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
