"""What of an Apprise URL is secret, from Apprise's own metadata.

``Apprise().details()`` lists, per plugin, its URL tokens and arguments, and marks the
credentials ``private`` (a Telegram bot token, a Pushover user key, a password). Those
values, read from the plugin Apprise builds of the URL, are the secrets; host names,
ports and ordinary path parts are not. Two additions Apprise does not mark: HTTP
header arguments (``+Authorization=…``) and secret-looking argument names, and the
topic of a public ntfy.sh URL (whoever knows it reads the alerts).

Apprise is imported lazily and its metadata read once: watchers stay light, and only
the service (alert routes, logs) pays for it. Re-exported by ``watchers.toolkit.redact``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

MASK = "***"
_MIN_LENGTH = 4
# Argument names that hold credentials whatever the plugin says.
_SECRET_KEY = re.compile(
    r"pass|pwd|secret|token|key|auth|sig|cred|bearer|session|cookie|otp|pin", re.IGNORECASE
)
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I)
# Schemes of plain web and local URLs: never masked whole in free text.
_WEB_SCHEMES = frozenset({"http", "https", "file", "ftp", "ws", "wss"})


def _protocols(schema: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("protocols", "secure_protocols"):
        value = schema.get(key) or ()
        found += [value] if isinstance(value, str) else list(value)
    return [p.lower() for p in found]


@functools.cache
def _private_names() -> dict[str, frozenset[str]]:
    """scheme → the plugin attributes that hold its ``private`` tokens and arguments."""
    import apprise  # lazily: a heavy import only the service needs

    names: dict[str, frozenset[str]] = {}
    for schema in apprise.Apprise().details().get("schemas", []):
        details = schema.get("details") or {}
        private = {
            str(spec.get("map_to") or name)
            for group in ("tokens", "args")
            for name, spec in (details.get(group) or {}).items()
            if spec.get("private")
        }
        for protocol in _protocols(schema):
            names[protocol] = frozenset(private)
    return names


def notify_schemes() -> frozenset[str]:
    """Apprise schemes whose URLs carry credentials (plain web schemes excluded)."""
    return frozenset(s for s, names in _private_names().items() if names) - _WEB_SCHEMES


def _instantiate(url: str) -> Any:
    import apprise

    # suppress_exceptions: an unusable URL is None, never an exception whose message
    # might quote the URL. Apprise's own log lines pass the service's log filter.
    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


def _query_pairs(query: str) -> list[tuple[str, str]]:
    # Not parse_qsl: it turns Apprise's "+Header" keys into " Header".
    pairs = []
    for item in query.split("&"):
        if item:
            key, _, value = item.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


def _secret_key(key: str) -> bool:
    # "+Name" keys are HTTP headers (json://, form://...): often Authorization.
    return key.startswith("+") or bool(_SECRET_KEY.search(key))


def _looks_like_host(host: str) -> bool:
    if host == "localhost" or _HOSTNAME.match(host):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_cloud_ntfy(plugin: Any) -> bool:
    return getattr(plugin, "mode", None) == "cloud" and "ntfy" in _protocols_of(plugin)


def _protocols_of(plugin: Any) -> set[str]:
    found: set[str] = set()
    for key in ("protocol", "secure_protocol"):
        found.update(p.lower() for p in _strings(getattr(plugin, key, None)))
    return found


def _plugin_secrets(plugin: Any, scheme: str) -> set[str]:
    found: set[str] = set()
    for name in _private_names().get(scheme, frozenset()):
        found.update(_strings(getattr(plugin, name, None)))
    if _is_cloud_ntfy(plugin):
        found.update(_strings(getattr(plugin, "topics", None)))
    return found


def _unparsed_secrets(url: str) -> set[str]:
    """For a URL no Apprise plugin takes: long opaque user names and path segments are
    tokens (webhook and bot tokens), and so is a "host" that is no host name."""
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    found = {seg for seg in [parts.username or "", *parts.path.split("/")] if len(seg) >= 16}
    if hostname and not _looks_like_host(hostname):
        found.add(hostname)
    return found


def apprise_url_secrets(url: str) -> frozenset[str]:
    """Every secret an Apprise URL holds: its password (also as Basic credentials), its
    private tokens per Apprise, header and secret-named arguments, and the URL itself
    when it holds any of these."""
    from watchers.toolkit.redact import basic_credentials  # (it re-exports this module)

    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return frozenset({url})
    found: set[str] = set()
    if password is not None:
        found.add(unquote(password))
        found.add(basic_credentials(unquote(user or ""), unquote(password)))
    found.update(value for key, value in _query_pairs(parts.query) if _secret_key(key))
    plugin = _instantiate(url)
    if plugin is None:
        found |= _unparsed_secrets(url)
    else:
        found |= _plugin_secrets(plugin, parts.scheme.lower())
    found = {s for s in found if len(s) >= _MIN_LENGTH}
    if found:
        found.add(url)
    return frozenset(found | {quote(s, safe="") for s in found})


def _abbrev(value: str) -> str:
    # Apprise's own privacy style: first and last character only.
    return f"{value[0]}...{value[-1]}" if len(value) >= 6 else MASK


def _mask_unparsed(url: str) -> str:
    """Conservative masking for URLs Apprise does not understand: keep the scheme and
    a recognisable host, abbreviate everything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    netloc = host if _looks_like_host(host) else (_abbrev(host) if host else "")
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.username:
        user = _abbrev(parts.username) + (f":{MASK}" if parts.password is not None else "")
        netloc = f"{user}@{netloc}"
    path = "/".join(_abbrev(seg) if seg else "" for seg in parts.path.split("/"))
    query = "&".join(f"{quote(k, safe='+')}={MASK}" for k, _ in _query_pairs(parts.query))
    return f"{parts.scheme or '?'}://{netloc}{path}" + (f"?{query}" if query else "")


def _privacy_url(plugin: Any, original: str) -> str:
    parts = urlsplit(str(plugin.url(privacy=True)))
    path, netloc = parts.path, parts.netloc
    if _is_cloud_ntfy(plugin):
        netloc = _abbrev(netloc) if netloc else ""
        path = "/".join(_abbrev(seg) if seg else "" for seg in path.split("/"))
    # Apprise lists every default option; keep only what the user wrote, with
    # Apprise's (privacy) value, and mask secret-looking ones on top.
    shown = dict(_query_pairs(parts.query))
    query = []
    for key in dict.fromkeys(k for k, _ in _query_pairs(urlsplit(original).query)):
        if key in shown:
            value = MASK if _secret_key(key) else shown[key]
            query.append(f"{quote(key, safe='+')}={quote(value, safe='@:/.*')}")
    return urlunsplit((parts.scheme, netloc, path, "&".join(query), ""))


def mask_apprise_url(url: str) -> str:
    """An Apprise URL as it may be printed, logged and stored: Apprise's privacy form
    (or a conservative one), with every secret of ``apprise_url_secrets`` masked."""
    plugin = _instantiate(url)
    masked = _mask_unparsed(url) if plugin is None else _privacy_url(plugin, url)
    for secret in sorted(apprise_url_secrets(url) - {url}, key=len, reverse=True):
        masked = masked.replace(secret, MASK)
    return masked
