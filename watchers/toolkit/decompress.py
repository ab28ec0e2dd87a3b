"""A response body collected within a byte limit, gzip/deflate inflated by us.

httpx inflates whole chunks, so one 64 KiB chunk of a compression bomb would become
tens of megabytes before any size check could run; here the inflater's output is
capped at the limit as it is produced.
"""

from __future__ import annotations

import zlib
from typing import Any


class TooBig(Exception):
    """The body (after decompression) passed the limit."""


class UndecodableBody(Exception):
    """The body's Content-Encoding is unknown or its data is corrupt."""


class BoundedBody:
    """Collects a body of at most ``limit`` bytes after undoing ``content_encoding``."""

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
            raise UndecodableBody(f"an unsupported Content-Encoding ({', '.join(codings)[:40]})")

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
                    raise UndecodableBody("a corrupt compressed body") from exc
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
                raise UndecodableBody("a truncated compressed body") from exc
        return bytes(self._data)

    def _append(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > self._limit:
            raise TooBig
