"""The pages: login, cases, timeline, violation, raw download, status, export."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from service.access_log import log_access
from service.db import StoreError
from service.health import check_health
from service.marks import MarkKind
from service.settings import WebUser
from service.show import ViolationNotFound, resolve_id
from service.web import data, packet
from service.web.access import (
    LoginRequired,
    checked_form,
    context,
    current_user,
    login_url,
    render,
    require_case,
    require_right,
    require_user,
    safe_next,
    session,
)
from service.web.auth import password_ok, totp_ok

log = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_REASON = 500
_DURATION = re.compile(r"^(\d{1,4})([hdw])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
BAD_SINCE = "Since: write a date as YYYY-MM-DD (e.g. 2026-03-01) or a duration such as 7d."


# -- login


def login_page(request: Request) -> Response:
    if current_user(request) is not None:
        return RedirectResponse("/", status_code=303)
    return render(request, "login.html", next=safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    form = await checked_form(request)
    ctx = context(request)
    name = str(form.get("username", "")).strip()
    next_path = safe_next(form.get("next"))
    client = request.client.host if request.client else "?"
    keys = [f"user:{name.casefold()}", f"addr:{client}"]
    locked = ctx.guard.locked_for(keys)
    if locked is not None:
        minutes = max(1, round(locked.total_seconds() / 60))
        message = f"Too many failed attempts. Try again in {minutes} minute(s)."
        return render(request, "login.html", 429, error=message, next=next_path)
    user = ctx.settings.web.users.get(name)
    good = await run_in_threadpool(password_ok, user, str(form.get("password", "")))
    if not good or user is None or not totp_ok(user, str(form.get("code", "")), ctx.clock()):
        ctx.guard.failed(keys)
        message = "Wrong name, password or code."
        return render(request, "login.html", 401, error=message, next=next_path)
    ctx.guard.succeeded(keys)
    session(request).log_in(name, ctx.clock())
    return RedirectResponse(next_path, status_code=303)


async def logout(request: Request) -> Response:
    await checked_form(request)
    session(request).log_out()
    return RedirectResponse("/login", status_code=303)


# -- cases and timeline


def _watcher_states(request: Request, case_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    ctx = context(request)
    views = {view.name: view for view in ctx.store.watcher_statuses()}
    states: dict[str, list[tuple[str, str]]] = {case_id: [] for case_id in case_ids}
    for watcher in ctx.settings.watchers:
        view = views.get(watcher.display_name)
        if view is None:
            state = "not polled yet"
        elif view.disabled_reason:
            state = "disabled"
        elif view.consecutive_failures:
            state = "failing"
        else:
            state = "ok"
        for case_id in case_ids:
            if watcher.cases is None or case_id in watcher.cases:
                states[case_id].append((watcher.display_name, state))
    return states


def cases_page(request: Request) -> Response:
    _, user = require_user(request)
    ctx = context(request)
    case_ids = [case.id for case in ctx.settings.cases if case.id in user.cases]
    summaries = data.case_summaries(ctx.reads, case_ids, ctx.clock())
    return render(
        request, "cases.html", summaries=summaries, watchers=_watcher_states(request, case_ids)
    )


def _since(value: str, now: datetime) -> datetime | None:
    if not value:
        return None
    duration = _DURATION.match(value)
    if duration:
        return now - int(duration.group(1)) * _UNITS[duration.group(2)]
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise HTTPException(400, BAD_SINCE) from None


def timeline_page(request: Request) -> Response:
    case_id = request.path_params["case_id"]
    require_case(request, case_id)
    ctx = context(request)
    query = request.query_params
    filters = data.Filters(
        since=_since(query.get("since", "").strip(), ctx.clock()),
        kind=query.get("kind") or None,
        platform=query.get("platform") or None,
        # As `timeline --all`: dismissed violations and hits outside the order period.
        include_outside=query.get("all") == "1",
        include_dismissed=query.get("all") == "1",
    )
    rows, next_key = data.timeline_page(
        ctx.store, ctx.reads, case_id, filters, query.get("after") or None, PAGE_SIZE
    )
    next_query = {**dict(query), "after": next_key} if next_key else None
    return render(
        request,
        "timeline.html",
        case_id=case_id,
        rows=rows,
        query=dict(query),
        next_query=next_query,
        platforms=sorted({w.type for w in ctx.settings.watchers}),
    )


# -- one violation


def _allowed_violation(request: Request, violation_id: str) -> tuple[str, WebUser, str]:
    ctx = context(request)
    name, user = require_user(request)
    case_id = data.violation_case(ctx.reads, violation_id)
    if case_id is None:
        raise HTTPException(404)
    require_case(request, case_id)
    return name, user, case_id


def _resolve(request: Request, given: str) -> str:
    """The full id: a unique start of one, as the CLI's tables print it, also leads there."""
    require_user(request)
    with context(request).reads() as session:
        try:
            return resolve_id(session, given)
        except ViolationNotFound:
            raise HTTPException(404) from None


def _revealed(request: Request, user: WebUser, detail: data.ViolationDetail) -> set[int]:
    seqs = {version.seq for _, versions in detail.items for version in versions}
    asked = request.query_params.getlist("show")
    if user.show_content or "all" in asked:
        return seqs
    return {int(value) for value in asked if value.isdigit()} & seqs


def violation_page(request: Request) -> Response:
    given = request.path_params["violation_id"]
    violation_id = _resolve(request, given)
    name, user, case_id = _allowed_violation(request, violation_id)
    if violation_id != given:
        return RedirectResponse(f"/v/{violation_id}", status_code=303)
    ctx = context(request)
    detail = data.violation_detail(ctx.reads, violation_id)
    if detail is None:
        raise HTTPException(404)
    revealed = _revealed(request, user, detail)
    if revealed:
        log_access(
            ctx.writes,
            at=ctx.clock(),
            username=name,
            case_id=case_id,
            action="text",
            violation_id=violation_id,
            seqs=sorted(revealed),
        )
        # The list below the evidence then includes this very view.
        detail = data.violation_detail(ctx.reads, violation_id) or detail
    return render(
        request,
        "violation.html",
        case_id=case_id,
        detail=detail,
        v=detail.violation,
        revealed=revealed,
    )


def raw_download(request: Request) -> Response:
    violation_id = request.path_params["violation_id"]
    name, _, case_id = _allowed_violation(request, violation_id)
    ctx = context(request)
    item = data.evidence_in_violation(ctx.reads, violation_id, request.path_params["seq"])
    if item is None:
        raise HTTPException(404)
    log_access(
        ctx.writes,
        at=ctx.clock(),
        username=name,
        case_id=case_id,
        action="raw",
        violation_id=violation_id,
        seqs=[item.seq],
    )
    return packet.raw_response(item)


async def mark(request: Request) -> Response:
    """Dismiss or undismiss: the same chain record as ``nocontact dismiss``."""
    violation_id = request.path_params["violation_id"]
    kind: MarkKind = "dismissal" if request.url.path.endswith("/dismiss") else "undismissal"
    name, user, _ = await run_in_threadpool(_allowed_violation, request, violation_id)
    require_right(user, "dismiss")
    form = await checked_form(request)
    reason = " ".join(str(form.get("reason", "")).split())
    if not reason or len(reason) > MAX_REASON:
        raise HTTPException(400, f"Say why in a few words (at most {MAX_REASON} characters).")
    ctx = context(request)
    detail = await run_in_threadpool(data.violation_detail, ctx.reads, violation_id)
    if detail is None:
        raise HTTPException(404)
    if (detail.dismissal is not None) == (kind == "dismissal"):
        state = "already" if detail.dismissal else "not"
        raise HTTPException(409, f"This violation is {state} dismissed.")
    await run_in_threadpool(
        ctx.store.record_mark, violation_id, kind, reason=reason, by=name, now=ctx.clock()
    )
    return RedirectResponse(f"/v/{violation_id}", status_code=303)


# -- status and export


def status_page(request: Request) -> Response:
    _, user = require_user(request)
    ctx = context(request)
    case_ids = [case.id for case in ctx.settings.cases if case.id in user.cases]
    health = check_health(
        ctx.reads,
        now=ctx.clock(),
        stale_after=timedelta(minutes=3),
        watcher_names=[w.display_name for w in ctx.settings.watchers],
    )
    views = {view.name: view for view in ctx.store.watcher_statuses()}
    states = _watcher_states(request, case_ids)
    return render(
        request,
        "status.html",
        health=health,
        views=views,
        watcher_list=list(dict.fromkeys(pair for pairs in states.values() for pair in pairs)),
        outbox=ctx.store.outbox_summary(ctx.clock()),
    )


async def export_download(request: Request) -> Response:
    case_id = request.path_params["case_id"]
    name, user = require_case(request, case_id)
    require_right(user, "export")
    await checked_form(request)
    ctx = context(request)
    return await run_in_threadpool(packet.export_response, ctx, case_id, name)


# -- errors


def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, LoginRequired):
        return RedirectResponse(login_url(exc.next_path), status_code=303)
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for these only
    message = {404: "There is nothing here.", 400: "That request is not valid."}.get(
        exc.status_code, "That is not allowed."
    )
    detail = exc.detail if exc.detail and exc.detail != _default_phrase(exc.status_code) else None
    return render(request, "error.html", exc.status_code, message=detail or message)


def _default_phrase(code: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(code).phrase


def _store_down(request: Request, exc: Exception) -> Response:
    # The driver's text may quote evidence or the URL: log the type, show one line.
    log.error("web view: the store cannot be read (%s)", type(exc).__name__)
    message = "The evidence store cannot be read right now. Nothing is lost; try again soon."
    return render(request, "error.html", 503, message=message)


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Response]]:
    return {
        LoginRequired: _error,
        HTTPException: _error,
        StoreError: _store_down,
        SQLAlchemyError: _store_down,
    }


def no_icon(request: Request) -> Response:
    # Browsers ask for it on every site; an empty answer keeps their consoles clean.
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [
        Route("/favicon.ico", no_icon, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", cases_page, methods=["GET"]),
        Route("/c/{case_id}", timeline_page, methods=["GET"]),
        Route("/c/{case_id}/export", export_download, methods=["POST"]),
        Route("/v/{violation_id}", violation_page, methods=["GET"]),
        Route("/v/{violation_id}/raw/{seq:int}", raw_download, methods=["GET"]),
        Route("/v/{violation_id}/dismiss", mark, methods=["POST"]),
        Route("/v/{violation_id}/undismiss", mark, methods=["POST"]),
        Route("/status", status_page, methods=["GET"]),
    ]
