"""Secret redaction: the one place that decides what of a secret-bearing string may be
shown. Used by watchers for their error messages and by the service for logs, CLI
output, stored errors and alert bodies.

* ``mask_url`` shows a plain web URL without its credentials: no userinfo, every query
  value masked, no fragment (which query parameters are secret is unknowable).
* ``hide_password`` shows a URL with only its password masked (a database URL).
* ``url_secrets`` lists the parts of a configured web URL that may be credentials,
  a token-like path segment among them (``looks_like_token``).
* ``apprise_url_secrets`` / ``mask_apprise_url`` do the same for an Apprise URL; which
  of its parts are secret comes from Apprise's own metadata (``private`` tokens).
* ``Redactor`` replaces known secret values (also percent-encoded, and as the Basic
  credentials made of a user and password) and common credential patterns in text we
  did not write: a library's exception message, a server's reason phrase, a log line.

Only credential parts are masked: host names and ordinary words stay readable.
"""

from __future__ import annotations

import base64
import re
import sys
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit

from watchers.toolkit.apprise_meta import (
    apprise_url_secrets,
    mask_apprise_url,
    notify_schemes,
)
from watchers.toolkit.text import one_line

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "Redactor",
    "apprise_url_secrets",
    "basic_credentials",
    "hide_password",
    "looks_like_token",
    "mask_apprise_url",
    "mask_url",
    "redact",
    "register_secrets",
    "registered_secrets",
    "url_secrets",
]

MASK = "***"
# Shorter values would mangle ordinary words; a 1–3 character token is no secret.
MIN_SECRET_LENGTH = 4

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


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
    path = "/".join(MASK if looks_like_token(seg) else seg for seg in parts.path.split("/"))
    masked = f"{parts.scheme}://{netloc}{path}"
    if parts.query:
        pieces = (
            p.split("=", 1)[0] + "=***" if "=" in p else "***" for p in parts.query.split("&")
        )
        masked += "?" + "&".join(pieces)
    return masked


def hide_password(url: str) -> str:
    """``url`` with its password (``scheme://user:PASSWORD@host``) replaced by ``***``;
    user, host and path stay (a database URL names the account it logs in as)."""
    return _PASSWORD_IN_URL.sub(rf"\g<1>{MASK}@", url)


# A path segment that is a token (https://host/feed/8f14e45fceea167a5a36dedd4bea2543.xml,
# https://host/u/alex/private-3kd9x0QwZr7pLm2v): 16+ characters of letters and digits
# mixed, or 24+ of any letters, digits and -_. without a space. Words and slugs
# ("my-weekly-reading-list", "2026") keep their shape.
_TOKEN_CORE = re.compile(r"[A-Za-z0-9_-]{16,}")


def looks_like_token(segment: str) -> bool:
    """Whether a URL path segment (extension aside) is a credential-like token."""
    core = unquote(segment).rsplit(".", 1)[0]
    if not _TOKEN_CORE.fullmatch(core):
        return False
    runs = [run for run in re.split(r"[-_]", core) if run]
    mixed = any(
        re.search(r"[0-9]", run) and re.search(r"[A-Za-z]", run) and len(run) >= 12 for run in runs
    )
    return mixed or any(len(run) >= 24 for run in runs)


def basic_credentials(user: str, password: str) -> str:
    """What ``Authorization: Basic`` carries for this pair: base64 of ``user:password``."""
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def url_secrets(url: str) -> frozenset[str]:
    """The parts of ``url`` that may be credentials: the password (also as the Basic
    credentials an HTTP client makes of it), a user name that stands alone (a token
    given as ``https://TOKEN@host``) and query values. A user name beside a password
    names an account, and is no secret."""
    parts = urlsplit(url)
    secrets = {parts.query}
    if parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password)
        secrets.update((parts.password, password, basic_credentials(user, password)))
    elif parts.username:
        user = unquote(parts.username)
        # A lone token goes out as Basic base64("TOKEN:").
        secrets.update((parts.username, user, basic_credentials(user, "")))
    for segment in parts.path.split("/"):
        if looks_like_token(segment):
            core = unquote(segment).rsplit(".", 1)[0]
            secrets.update((segment, unquote(segment), core))
    for piece in parts.query.split("&"):
        value = piece.split("=", 1)[-1]
        secrets.update((value, unquote_plus(value)))
    return frozenset(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)


# --- secrets this process holds ------------------------------------------------------------

_registered: set[str] = set()
_registered_lock = threading.Lock()
_generation = 0


def register_secrets(secrets: Iterable[str]) -> None:
    """Remember secrets this process holds (a watcher's URL token), so that the
    service's log filter masks them in what third-party libraries log."""
    global _generation
    new = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
    with _registered_lock:
        if not new <= _registered:
            _registered.update(new)
            _generation += 1


def registered_secrets() -> frozenset[str]:
    with _registered_lock:
        return frozenset(_registered)


# --- patterns of credentials in free text -----------------------------------------------

# Every repetition before a fixed part is bounded: an unbounded one makes a long run of
# word characters (a base64 blob in a debug line) cost quadratic time.
_CREDENTIAL_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Userinfo password in any URL: scheme://user:PASSWORD@host.
    (
        re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://[^\s:/@'\"]{0,200}:)[^\s@/'\"]+@"),
        rf"\g<1>{MASK}@",
    ),
    # Authorization headers and bare bearer/basic credentials.
    (
        re.compile(r"(?i)\b(authorization['\"]?\s*[:=]\s*['\"]?)[^\r\n'\",}]+"),
        rf"\g<1>{MASK}",
    ),
    # RFC 6750 token characters; 16+ of them, so "bearer authentication" stays readable.
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{16,}"), rf"\g<1>\g<2>{MASK}"),
    # key=value / "key": "value" where the key ends in a credential word
    # (access_token=, client_secret=, password=, x_bearer_token:, api_key=, …); the
    # match starts at that word, whatever precedes it.
    (
        re.compile(
            r"(?i)((?:token|secret|passw(?:or)?d|passwd|api[_-]?key|apikey|"
            r"private[_-]?key|session[_-]?id|cookie|credentials?))"
            r"(['\"]?\s*[=:]\s*['\"]?)(?!\*\*\*)[^\s&'\",;)}\]]+"
        ),
        rf"\g<1>\g<2>{MASK}",
    ),
)
_notify_url_pattern: re.Pattern[str] | None = None
_loading = threading.local()


def _notify_url() -> re.Pattern[str] | None:
    """An Apprise URL in free text: everything after a scheme whose URLs carry secrets
    (Apprise's own list) is masked, since its parts cannot be told apart there.
    None while Apprise itself is being imported (its import may log)."""
    global _notify_url_pattern
    if _notify_url_pattern is None:
        loading = sys.modules.get("apprise")
        if getattr(_loading, "busy", False) or (loading and not hasattr(loading, "Apprise")):
            return None  # a record Apprise logs while its metadata is being read
        _loading.busy = True
        try:
            schemes = sorted(map(re.escape, notify_schemes()), key=len, reverse=True)
        finally:
            _loading.busy = False
        _notify_url_pattern = re.compile(rf"(?i)\b((?:{'|'.join(schemes)})://)[^\s'\"<>]+")
    return _notify_url_pattern


def _variants(secret: str) -> set[str]:
    # A secret also leaks percent-encoded (as a URL's password) and base64-encoded (a
    # server echoing the Authorization it was sent, a bearer token encoded again).
    raw = secret.encode("utf-8", "surrogatepass")
    encoded = {base64.b64encode(raw).decode("ascii"), base64.urlsafe_b64encode(raw).decode("ascii")}
    return {secret, quote(secret, safe=""), quote_plus(secret)} | {
        form for value in encoded for form in (value, value.rstrip("="))
    }


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every URL masked and every listed secret replaced by ``***``."""
    return Redactor(secrets).redact(text)


class Redactor:
    """Removes secrets from text we did not write before it is shown, stored or sent.

    ``mask_urls``: every web URL in the text is shown as ``mask_url`` shows it (for
    error messages). Off for log lines, where a URL keeps its shape and only its
    password goes. ``apprise_urls``: Apprise URLs are masked after their scheme (for
    the service: it loads Apprise's metadata). ``registered``: also the secrets of
    ``register_secrets``."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        mask_urls: bool = True,
        apprise_urls: bool = False,
        registered: bool = False,
    ) -> None:
        self._own = frozenset(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)
        self._mask_urls = mask_urls
        self._apprise_urls = apprise_urls
        self._registered = registered
        self._compiled_at = -1
        self._exact: re.Pattern[str] | None = None

    @classmethod
    def for_url(cls, url: str, *extra: str) -> Redactor:
        return cls(url_secrets(url) | frozenset(extra))

    @property
    def secrets(self) -> frozenset[str]:
        return self._own | registered_secrets() if self._registered else self._own

    def _exact_pattern(self) -> re.Pattern[str] | None:
        generation = _generation if self._registered else 0
        if generation != self._compiled_at:
            variants = set().union(*(_variants(s) for s in self.secrets))
            # Longest first so that a secret containing another is masked whole.
            ordered = sorted(variants, key=len, reverse=True)
            self._exact = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            self._compiled_at = generation
        return self._exact

    def redact(self, text: str) -> str:
        exact = self._exact_pattern()
        if exact is not None:
            text = exact.sub(MASK, text)
        # Only a text with "://" can hold what the pattern masks: asking first spares
        # the service Apprise's import (its metadata builds the pattern) until a log
        # line holds a URL at all, often never (#15).
        notify_url = _notify_url() if self._apprise_urls and "://" in text else None
        if notify_url is not None:
            text = notify_url.sub(rf"\g<1>{MASK}", text)
        if self._mask_urls:
            text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
        for pattern, replacement in _CREDENTIAL_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def one_line(self, text: str, limit: int = 160) -> str:
        """The redacted text on one line, cut to ``limit``."""
        return one_line(self.redact(text), limit)

    def __call__(self, text: str) -> str:
        return self.one_line(text)
