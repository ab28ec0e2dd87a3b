"""Deliver outbox alerts through Apprise: render, group, send per target, retry.

The outbox (``models.OutboxAlert``) is filled by the store in the same transaction as
the evidence it is about; this module only delivers it. Guarantees (DESIGN principle 4):

- at-least-once: a row is marked ``sent`` only after every target of its route has
  accepted it, and each outcome is committed right after the send, so a crash can at
  worst re-send once, never lose an alert;
- no duplicates when one target is down: every attempt at every target is logged in
  ``DeliveryAttempt``, and a retry skips the targets that already succeeded;
- replicas do not send the same row at once: a row is claimed with a compare-and-set
  lease on ``next_attempt_at`` before it is sent.

Target URLs carry secrets (tokens, passwords, private topics): only ``mask_url`` output
(``watchers.toolkit.redact.mask_apprise_url``) is ever logged, stored or put in an error
message, and what Apprise or a server says is redacted with the URL's secrets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import socket
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from service import models
from service.compose import MAX_ROWS_PER_MESSAGE, ONE_MESSAGE_LANES, Composer, Rendered, Row
from service.evidence import format_time
from service.messages import CLOSING_LINE as CLOSING_LINE
from service.messages import Message
from service.settings import Route, Settings
from watchers.toolkit.redact import Redactor, apprise_url_secrets
from watchers.toolkit.redact import mask_apprise_url as mask_url
from watchers.toolkit.text import one_line

if TYPE_CHECKING:
    # Apprise (~0.1 s and its plugins) is imported on the first send, not at start (#15).
    from apprise import AppriseAsset

log = logging.getLogger(__name__)

# A claimed row is invisible to other replicas this long; it must exceed the time a
# whole group takes to send (each Apprise target is capped by SERVICE_TIMEOUT).
LEASE = timedelta(minutes=5)
SERVICE_TIMEOUT_SECONDS = 30
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
# Per-message priority on targets that have one, unless the URL sets its own:
# high = urgent on ntfy; Pushover's emergency (repeats until acknowledged) never.
NTFY_PRIORITY = {"high": "max", "medium": "high", "low": "default", "operator": "low"}
PUSHOVER_PRIORITY = {"high": "high", "medium": "normal", "low": "moderate", "operator": "moderate"}
ERROR_LIMIT = 300
# What the delivery log says of a message between its "sending" and its result: if the
# process dies in between, this stays, and the message is sent again (once).
IN_FLIGHT = "in flight: the process stopped before the outcome was known; sent again"
# A claimer on another host is live while its heartbeat is this recent.
CLAIMER_STALE_AFTER = timedelta(minutes=2)
# Passes of one deliver_due: rows pulled forward by a route that answers again go out
# in the next pass.
MAX_PASSES = 5


class AlertError(Exception):
    """Alert delivery cannot work as configured. The message is one line, masked."""


class AlertConfigError(AlertError):
    """An unknown route or an Apprise URL no plugin accepts."""


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int
    failed: int
    still_pending: int
    # One line per failed target this pass, masked, for the CLI.
    errors: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class TargetResult:
    route: str
    target_masked: str
    ok: bool
    error: str | None


# --------------------------------------------------------------------------- masking


def target_key(url: str) -> str:
    """Identifies a target across retries without storing its secrets."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def _instantiate(url: str, asset: AppriseAsset | None = None) -> Any:
    # Apprise debug-logs every URL it loads, headers and ntfy topics unmasked.
    # suppress_exceptions: an unusable URL is None, never an exception whose
    # message might quote the URL.
    from apprise import Apprise

    return Apprise.instantiate(url, asset=asset, suppress_exceptions=True)


def default_asset() -> AppriseAsset:
    # storage_mode=memory: Apprise must not write cache files next to the evidence.
    from apprise import AppriseAsset

    return AppriseAsset(
        app_id="nocontact",
        app_desc="nocontact alerts",
        storage_mode="memory",
        service_timeout=SERVICE_TIMEOUT_SECONDS,
        result_log_disk_size=0,
    )


# --------------------------------------------------------------------------- delivering


@dataclasses.dataclass(slots=True)
class _Claimed:
    row: Row
    attempts: int
    lease_until: datetime
    ok_targets: set[str]
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def id(self) -> int:
        return self.row.id


def with_priority(url: str, severity: str) -> str:
    """``url`` with the ntfy or Pushover priority of ``severity`` added."""
    scheme = url.split("://", 1)[0].lower()
    table = {"ntfy": NTFY_PRIORITY, "ntfys": NTFY_PRIORITY, "pover": PUSHOVER_PRIORITY}.get(scheme)
    if table is None or re.search(r"[?&]priority=", url):
        return url
    return f"{url}{'&' if '?' in url else '?'}priority={table.get(severity, 'default')}"


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _pid_alive(instance: str) -> bool:
    try:
        pid = int(instance.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return True  # not ours to judge: honour the claim until its lease ends
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _backoff(row_id: int, attempts_before: int) -> timedelta:
    """30 s × 2^n, capped at 1 h, plus up to 10 % jitter so that replicas and rows
    failing together do not retry in lockstep (deterministic per row and attempt)."""
    base = min(BACKOFF_BASE * (1 << min(attempts_before, 16)), BACKOFF_CAP)
    digest = hashlib.sha256(f"{row_id}:{attempts_before}".encode()).digest()
    return base + base * (digest[0] / 255 / 10)


class AlertDispatcher:
    """Delivers due outbox rows. Safe to run in several replicas at once."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        asset: AppriseAsset | None = None,
        instance: str | None = None,
    ) -> None:
        """``instance`` names this dispatcher in its claims ("host:pid")."""
        self._settings = settings
        self._instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self._sessions = sessions
        # Built on the first send: a service with nothing due never imports Apprise.
        self._given_asset = asset
        self._masked: dict[str, str] = {}
        self._scrubbers: dict[str, Redactor] = {}
        self._composer = Composer(settings)

    # -- public ---------------------------------------------------------------
    def deliver_due(self, now: datetime, *, ignore_group_wait: bool = False) -> DeliveryReport:
        """Send every due row, one combined message per route and target. When a route
        answers again, its rows waiting out a backoff are due at once and go out in a
        further pass, oldest first."""
        sent = failed = 0
        errors: list[str] = []
        for _ in range(MAX_PASSES):
            pulled = 0
            for route_name, lane, candidates in self._due_by_route(now, ignore_group_wait):
                size = len(candidates) if lane in ONE_MESSAGE_LANES else MAX_ROWS_PER_MESSAGE
                size = 1 if lane == "digest" else size
                for start in range(0, len(candidates), size):
                    claimed = self._claim(candidates[start : start + size], now)
                    if not claimed:
                        continue
                    ok_rows, group_errors = self._deliver_group(route_name, lane, claimed, now)
                    sent += ok_rows
                    failed += len(claimed) - ok_rows
                    errors += group_errors
                    pulled += self._after_outcome(route_name, ok_rows > 0, now)
            if not pulled:
                break
        return DeliveryReport(sent, failed, self._pending_count(), tuple(errors))

    def send_test(self, route: str | None, now: datetime) -> list[TargetResult]:
        """Send a test notification now to every target of one route (or all)."""
        names = self._route_names(route)
        results = []
        for name in names:
            title = f"nocontact: test notification (route {name})"
            body = (
                f"This is a test from nocontact at {format_time(now)}.\n"
                f"If you can read this, alerts on route {name} reach this target. "
                "No action is needed."
            )
            message = Message(title, body, "info", "low")
            for url in self._settings.alerts[name].urls:
                masked = self._mask(url)
                ok, error = self._send(url, message)
                self._log_outcome(name, masked, ok, error, rows=None)
                results.append(TargetResult(name, masked, ok, error))
        return results

    # -- selection and claiming ---------------------------------------------------
    def _route_names(self, route: str | None) -> list[str]:
        if not self._settings.alerts:
            raise AlertConfigError("no alert routes are configured (config: alerts)")
        if route is None:
            return list(self._settings.alerts)
        if route not in self._settings.alerts:
            known = ", ".join(self._settings.alerts)
            raise AlertConfigError(f"unknown alert route {route!r}; configured: {known}")
        return [route]

    def _due_by_route(
        self, now: datetime, ignore_group_wait: bool
    ) -> list[tuple[str, str, list[tuple[int, datetime]]]]:
        row = models.OutboxAlert
        # `run --once` sends everything queued: group wait and retry backoff alike
        # (not quiet hours nor a flood window: those wait for their time), but never a
        # row a live replica has claimed. A claim of a process that is gone is taken
        # over at once.
        due = or_(row.next_attempt_at <= now, row.claimed_by.is_not(None))
        if ignore_group_wait:
            due = or_(due, row.category.not_in(ONE_MESSAGE_LANES))
        with self._sessions() as session:
            found = session.execute(
                select(row.id, row.route, row.category, row.next_attempt_at, row.claimed_by)
                .where(row.state == "pending", due)
                .order_by(row.route, row.category, row.created_at, row.id)
            ).all()
            live = self._live_claimers({r.claimed_by for r in found if r.claimed_by}, session, now)
        groups: dict[tuple[str, str], list[tuple[int, datetime]]] = {}
        for row_id, route, category, next_attempt_at, claimed_by in found:
            leased = claimed_by is not None and _aware(next_attempt_at) > now
            if leased and claimed_by in live:
                continue
            groups.setdefault((route, category), []).append((row_id, next_attempt_at))
        return [(route, lane, rows) for (route, lane), rows in groups.items()]

    def _claim(self, candidates: Sequence[tuple[int, datetime]], now: datetime) -> list[_Claimed]:
        """Compare-and-set each row's next_attempt_at to a lease: a row another
        replica claimed (or delivered) meanwhile no longer matches and is skipped."""
        lease_until = now + LEASE
        row = models.OutboxAlert
        with self._sessions.begin() as session:
            won = []
            for row_id, seen in candidates:
                result = session.execute(
                    update(row)
                    .where(row.id == row_id, row.state == "pending", row.next_attempt_at == seen)
                    .values(next_attempt_at=lease_until, claimed_by=self._instance)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    won.append(row_id)
            if not won:
                return []
            rows = session.scalars(select(row).where(row.id.in_(won)).order_by(row.id)).all()
            ok = session.execute(
                select(models.DeliveryAttempt.outbox_id, models.DeliveryAttempt.target_key).where(
                    models.DeliveryAttempt.outbox_id.in_(won), models.DeliveryAttempt.ok
                )
            ).all()
            ok_targets: dict[int, set[str]] = {}
            for outbox_id, key in ok:
                ok_targets.setdefault(outbox_id, set()).add(key)
            return [
                _Claimed(
                    row=Row(
                        id=r.id,
                        dedup_key=r.dedup_key,
                        severity=r.severity,
                        violation_id=r.violation_id,
                        title=r.title,
                        body=r.body,
                        created_at=r.created_at,
                    ),
                    attempts=r.attempts,
                    lease_until=lease_until,
                    ok_targets=ok_targets.get(r.id, set()),
                )
                for r in rows
            ]

    # -- delivering ---------------------------------------------------------------
    def _deliver_group(
        self, route_name: str, lane: str, claimed: list[_Claimed], now: datetime
    ) -> tuple[int, list[str]]:
        route = self._settings.alerts.get(route_name)
        if route is None:
            missing = f"route {route_name!r} is not configured (config: alerts)"
            log.error(
                "%d alert(s) cannot be delivered: %s; they stay queued", len(claimed), missing
            )
            for item in claimed:
                item.errors.append(missing)
            return self._finish(claimed, [], now), [missing]
        # Rendered, then the session is closed before any send: on SQLite a session
        # open across the sends would hold the lock the delivery log needs.
        with self._sessions() as session:
            rendered = self._composer.render(
                session, route_name, route, [c.row for c in claimed], now
            )
        for item in claimed:
            if item.id in rendered.errors:
                lost = rendered.errors[item.id]
                log.error("alert %s cannot be rendered: %s; it stays queued", item.id, lost)
                item.errors.append(lost)
        errors = self._send_to_targets(route_name, route, lane, claimed, rendered, now)
        return self._finish(claimed, route.urls, now), errors

    def _send_to_targets(
        self,
        route_name: str,
        route: Route,
        lane: str,
        claimed: list[_Claimed],
        rendered: Rendered,
        now: datetime,
    ) -> list[str]:
        """One message per target, of the rows that target has not received yet; every
        row of it logged with the same message id (the notification log)."""
        errors = []
        for url in route.urls:
            key = target_key(url)
            waiting = [c for c in claimed if key not in c.ok_targets and c.id in rendered.blocks]
            if not waiting:
                continue
            masked = self._mask(url)
            message = self._composer.compose(lane, route, [c.row for c in waiting], rendered)
            # "Sending" is committed before the send and the result right after: a crash
            # in between leaves this one message in flight, re-sent once, no more.
            attempts = self._mark_sending(waiting, key, masked, str(uuid.uuid4()), now)
            ok, error = self._send(url, message)
            self._record_result(attempts, ok, error)
            self._log_outcome(route_name, masked, ok, error, rows=len(waiting))
            for item in waiting:
                if ok:
                    item.ok_targets.add(key)
                else:
                    item.errors.append(f"{masked}: {error}")
            if not ok:
                errors.append(f"route {route_name}: {masked}: {error}")
        return errors

    def _mask(self, url: str) -> str:
        if url not in self._masked:
            self._masked[url] = mask_url(url)
        return self._masked[url]

    def _scrub(self, url: str) -> Redactor:
        """Removes the target's secrets from what Apprise or the server said."""
        if url not in self._scrubbers:
            secrets = apprise_url_secrets(url)
            self._scrubbers[url] = Redactor(secrets, mask_urls=False, apprise_urls=True)
        return self._scrubbers[url]

    def _send(self, url: str, message: Message) -> tuple[bool, str | None]:
        """One notification to one target; (ok, masked one-line error)."""
        from apprise import Apprise, NotifyFormat, NotifyType
        from apprise.exception import AppriseException

        if self._given_asset is None:
            self._given_asset = default_asset()
        plugin = _instantiate(with_priority(url, message.severity), self._given_asset)
        if plugin is None:
            return False, "not a valid or supported Apprise URL"
        apobj = Apprise(asset=self._given_asset)
        apobj.add(plugin)
        try:
            result = apobj.notify(
                body=message.body,
                title=message.title,
                notify_type=NotifyType(message.notify_type),
                body_format=NotifyFormat.TEXT,
                interpret_escapes=False,
            )
        except AppriseException as exc:
            return False, self._scrub(url).one_line(f"{type(exc).__name__}: {exc}", ERROR_LIMIT)
        with result:
            if result:
                return True, None
            problems = [e.message for e in result.logs() if e.level in {"WARNING", "ERROR"}]
            detail = problems[-1] if problems else f"delivery {result.status.name.lower()}"
            return False, self._scrub(url).one_line(detail, ERROR_LIMIT)

    def _mark_sending(
        self, rows: Sequence[_Claimed], key: str, masked: str, message_id: str, now: datetime
    ) -> list[int]:
        """One delivery-log row per alert of the message, committed before the send;
        until ``_record_result`` it says the message is in flight."""
        with self._sessions.begin() as session:
            attempts = [
                models.DeliveryAttempt(
                    outbox_id=item.id,
                    target_key=key,
                    target=masked,
                    attempted_at=now,
                    ok=False,
                    error=IN_FLIGHT,
                    message=message_id,
                )
                for item in rows
            ]
            session.add_all(attempts)
            session.flush()
            return [attempt.id for attempt in attempts]

    def _record_result(self, attempt_ids: Sequence[int], ok: bool, error: str | None) -> None:
        """The send's outcome, committed right after it."""
        with self._sessions.begin() as session:
            session.execute(
                update(models.DeliveryAttempt)
                .where(models.DeliveryAttempt.id.in_(attempt_ids))
                .values(ok=ok, error=error)
            )

    def _live_claimers(self, claimers: set[str], session: Session, now: datetime) -> set[str]:
        """The claimers that are still running: a process on this host is asked
        directly; one elsewhere counts as live while its heartbeat is recent."""
        if not claimers:
            return set()
        host = socket.gethostname()
        live = {c for c in claimers if c.rsplit(":", 1)[0] == host and _pid_alive(c)}
        others = {c for c in claimers if c.rsplit(":", 1)[0] != host}
        if others:
            beats = session.execute(
                select(models.Heartbeat.instance, models.Heartbeat.beat_at).where(
                    models.Heartbeat.instance.in_(others)
                )
            ).all()
            live |= {i for i, at in beats if _aware(at) >= now - CLAIMER_STALE_AFTER}
        return live

    def _after_outcome(self, route: str, answered: bool, now: datetime) -> int:
        """Backoff per target, not per row: when the route answers, its rows waiting out
        a backoff are due now (returns how many); when it fails, none of them waits
        longer than the route's next try."""
        row = models.OutboxAlert
        waiting = (
            row.route == route,
            row.state == "pending",
            row.attempts > 0,
            row.claimed_by.is_(None),
        )
        with self._sessions.begin() as session:
            if answered:
                result = session.execute(
                    update(row)
                    .where(*waiting, row.next_attempt_at > now)
                    .values(next_attempt_at=now)
                )
                return int(result.rowcount)  # type: ignore[attr-defined]
            soonest = session.scalar(select(func.min(row.next_attempt_at)).where(*waiting))
            if soonest is not None:
                session.execute(
                    update(row)
                    .where(*waiting, row.next_attempt_at > soonest)
                    .values(next_attempt_at=soonest)
                )
        return 0

    def _finish(self, claimed: Sequence[_Claimed], urls: Sequence[str], now: datetime) -> int:
        """Mark each row sent or schedule its retry, each in its own transaction,
        only while this dispatcher still holds its lease. Returns rows sent."""
        keys = {target_key(url) for url in urls}
        sent = 0
        row = models.OutboxAlert
        for item in claimed:
            done = bool(keys) and keys <= item.ok_targets and not item.errors
            values: dict[str, Any] = {"attempts": item.attempts + 1, "claimed_by": None}
            if done:
                values.update(state="sent", sent_at=now, last_error=None)
            else:
                reason = "; ".join(item.errors) or "not every target accepted the alert"
                values.update(
                    last_error=one_line(reason, ERROR_LIMIT),
                    next_attempt_at=now + _backoff(item.id, item.attempts),
                )
            with self._sessions.begin() as session:
                result = session.execute(
                    update(row)
                    .where(
                        row.id == item.id,
                        row.next_attempt_at == item.lease_until,
                        row.claimed_by == self._instance,
                    )
                    .values(**values)
                )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                log.warning(
                    "alert %s: lease expired before its outcome was saved; "
                    "the delivery log keeps what was sent",
                    item.id,
                )
            elif done:
                sent += 1
        return sent

    def _pending_count(self) -> int:
        with self._sessions() as session:
            count = session.scalar(
                select(func.count())
                .select_from(models.OutboxAlert)
                .where(models.OutboxAlert.state == "pending")
            )
        return int(count or 0)

    @staticmethod
    def _log_outcome(
        route: str, masked: str, ok: bool, error: str | None, *, rows: int | None
    ) -> None:
        what = "test notification" if rows is None else f"{rows} alert(s)"
        if ok:
            log.info("alert delivered: route=%s target=%s (%s)", route, masked, what)
        else:
            log.warning(
                "alert delivery failed: route=%s target=%s (%s): %s", route, masked, what, error
            )
