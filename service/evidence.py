"""Canonical form, SHA-256 and hash chain of evidence records (see docs/evidence.md).

Kept free of the ORM so that verification and the export packet use exactly the same
code as capture, and so that a third party can re-implement it from the docs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

GENESIS_CHAIN = "0" * 64
# The one JSON encoder of hashed forms. ``json.dumps`` with these arguments builds the
# same encoder on every call; one instance encodes byte for byte the same, faster (#15).
_HASHED_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
CANONICAL_FIELDS = (
    "seq",
    "platform",
    "native_id",
    "version",
    "url",
    "author_handle",
    "author_id",
    "posted_at",
    "captured_at",
    "text",
    "raw_sha256",
)


def format_time(value: datetime | None) -> str | None:
    """UTC, whole seconds, ``2026-05-01T10:00:00Z``: the one timestamp form used in
    hashes, JSON and CSV."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime in evidence; use aware UTC datetimes")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate_to_second(value: datetime) -> datetime:
    """Evidence times are kept to the second, so that hashes recompute from JSON."""
    return value.astimezone(UTC).replace(microsecond=0)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The canonical form: a JSON object of exactly ``CANONICAL_FIELDS``, keys sorted,
    no whitespace, non-ASCII kept as UTF-8. Times must already be ``format_time`` strings.
    """
    missing = [name for name in CANONICAL_FIELDS if name not in record]
    if missing:
        raise ValueError(f"evidence record lacks canonical fields: {', '.join(missing)}")
    subset = {name: record[name] for name in CANONICAL_FIELDS}
    return _HASHED_JSON.encode(subset).encode("utf-8")


def record_sha256(record: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_bytes(record))


def chain_sha256(previous_chain: str, record_hash: str) -> str:
    """Each link covers the previous link: SHA-256 of the two hex digests joined."""
    return sha256_hex(f"{previous_chain}{record_hash}".encode("ascii"))


def text_fingerprint(text: str) -> str:
    """Hash of the text with formatting differences removed, so the same post seen
    through two sources (an RSS mirror and the API) is recognised as one."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return sha256_hex(folded.encode("utf-8"))


def authored_sha256(text: str, media: Sequence[str] = ()) -> str:
    """Identity of one version of a platform item: what its author wrote (the text,
    which holds the title and links, and the hashes of attached media).

    Not the endpoint that returned it (its ``kind``), its recipients list, the item's
    URL or the author's display name: none of these is an edit by the author, and in a
    court "version 2" says the author edited the post. Media are sorted: the order in
    which a platform lists attachments is not an edit either.
    """
    if not media:
        return _authored_text_sha256(text)
    return content_sha256({"identity": "authored/2", "media": sorted(media), "text": text})


@functools.lru_cache(maxsize=1024)
def _authored_text_sha256(text: str) -> str:
    # One poll asks for the same items' identity up to four times (the retention
    # marker, the dedup check before matching, again under the chain lock, and the
    # stored row); a poll's worth of recent answers is kept (#15).
    return content_sha256({"identity": "authored/2", "media": [], "text": text})


def content_sha256(fields: Mapping[str, Any]) -> str:
    """Identity of one version of a platform item: what the platform says about it,
    not when or how often we saw it (so re-polling never makes a new version)."""
    return sha256_hex(_HASHED_JSON.encode(fields).encode("utf-8"))
