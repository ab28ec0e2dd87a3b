"""Accounts of the web view: argon2id password hashes, TOTP, login lockout, sessions.

Sessions live in a signed cookie (no server-side table): the user name, a CSRF token
and the login time. The signature key comes from ``web.secret_key`` or is random per
start, which simply logs everyone out on a restart.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from service.settings import WebUser

Clock = Callable[[], datetime]

SESSION_COOKIE = "nocontact_session"
SESSION_MAX_AGE = timedelta(hours=12)
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)

_HASHER = PasswordHasher()  # argon2id with the library's current parameters
# Checked against when the user name is unknown, so that the answer takes as long.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_ok(user: WebUser | None, password: str) -> bool:
    try:
        return _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password) and bool(user)
    except (VerificationError, InvalidHashError):
        return False


def totp_ok(user: WebUser, code: str, now: datetime) -> bool:
    if user.totp_secret is None:
        return True
    totp = pyotp.TOTP(user.totp_secret.get_secret_value())
    # One step either side: phones drift.
    return totp.verify(code.strip().replace(" ", ""), for_time=now, valid_window=1)


class LoginGuard:
    """Refuses logins for a name or an address after ``MAX_FAILURES`` failures within
    ``FAILURE_WINDOW``, for ``LOCKOUT``. In memory: one web process per store."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._failures: dict[str, list[datetime]] = {}
        self._locked_until: dict[str, datetime] = {}

    def locked_for(self, keys: list[str]) -> timedelta | None:
        now = self._clock()
        waits = [self._locked_until[k] - now for k in keys if self._locked_until.get(k, now) > now]
        return max(waits) if waits else None

    def failed(self, keys: list[str]) -> None:
        now = self._clock()
        for key in keys:
            recent = [t for t in self._failures.get(key, []) if now - t < FAILURE_WINDOW]
            recent.append(now)
            self._failures[key] = recent
            if len(recent) >= MAX_FAILURES:
                self._locked_until[key] = now + LOCKOUT
                self._failures[key] = []

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)


@dataclasses.dataclass
class WebSession:
    csrf: str
    user: str | None = None
    login_at: float | None = None
    changed: bool = False

    @classmethod
    def fresh(cls) -> WebSession:
        return cls(csrf=secrets.token_urlsafe(32), changed=True)

    def csrf_ok(self, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token, self.csrf)

    def log_in(self, user: str, now: datetime) -> None:
        # A new token at login: a token seen before logging in is worth nothing after.
        self.csrf = secrets.token_urlsafe(32)
        self.user = user
        self.login_at = now.timestamp()
        self.changed = True

    def log_out(self) -> None:
        self.csrf = secrets.token_urlsafe(32)
        self.user = None
        self.login_at = None
        self.changed = True


class SessionCodec:
    def __init__(self, key: str) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt="nocontact-web-session")

    def dumps(self, session: WebSession) -> str:
        data: dict[str, Any] = {"c": session.csrf, "u": session.user, "t": session.login_at}
        return self._serializer.dumps(data)

    def loads(self, cookie: str | None) -> WebSession:
        if not cookie:
            return WebSession.fresh()
        try:
            data = self._serializer.loads(cookie, max_age=int(SESSION_MAX_AGE.total_seconds()))
        except BadSignature:
            return WebSession.fresh()
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return WebSession.fresh()
        user = data.get("u")
        login_at = data.get("t")
        return WebSession(
            csrf=data["c"],
            user=user if isinstance(user, str) else None,
            login_at=login_at if isinstance(login_at, float | int) else None,
        )
