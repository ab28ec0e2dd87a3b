"""Watcher types by name: the built-in ones and those registered by other packages
under the entry-point group ``nocontact.watchers``."""

from __future__ import annotations

import difflib
import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any, cast

from watchers.base import Watcher

ENTRY_POINT_GROUP = "nocontact.watchers"
# Built-ins are listed here too so a source checkout works without installed metadata.
BUILTIN = {
    "rss": "watchers.rss:RssWatcher",
    "reddit": "watchers.reddit:RedditWatcher",
    "x": "watchers.x:XWatcher",
    "mastodon": "watchers.mastodon:MastodonWatcher",
    "imap": "watchers.imap:ImapWatcher",
    "bluesky": "watchers.bluesky:BlueskyWatcher",
}


class UnknownWatcherType(LookupError):
    def __init__(self, type_name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(type_name, known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(
            f"unknown watcher type {type_name!r}{hint} (known: {', '.join(sorted(known))})"
        )


class WatcherTypeUnavailable(LookupError):
    """The type is registered but its module cannot be imported (a missing dependency)."""


@cache
def _targets() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def watcher_types() -> list[str]:
    return sorted(_targets())


@cache
def watcher_class(type_name: str) -> type[Watcher]:
    target = _targets().get(type_name)
    if target is None:
        raise UnknownWatcherType(type_name, watcher_types())
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WatcherTypeUnavailable(
            f"watcher type {type_name!r} cannot be loaded ({exc}); reinstall nocontact"
        ) from exc
    cls: Any = getattr(module, attr, None)
    if cls is None:
        raise WatcherTypeUnavailable(f"watcher type {type_name!r}: {target} does not exist")
    return cast(type[Watcher], cls)
