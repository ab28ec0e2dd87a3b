"""Re-reading captured Bluesky posts for deletions and edits (#13, #14 item 2).

Posts are asked for through the AppView's ``app.bsky.feed.getPosts``, 25 ``at://`` URIs
a call (the lexicon's limit). The AppView leaves out a post that no longer exists: it
is ``deleted``. A post whose record CID (its content hash) changed was rewritten: its
new record is the next version (``edited``). Anything else is ``unchanged``. A 429 ends
the run; the posts not read yet are left for a later re-check. Only posts are read
again: account and coverage records have no post to read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from watchers.base import (
    Observation,
    RateLimitedError,
    RecheckItem,
    RecheckResult,
    TransientError,
)
from watchers.bluesky_records import POST_NSID, split_uri

log = logging.getLogger(__name__)

POSTS_PER_CALL = 25
GONE = "no longer on Bluesky (getPosts leaves it out)"


def stored_cid(raw: bytes | None) -> str | None:
    """The record CID kept in a post's raw payload (``{"uri", "cid", "record"}``)."""
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    cid = value.get("cid") if isinstance(value, dict) else None
    return cid if isinstance(cid, str) else None


def _is_post(item: RecheckItem) -> bool:
    parts = split_uri(item.native_id)
    return parts is not None and parts[1] == POST_NSID


def recheck_posts(
    get_posts: Callable[[list[str]], list[dict[str, Any]]],
    make_post: Callable[[str, str | None, Mapping[str, Any]], Observation | None],
    items: Sequence[RecheckItem],
) -> list[RecheckResult]:
    """``get_posts(uris)`` returns the postViews the AppView still has; ``make_post``
    builds a rewritten post's new version."""
    wanted = [item for item in items if _is_post(item)]
    results: list[RecheckResult] = []
    for start in range(0, len(wanted), POSTS_PER_CALL):
        batch = wanted[start : start + POSTS_PER_CALL]
        try:
            views = get_posts([item.native_id for item in batch])
        except RateLimitedError:
            break  # the rest waits for a later re-check
        except TransientError as exc:
            log.info("bluesky re-check: %s; tried again later", exc)
            continue
        found = {view.get("uri"): view for view in views if isinstance(view, dict)}
        results.extend(_judge(item, found.get(item.native_id), make_post) for item in batch)
    return results


def _judge(
    item: RecheckItem,
    view: Mapping[str, Any] | None,
    make_post: Callable[[str, str | None, Mapping[str, Any]], Observation | None],
) -> RecheckResult:
    if view is None:
        return RecheckResult(item.native_id, "deleted", GONE)
    cid, record = view.get("cid"), view.get("record")
    known = stored_cid(item.raw)
    if isinstance(cid, str) and known is not None and cid != known and isinstance(record, dict):
        edited = make_post(item.native_id, cid, record)
        if edited is not None and edited.text != item.text:
            return RecheckResult(item.native_id, "edited", "rewritten by its author", edited)
    return RecheckResult(item.native_id, "unchanged")
