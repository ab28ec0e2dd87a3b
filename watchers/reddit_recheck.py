"""Re-reading captured Reddit items for deletions and edits (#14 item 2).

Comments (``t1_``) and posts (``t3_``) are read again through ``/api/info`` in batches
of 100, the endpoint's limit, with the same read-only client and rate-limit budget as
polling. Private messages cannot be read again that way and are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from watchers.base import Observation, ObservationKind, RecheckItem, RecheckResult
from watchers.reddit import DELETED, INFO_BATCH
from watchers.reddit_data import created_utc, opt_str, public_url, raw_bytes, thing_text

REMOVED = "[removed]"
_READABLE = ("t1_", "t3_")
METHOD = "Reddit API (praw) GET /api/info (re-check)"


def recheck_things(
    info: Callable[[list[str]], list[dict[str, Any]] | None],
    items: Sequence[RecheckItem],
    watcher: str,
) -> list[RecheckResult]:
    """``info(fullnames)`` returns the things Reddit gives for them (None: try later)."""
    wanted = [item for item in items if item.native_id.startswith(_READABLE)]
    results: list[RecheckResult] = []
    for start in range(0, len(wanted), INFO_BATCH):
        batch = wanted[start : start + INFO_BATCH]
        things = info([item.native_id for item in batch])
        if things is None:
            continue
        found = {str(thing["data"].get("name")): thing for thing in things}
        for item in batch:
            thing = found.get(item.native_id)
            if thing is None:
                results.append(
                    RecheckResult(item.native_id, "unavailable", "not returned by Reddit")
                )
            else:
                results.append(_judge(item, thing, watcher))
    return results


def _judge(item: RecheckItem, thing: Mapping[str, Any], watcher: str) -> RecheckResult:
    data = thing["data"]
    body = data.get("selftext") if thing.get("kind") == "t3" else data.get("body")
    if body == REMOVED or data.get("removed_by_category"):
        return RecheckResult(item.native_id, "removed", "removed by a moderator or Reddit")
    if body == DELETED or data.get("author") == DELETED:
        return RecheckResult(item.native_id, "deleted", "deleted by its author")
    text = thing_text(thing)
    if text == item.text:
        return RecheckResult(item.native_id, "unchanged")
    kind: ObservationKind = "post" if thing.get("kind") == "t3" else "comment"
    edited = Observation(
        platform="reddit",
        native_id=item.native_id,
        kind=kind,
        raw=raw_bytes(thing),
        watcher=watcher,
        url=public_url(thing),
        author_handle=opt_str(data.get("author")),
        author_id=opt_str(data.get("author_fullname")),
        text=text,
        posted_at=datetime.fromtimestamp(created_utc(data), UTC),
        capture_method=METHOD,
    )
    return RecheckResult(item.native_id, "edited", "edited by its author", edited)
