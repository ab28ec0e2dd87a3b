"""The web view's ASGI app: context, middleware (session cookie, security headers),
templates and routes. Pages are in ``service.web.views``."""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from service.db import session_factory
from service.settings import Settings
from service.store import Store
from service.web.auth import SESSION_COOKIE, SESSION_MAX_AGE, LoginGuard, SessionCodec

Clock = Callable[[], datetime]
HERE = Path(__file__).parent

# No script at all, styles only from this server, nothing may frame the pages.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    # Evidence must not linger in shared or browser caches.
    "Cache-Control": "no-store",
}

# Bidirectional controls and invisible characters reorder or hide what is shown; in
# evidence they are made visible instead (U+202E shows as a marked "U+202E").
_HIDDEN_CHARS = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def visible(text: object) -> Markup:
    escaped = str(escape("" if text is None else str(text)))
    return Markup(  # noqa: S704 - built from escaped text only
        _HIDDEN_CHARS.sub(lambda m: f'<span class="ctl">U+{ord(m.group()):04X}</span>', escaped)
    )


@dataclasses.dataclass
class WebContext:
    settings: Settings
    reads: sessionmaker[Session]
    writes: sessionmaker[Session]
    store: Store
    clock: Clock
    guard: LoginGuard
    codec: SessionCodec
    templates: Jinja2Templates

    def zone(self, case_id: str) -> ZoneInfo:
        try:
            return self.settings.case(case_id).timezone
        except KeyError:
            return ZoneInfo("UTC")


def _templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["visible"] = visible
    env.filters["short"] = lambda value: str(value)[:8]
    return Jinja2Templates(env=env)


class _SessionAndHeaders(BaseHTTPMiddleware):
    def __init__(self, app: Callable[..., Awaitable[None]], context: WebContext) -> None:
        super().__init__(app)
        self.context = context

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        session = self.context.codec.loads(request.cookies.get(SESSION_COOKIE))
        request.state.session = session
        response = await call_next(request)
        if session.changed:
            response.set_cookie(
                SESSION_COOKIE,
                self.context.codec.dumps(session),
                max_age=int(SESSION_MAX_AGE.total_seconds()),
                httponly=True,
                samesite="strict",
                # Behind a TLS proxy the scheme comes from X-Forwarded-Proto (uvicorn).
                secure=request.url.scheme == "https",
                path="/",
            )
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def create_app(settings: Settings, engine: Engine, *, clock: Clock) -> Starlette:
    from service.web import views

    key = settings.web.secret_key
    context = WebContext(
        settings=settings,
        reads=session_factory(engine, readonly=True),
        writes=session_factory(engine),
        store=Store(engine),
        clock=clock,
        guard=LoginGuard(clock),
        codec=SessionCodec(key.get_secret_value() if key else secrets.token_urlsafe(48)),
        templates=_templates(),
    )
    routes = [
        *views.routes(),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=[r for r in routes if isinstance(r, Route | Mount)],
        middleware=[Middleware(_SessionAndHeaders, context=context)],
        exception_handlers=views.exception_handlers(),
    )
    app.state.context = context
    return app
