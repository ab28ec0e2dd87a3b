"""Secret redaction: the one place that decides what of a secret-bearing string may be
shown. Used by watchers for their error messages and by the service for logs, CLI
output, stored errors and alert bodies.

* ``mask_url`` shows a plain web URL without its credentials: no userinfo, every query
  value masked, no fragment (which query parameters are secret is unknowable).
* ``url_secrets`` lists the parts of a configured URL that may be credentials.
* ``Redactor`` replaces known secret values in text we did not write (a library's
  exception message, a server's reason phrase) and masks every URL in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_plus, urlsplit

from watchers.toolkit.text import one_line

MASK = "***"
# Shorter values would mangle ordinary words; a 1–3 character token is no secret.
MIN_SECRET_LENGTH = 4

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def mask_url(url: str) -> str:
    """``url`` safe to show: no userinfo, every query value masked, no fragment.

    Private feeds carry their token in the userinfo or the query; which query
    parameters are secret is unknowable, so all their values are masked.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = ("***@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    masked = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query:
        pieces = (
            p.split("=", 1)[0] + "=***" if "=" in p else "***" for p in parts.query.split("&")
        )
        masked += "?" + "&".join(pieces)
    return masked


def url_secrets(url: str) -> frozenset[str]:
    """The parts of ``url`` that may be credentials: userinfo and query values."""
    parts = urlsplit(url)
    secrets = {parts.username or "", parts.password or "", parts.query}
    for piece in parts.query.split("&"):
        value = piece.split("=", 1)[-1]
        secrets.update((value, unquote_plus(value)))
    return frozenset(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every URL masked and every listed secret replaced by ``***``."""
    text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    return text


class Redactor:
    """Removes a watcher's secrets from text it did not write (library exception
    messages, a server's status phrase) before the text goes into a message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = frozenset(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)

    @classmethod
    def for_url(cls, url: str, *extra: str) -> Redactor:
        return cls(url_secrets(url) | frozenset(extra))

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def one_line(self, text: str, limit: int = 160) -> str:
        """The redacted text on one line, cut to ``limit``."""
        return one_line(self.redact(text), limit)

    def __call__(self, text: str) -> str:
        return self.one_line(text)
