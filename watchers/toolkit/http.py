"""A bounded HTTP client for watchers, on httpx's public API.

Whatever a server does, one fetch ends: connect/read/write timeouts, a wall-clock
deadline over every socket operation of the fetch (a server dripping a byte at a time
cannot hold the watcher), a byte limit that also caps gzip/deflate inflation, a
redirect limit, and redirects only to http(s) (``file:``, ``data:`` … are refused with
a one-line error). Conditional GET through ``Validators`` (ETag / Last-Modified).

Every failure is a watcher error (``watchers.base``) with a one-line, secret-free
message that starts with the caller's ``what`` ("feed at https://…", already masked).

The deadline lives in the network backend: httpx takes a custom transport
(``httpx.BaseTransport``) and httpcore's ``ConnectionPool`` a custom network backend,
both public; each socket operation's timeout is clamped to the time left.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from watchers.base import TransientError, WatcherConfigError
from watchers.toolkit.decompress import BoundedBody, TooBig, UndecodableBody
from watchers.toolkit.errors import status_error
from watchers.toolkit.redact import Redactor, register_secrets

REDIRECT_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one fetch, in seconds and bytes."""

    timeout: float  # connect, read and write, each
    deadline: float  # the whole fetch: redirects, headers, body
    max_bytes: int  # the body after Content-Encoding is undone
    max_redirects: int = 5


@dataclass(frozen=True, slots=True)
class Validators:
    """What a server gave to make the next GET conditional."""

    etag: str | None = None
    last_modified: str | None = None

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Validators:
        etag, modified = state.get("etag"), state.get("last_modified")
        return cls(
            etag if isinstance(etag, str) and etag else None,
            modified if isinstance(modified, str) and modified else None,
        )

    def as_state(self) -> dict[str, str]:
        found = {"etag": self.etag, "last_modified": self.last_modified}
        return {key: value for key, value in found.items() if value}

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@dataclass(frozen=True, slots=True)
class Fetched:
    body: bytes
    status: int | None  # None for a local file
    headers: Mapping[str, str]
    validators: Validators
    final_url: str | None  # set when redirects led elsewhere


# --- a wall-clock deadline over every socket operation -----------------------------------


class _Deadline:
    """The end of the current fetch, per thread; socket timeouts are clamped to it."""

    def __init__(self) -> None:
        self._local = threading.local()

    def start(self, seconds: float) -> None:
        self._local.end = time.monotonic() + seconds

    def clear(self) -> None:
        self._local.end = None

    def passed(self) -> bool:
        end: float | None = getattr(self._local, "end", None)
        return end is not None and time.monotonic() >= end

    def clamp(self, timeout: float | None, error: type[Exception]) -> float | None:
        end: float | None = getattr(self._local, "end", None)
        if end is None:
            return timeout
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise error("fetch deadline exceeded")
        return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        clamped = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, clamped), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: _Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        clamped = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, clamped, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        clamped = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_unix_socket(path, clamped, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpcore's errors as httpx's, most specific first (what httpx's own transport does).
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def _as_httpx(exc: Exception) -> Exception:
    for source, target in _ERRORS:
        if isinstance(exc, source):
            return target(str(exc))
    return exc


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except httpcore.TimeoutException as exc:  # the subclasses, too
            raise _as_httpx(exc) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise _as_httpx(exc) from exc

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class _DeadlineTransport(httpx.BaseTransport):
    """httpx's transport contract over an httpcore pool whose sockets obey the deadline.
    Proxies from the environment are not used."""

    def __init__(self, deadline: _Deadline) -> None:
        # No pool bound of its own: the service bounds polls in flight (max_concurrent_polls).
        self._connections = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=_DeadlineBackend(deadline),
            max_connections=None,
            max_keepalive_connections=64,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = self._connections.handle_request(core)
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise _as_httpx(exc) from exc
        except httpcore.UnsupportedProtocol as exc:
            raise _as_httpx(exc) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),  # type: ignore[arg-type]  # iterable of bytes
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._connections.close()


class _SharedTransport(httpx.BaseTransport):
    """Every client's door to one process-wide pool (#15): one TLS context (loading the CA
    bundle costs time and memory per client) and keep-alive connections reused across
    watchers. Only connections are shared: each ``BoundedClient`` keeps its own cookies,
    headers, timeouts and redirect rules, and every request carries its own credentials.
    Closing one client leaves the pool to the others."""

    _lock = threading.Lock()
    _pool: _DeadlineTransport | None = None

    @classmethod
    def pool(cls) -> _DeadlineTransport:
        with cls._lock:
            if cls._pool is None:
                cls._pool = _DeadlineTransport(_SHARED_DEADLINE)
            return cls._pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.pool().handle_request(request)

    def close(self) -> None:
        pass  # the pool lives as long as the process


# One deadline for the shared pool's sockets: it is per thread, and a thread runs one
# fetch at a time, so clients sharing it never see each other's deadline.
_SHARED_DEADLINE = _Deadline()


# --- the client ---------------------------------------------------------------------------


class _RefusedRedirect(Exception):
    """A redirect to something other than http(s): ``file:``, ``data:``, …"""


def _refuse_odd_redirects(response: httpx.Response) -> None:
    """Runs before httpx builds the next request, so a ``data:`` Location never reaches
    httpx's URL parser (which would fail with an unhelpful InvalidURL)."""
    if not response.has_redirect_location:
        return
    location = response.headers.get("Location", "").strip()
    scheme = location.split(":", 1)[0].lower() if ":" in location.split("/", 1)[0] else ""
    if scheme and scheme not in REDIRECT_SCHEMES:
        raise _RefusedRedirect(scheme[:20])


class BoundedClient:
    """GETs within ``Limits``; translates every failure into a watcher error."""

    def __init__(
        self,
        limits: Limits,
        *,
        user_agent: str,
        redactor: Redactor,
        noun: str = "source",
        auth_hint: str = "check the credentials",
    ) -> None:
        self.limits = limits
        # What a 410 and a 401/403 say: a watcher names its own source and credentials.
        self._noun, self._auth_hint = noun, auth_hint
        self._scrub = redactor
        # The service's log filter masks what httpx/httpcore log with these too.
        register_secrets(redactor.secrets)
        self._deadline = _SHARED_DEADLINE
        self._client = httpx.Client(
            transport=_SharedTransport(),
            timeout=httpx.Timeout(limits.timeout),
            follow_redirects=True,
            max_redirects=limits.max_redirects,
            event_hooks={"response": [_refuse_odd_redirects]},
            # Only what BoundedBody can inflate within the byte limit.
            headers={"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate"},
        )

    def close(self) -> None:
        self._client.close()

    def get(self, url: str, *, what: str, validators: Validators | None = None) -> Fetched | None:
        """The body of ``url``, or None when the server says it has not changed (304).
        ``what`` starts every error message ("feed at https://…", masked)."""
        headers = validators.headers() if validators is not None else {}
        self._deadline.start(self.limits.deadline)
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                return self._read(response, url, what)
        except httpx.TimeoutException as exc:
            raise self._timeout(exc, what) from exc
        except httpx.TooManyRedirects as exc:
            raise TransientError(
                f"{what} redirected more than {self.limits.max_redirects} times (a redirect loop?)"
            ) from exc
        except _RefusedRedirect as exc:
            raise TransientError(
                f"{what} failed: redirect to an unsupported protocol ({exc}:); "
                "only http and https redirects are followed"
            ) from None
        except httpx.ConnectError as exc:
            raise TransientError(f"{what} is unreachable: {self._scrub(str(exc))}") from exc
        except httpx.RequestError as exc:
            reason = self._scrub(str(exc)) or type(exc).__name__
            raise TransientError(f"{what} failed: {reason}") from exc
        finally:
            self._deadline.clear()

    def status(self, url: str, *, what: str) -> int:
        """The HTTP status ``url`` answers (its body is not read): for re-checks, where
        404 and 410 are answers, not failures. Transport failures raise as in ``get``."""
        self._deadline.start(self.limits.deadline)
        try:
            with self._client.stream("GET", url) as response:
                return response.status_code
        except httpx.TimeoutException as exc:
            raise self._timeout(exc, what) from exc
        except (httpx.RequestError, _RefusedRedirect) as exc:
            reason = self._scrub(str(exc)) or type(exc).__name__
            raise TransientError(f"{what} failed: {reason}") from exc
        finally:
            self._deadline.clear()

    def _timeout(self, exc: httpx.TimeoutException, what: str) -> TransientError:
        if self._deadline.passed():
            return TransientError(f"{what} took longer than the {self.limits.deadline:g}s deadline")
        kind = "read"
        if isinstance(exc, httpx.ConnectTimeout):
            kind = "connect"
        elif isinstance(exc, httpx.WriteTimeout):
            kind = "write"
        return TransientError(f"{what} timed out ({kind} timeout {self.limits.timeout:g}s)")

    def _read(self, response: httpx.Response, url: str, what: str) -> Fetched | None:
        if response.status_code == 304:
            return None
        error = status_error(
            response.status_code,
            response.reason_phrase,
            response.headers,
            what=what,
            scrub=self._scrub,
            noun=self._noun,
            auth_hint=self._auth_hint,
        )
        if error is not None:
            raise error
        announced = response.headers.get("Content-Length", "")
        if announced.isdigit() and int(announced) > self.limits.max_bytes:
            raise too_big(what, self.limits.max_bytes, f"{int(announced)} bytes announced")
        data = _bounded(response.iter_raw(), response.headers, self.limits.max_bytes, what)
        final = str(response.url)
        return Fetched(
            body=data,
            status=response.status_code,
            headers=response.headers,
            validators=Validators(
                response.headers.get("ETag"), response.headers.get("Last-Modified")
            ),
            final_url=final if response.history and final != url else None,
        )


def _bounded(chunks: Iterable[bytes], headers: Mapping[str, str], limit: int, what: str) -> bytes:
    try:
        body = BoundedBody(headers.get("Content-Encoding", ""), limit)
        for chunk in chunks:
            body.feed(chunk)
        return body.finish()
    except TooBig:
        raise too_big(what, limit, "body still arriving") from None
    except UndecodableBody as exc:
        raise TransientError(f"{what} sent {exc}") from None


def too_big(what: str, limit: int, detail: str) -> TransientError:
    return TransientError(f"{what} is larger than max_bytes={limit} ({detail}); download aborted")


# --- local files (file: URLs) -------------------------------------------------------------


def file_path(url: str) -> Path:
    """The local path of a ``file:`` URL (``file:///abs/feed.xml`` or ``file:feed.xml``)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError("a file: URL names a file on this machine (file:///path/feed.xml)")
    return Path(unquote(parts.path))


def read_file(url: str, *, max_bytes: int, what: str, base: Path | None = None) -> Fetched:
    """A local file read within the same byte limit as a download."""
    path = file_path(url)
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise WatcherConfigError(f"{what}: no such file; check the path") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TransientError(f"{what} cannot be read: {reason}") from None
    if len(data) > max_bytes:
        raise too_big(what, max_bytes, "file")
    return Fetched(data, None, {}, Validators(), None)
