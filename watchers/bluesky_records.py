"""Bluesky records → Observations, for ``watchers.bluesky``: the same post gives the same
Observation whichever way it arrived (notification, author feed or Jetstream), so the
store keeps it once.

Evidence (``raw``) is ``{"uri": <at:// URI>, "cid": <CID>, "record": <record JSON as
received>}``; the CID is the record's own content hash on the network. Everything that
decides the content identity (kind, addressees, text, time, author) is taken from the
record and the author's cached profile, never from the endpoint that returned it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from watchers.base import Observation, ObservationKind, utc

PLATFORM = "bluesky"
POST_NSID = "app.bsky.feed.post"
_AT_URI = re.compile(r"^at://(did:[a-z0-9]+:[A-Za-z0-9._:%-]+)/([a-z0-9.]+)/([A-Za-z0-9._:~-]+)$")


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """What the watcher knows of an account: from a profile view or an identity event."""

    did: str
    handle: str | None = None
    display_name: str | None = None
    created_at: datetime | None = None


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def profile_from_view(view: Mapping[str, Any]) -> Profile | None:
    """A ``profileView`` / ``profileViewBasic`` / ``profileViewDetailed`` object."""
    did = view.get("did")
    if not isinstance(did, str):
        return None
    handle, name = view.get("handle"), view.get("displayName")
    return Profile(
        did=did,
        handle=handle if isinstance(handle, str) and handle != "handle.invalid" else None,
        display_name=name if isinstance(name, str) and name.strip() else None,
        created_at=parse_time(view.get("createdAt")),
    )


def split_uri(uri: str) -> tuple[str, str, str] | None:
    """(DID, collection, rkey) of an ``at://`` URI with a DID authority."""
    found = _AT_URI.match(uri)
    return (found.group(1), found.group(2), found.group(3)) if found else None


def post_url(did: str, rkey: str) -> str:
    return f"https://bsky.app/profile/{did}/post/{rkey}"


def _uri_did(value: object) -> str | None:
    if isinstance(value, dict):
        uri = value.get("uri")
        if isinstance(uri, str):
            parts = split_uri(uri)
            return parts[0] if parts else None
    return None


def addressed_dids(record: Mapping[str, Any]) -> list[str]:
    """DIDs a post addresses: the author replied to and the thread's root author, the
    quoted post's author, and every mention facet. In that order, without repeats."""
    found: list[str] = []
    reply = record.get("reply")
    if isinstance(reply, dict):
        found += [d for d in (_uri_did(reply.get("parent")), _uri_did(reply.get("root"))) if d]
    embed = record.get("embed")
    if isinstance(embed, dict):
        quoted = embed.get("record")
        # recordWithMedia nests the quoted record one level deeper.
        if isinstance(quoted, dict) and "record" in quoted:
            quoted = quoted.get("record")
        did = _uri_did(quoted)
        if did:
            found.append(did)
    facets = record.get("facets")
    for facet in facets if isinstance(facets, list) else ():
        features = facet.get("features") if isinstance(facet, dict) else None
        for feature in features if isinstance(features, list) else ():
            if (
                isinstance(feature, dict)
                and feature.get("$type") == "app.bsky.richtext.facet#mention"
                and isinstance(feature.get("did"), str)
            ):
                found.append(feature["did"])
    return list(dict.fromkeys(found))


def raw_json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def post_observation(
    uri: str,
    cid: str | None,
    record: Mapping[str, Any],
    author: Profile,
    addressees: Mapping[str, str],
    watcher: str,
    capture_method: str,
) -> Observation | None:
    """The Observation of one post record; ``addressees`` maps a DID to the name the
    case knows it by (the protected handle as configured), other DIDs stay DIDs."""
    parts = split_uri(uri)
    if parts is None or parts[1] != POST_NSID:
        return None
    did, _collection, rkey = parts
    text = record.get("text")
    kind: ObservationKind = "reply" if isinstance(record.get("reply"), dict) else "post"
    return Observation(
        platform=PLATFORM,
        native_id=uri,
        kind=kind,
        raw=raw_json({"uri": uri, "cid": cid, "record": record}),
        watcher=watcher,
        url=post_url(did, rkey),
        author_handle=author.handle,
        author_id=did,
        author_display_name=author.display_name,
        author_created_at=author.created_at,
        addressed_to=tuple(addressees.get(d, d) for d in addressed_dids(record)),
        text=text if isinstance(text, str) else "",
        posted_at=parse_time(record.get("createdAt")),
        # The CID is the record's own content hash: shown with the evidence in reports.
        capture_method=f"{capture_method}; record CID {cid}" if cid else capture_method,
    )


def account_observation(
    did: str, native_id: str, text: str, when: datetime | None, event_raw: bytes, watcher: str
) -> Observation:
    """An account event of a watched party (a handle change, a deactivation)."""
    return Observation(
        platform=PLATFORM,
        native_id=native_id,
        kind="account",
        raw=event_raw,
        watcher=watcher,
        url=f"https://bsky.app/profile/{did}",
        author_id=did,
        text=text,
        posted_at=when,
        capture_method="Bluesky Jetstream account event",
    )


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text).casefold()
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class NamePrefilter:
    """Cheap first look at whole-network posts: does the text possibly name or tag the
    protected person? Only such posts (and those addressing them) are kept, so posts of
    uninvolved people leave nothing in the store. Deliberately broad (case, accents and
    spacing folded); the matcher then decides with the full rules."""

    def __init__(self, terms: Iterable[str]) -> None:
        folded = {_fold(t).replace(" ", "") for t in terms}
        words = sorted((t for t in folded if len(t) >= 3), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(w) for w in words)) if words else None

    def __call__(self, text: str) -> bool:
        if self._pattern is None or not text:
            return False
        return self._pattern.search(_fold(text).replace(" ", "")) is not None
