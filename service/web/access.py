"""Who may see what: the logged-in user, their cases (another case answers 404, as if it
did not exist), their role, CSRF on every form, and page rendering with that context."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from service.settings import WebUser
from service.web.app import WebContext
from service.web.auth import WebSession

ROLE_RIGHTS = {
    "owner": {"read", "dismiss", "export"},
    "advocate": {"read", "dismiss", "export"},
    "viewer": {"read"},
}


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def context(request: Request) -> WebContext:
    found: WebContext = request.app.state.context
    return found


def session(request: Request) -> WebSession:
    found: WebSession = request.state.session
    return found


def current_user(request: Request) -> tuple[str, WebUser] | None:
    name = session(request).user
    if name is None:
        return None
    user = context(request).settings.web.users.get(name)
    # A user removed from the config is logged out at their next request.
    return (name, user) if user is not None else None


def require_user(request: Request) -> tuple[str, WebUser]:
    found = current_user(request)
    if found is None:
        query = request.url.query
        raise LoginRequired(request.url.path + (f"?{query}" if query else ""))
    return found


def require_case(request: Request, case_id: str) -> tuple[str, WebUser]:
    name, user = require_user(request)
    known = {case.id for case in context(request).settings.cases}
    if case_id not in user.cases or case_id not in known:
        raise HTTPException(404)
    return name, user


def require_right(user: WebUser, right: str) -> None:
    if right not in ROLE_RIGHTS[user.role]:
        raise HTTPException(403, f"A {user.role} account cannot {right}.")


async def checked_form(request: Request) -> FormData:
    form = await request.form()
    if not session(request).csrf_ok(form.get("csrf")):
        raise HTTPException(403, "This form has expired. Go back, reload the page and try again.")
    return form


def safe_next(value: object) -> str:
    # Only a path on this site: "//host" or "https://…" would send the user elsewhere.
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
        return value
    return "/"


def login_url(next_path: str) -> str:
    return "/login?next=" + quote(next_path, safe="")


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> Response:
    ctx = context(request)
    user = current_user(request)
    zone_case = values.get("case_id")

    def local(moment: datetime | None) -> str:
        if moment is None:
            return "—"
        zone = ctx.zone(zone_case) if isinstance(zone_case, str) else None
        shown = moment.astimezone(zone) if zone else moment
        return shown.strftime("%Y-%m-%d %H:%M %Z")

    return ctx.templates.TemplateResponse(
        request,
        template,
        {
            "csrf": session(request).csrf,
            "username": user[0] if user else None,
            "user": user[1] if user else None,
            "rights": ROLE_RIGHTS[user[1].role] if user else set(),
            "local": local,
            **values,
        },
        status_code=status_code,
    )
