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
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from apprise import Apprise, AppriseAsset, NotifyFormat, NotifyType
from apprise.exception import AppriseException
from sqlalchemy import func, select, true, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from service import models
from service.evidence import format_time
from service.settings import SEVERITY_RANK, CaseSettings, Route, Settings
from service.store import enqueue_alert
from watchers.toolkit.redact import Redactor, apprise_url_secrets
from watchers.toolkit.redact import mask_apprise_url as mask_url
from watchers.toolkit.text import one_line

log = logging.getLogger(__name__)

HealthEvent = Literal["failing", "recovered", "disabled"]

# A claimed row is invisible to other replicas this long; it must exceed the time a
# whole group takes to send (each Apprise target is capped by SERVICE_TIMEOUT).
LEASE = timedelta(minutes=5)
SERVICE_TIMEOUT_SECONDS = 30
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
# Beyond this many rows one message gets unreadable on a phone: send several.
MAX_ROWS_PER_MESSAGE = 20
QUOTE_LIMIT = 500
MAX_QUOTED_ITEMS = 5
MAX_LISTED_URLS = 10
ERROR_LIMIT = 300
CLOSING_LINE = "The evidence is saved. You do not need to reply or act on this right now."

_KIND_PHRASES = {
    "contact": "contact by restrained party",
    "suspected_alt": "suspected contact from a possible alternate account",
    "mention": "mention by restrained party",
    "third_party": "contact through an associate (third party)",
}
_HEALTH_PHRASES: dict[str, str] = {
    "failing": "is failing",
    "recovered": "has recovered",
    "disabled": "is disabled",
}


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
    # suppress_exceptions: an unusable URL is None, never an exception whose
    # message might quote the URL.
    return Apprise.instantiate(url, asset=asset, suppress_exceptions=True)


def validate_route_urls(settings: Settings) -> list[str]:
    """One error line per route URL that no Apprise plugin accepts (for ``check``)."""
    errors = []
    for name, route in settings.alerts.items():
        for index, url in enumerate(route.urls):
            if _instantiate(url) is None:
                errors.append(
                    f"alerts.{name}.urls[{index}]: {mask_url(url)}: "
                    "not a valid or supported Apprise URL"
                )
    return errors


def default_asset() -> AppriseAsset:
    # storage_mode=memory: Apprise must not write cache files next to the evidence.
    return AppriseAsset(
        app_id="nocontact",
        app_desc="nocontact alerts",
        storage_mode="memory",
        service_timeout=SERVICE_TIMEOUT_SECONDS,
        result_log_disk_size=0,
    )


# --------------------------------------------------------------------------- rendering


@dataclasses.dataclass(frozen=True, slots=True)
class _Block:
    """One outbox row rendered for one route."""

    title: str
    body: str
    severity: str
    case_id: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class _Message:
    title: str
    body: str
    notify_type: NotifyType


def _when(value: datetime, zone: ZoneInfo) -> str:
    local = value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
    return f"{format_time(value)} (local {local}, {zone.key})"


def _distinct(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _quote(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > QUOTE_LIMIT:
        text = text[: QUOTE_LIMIT - 1].rstrip() + "…"
    return f"  > {text}"


def render_violation(
    violation: models.Violation,
    case: CaseSettings | None,
    reference: str | None,
    *,
    include_content: bool,
) -> tuple[str, str]:
    """Title and body of one violation alert: who, where, when, how serious, and
    where the evidence is. The platform text only when the route asks for it."""
    evidence = [link.evidence for link in violation.evidence_links]
    timezone = case.timezone if case is not None else ZoneInfo("UTC")
    phrase = _KIND_PHRASES.get(violation.kind, violation.kind.replace("_", " "))
    severity = violation.severity.upper()
    title = f"nocontact: {severity} — {phrase} ({violation.case_id})"
    lines = [
        f"{severity} — {phrase}",
        f"Case: {violation.case_id}" + (f" · order {reference}" if reference else ""),
        f"Kind: {violation.kind}",
        f"Severity: {violation.severity}"
        + (
            f" · suspected (score {violation.score:.0f})"
            if violation.suspected and violation.score is not None
            else " · suspected"
            if violation.suspected
            else ""
        ),
        f"Platform: {', '.join(_distinct(e.platform for e in evidence)) or 'unknown'}",
        f"Author: {', '.join(_distinct(e.author_handle for e in evidence)) or 'unknown'}",
        f"When: {_when(violation.first_seen, timezone)}",
    ]
    if violation.last_seen != violation.first_seen:
        lines.append(f"Last seen: {_when(violation.last_seen, timezone)}")
    lines.append(f"Why: {violation.reason}")
    lines.append(f"Evidence: {len(evidence)} item(s), stored and hashed")
    urls = _distinct(e.url for e in evidence)
    lines += [f"  {url}" for url in urls[:MAX_LISTED_URLS]]
    if len(urls) > MAX_LISTED_URLS:
        lines.append(f"  ({len(urls) - MAX_LISTED_URLS} more link(s) in the timeline)")
    lines.append(f"Violation id: {violation.id} (nocontact timeline --case {violation.case_id})")
    if include_content and evidence:
        lines.append("")
        lines.append("Quoted content (this route includes it; it may be distressing):")
        for item in evidence[:MAX_QUOTED_ITEMS]:
            lines.append(_quote(item.text))
        if len(evidence) > MAX_QUOTED_ITEMS:
            lines.append(f"  ({len(evidence) - MAX_QUOTED_ITEMS} more item(s) in the timeline)")
    return title, "\n".join(lines)


def _combine(blocks: Sequence[_Block]) -> _Message:
    top = max(blocks, key=lambda b: SEVERITY_RANK.get(b.severity, 0)).severity
    notify_type = NotifyType.WARNING if SEVERITY_RANK.get(top, 0) >= 1 else NotifyType.INFO
    # Reassure rather than alarm: nothing is lost if the reader does nothing now.
    closing = [CLOSING_LINE] if any(b.case_id for b in blocks) else []
    if len(blocks) == 1:
        return _Message(blocks[0].title, "\n\n".join([blocks[0].body, *closing]), notify_type)
    counts = {
        sev: sum(1 for b in blocks if b.severity == sev)
        for sev in sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__, reverse=True)
    }
    summary = ", ".join(f"{n} {sev}" for sev, n in counts.items() if n)
    cases = ", ".join(_distinct(b.case_id for b in blocks))
    title = f"nocontact: {top.upper()} — {len(blocks)} alerts" + (f" ({cases})" if cases else "")
    ordered = sorted(blocks, key=lambda b: -SEVERITY_RANK.get(b.severity, 0))
    parts = [f"{len(blocks)} alerts: {summary}."]
    for number, block in enumerate(ordered, start=1):
        parts.append(f"— {number} of {len(blocks)} —\n{block.body}")
    return _Message(title, "\n\n".join([*parts, *closing]), notify_type)


def _render_health(
    watcher: str, event: HealthEvent, message: str, now: datetime
) -> tuple[str, str]:
    title = f"nocontact: watcher {watcher} {_HEALTH_PHRASES[event]}"
    body = "\n".join(
        [
            f"Watcher {watcher} {_HEALTH_PHRASES[event]}.",
            message,
            f"At: {format_time(now)}",
            "Details: nocontact status",
        ]
    )
    return title, body


# --------------------------------------------------------------------------- outbox


def enqueue_health_alert(
    session: Session,
    settings: Settings,
    *,
    watcher: str,
    event: HealthEvent,
    message: str,
    episode: str,
    now: datetime,
) -> int:
    """Queue one watcher-health alert per operator route, in the caller's transaction.
    Exactly once per (watcher, event, episode, route): returns how many were new."""
    title, body = _render_health(watcher, event, message, now)
    severity = "low" if event == "recovered" else "high"
    queued = 0
    for route in settings.operator_routes():
        # The store's enqueue is the one exactly-once outbox insert (ON CONFLICT DO
        # NOTHING on dedup_key), so concurrent replicas cannot both queue it.
        queued += enqueue_alert(
            session,
            dedup_key=f"health:{watcher}:{event}:{episode}:{route}",
            route=route,
            category="health",
            severity=severity,
            title=title,
            body=body,
            now=now,
            due_at=now,
        )
    return queued


@dataclasses.dataclass(slots=True)
class _Claimed:
    id: int
    route: str
    category: str
    severity: str
    violation_id: str | None
    title: str | None
    body: str | None
    attempts: int
    lease_until: datetime
    ok_targets: set[str]
    errors: list[str] = dataclasses.field(default_factory=list)


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
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._asset = asset if asset is not None else default_asset()
        self._masked: dict[str, str] = {}
        self._scrubbers: dict[str, Redactor] = {}

    # -- public ---------------------------------------------------------------
    def deliver_due(self, now: datetime, *, ignore_group_wait: bool = False) -> DeliveryReport:
        """Send every due row, one combined message per route and target."""
        sent = failed = 0
        errors: list[str] = []
        for route_name, candidates in self._due_by_route(now, ignore_group_wait):
            for start in range(0, len(candidates), MAX_ROWS_PER_MESSAGE):
                claimed = self._claim(candidates[start : start + MAX_ROWS_PER_MESSAGE], now)
                if not claimed:
                    continue
                ok_rows, group_errors = self._deliver_group(route_name, claimed, now)
                sent += ok_rows
                failed += len(claimed) - ok_rows
                errors += group_errors
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
            message = _Message(title, body, NotifyType.INFO)
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
    ) -> list[tuple[str, list[tuple[int, datetime]]]]:
        row = models.OutboxAlert
        # `run --once` sends everything queued: group wait and retry backoff alike.
        # That also overrides another replica's lease (the two cannot be told apart);
        # the compare-and-set claim still stops two claims of the same snapshot.
        due = true() if ignore_group_wait else row.next_attempt_at <= now
        with self._sessions() as session:
            found = session.execute(
                select(row.id, row.route, row.category, row.next_attempt_at)
                .where(row.state == "pending", due)
                .order_by(row.route, row.category, row.created_at, row.id)
            ).all()
        groups: dict[tuple[str, str], list[tuple[int, datetime]]] = {}
        for row_id, route, category, next_attempt_at in found:
            groups.setdefault((route, category), []).append((row_id, next_attempt_at))
        return [(route, rows) for (route, _), rows in groups.items()]

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
                    .values(next_attempt_at=lease_until)
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
                    id=r.id,
                    route=r.route,
                    category=r.category,
                    severity=r.severity,
                    violation_id=r.violation_id,
                    title=r.title,
                    body=r.body,
                    attempts=r.attempts,
                    lease_until=lease_until,
                    ok_targets=ok_targets.get(r.id, set()),
                )
                for r in rows
            ]

    # -- delivering ---------------------------------------------------------------
    def _deliver_group(
        self, route_name: str, claimed: list[_Claimed], now: datetime
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
        blocks = self._render_blocks(claimed, route)
        errors = []
        for url in route.urls:
            key = target_key(url)
            waiting = [c for c in claimed if key not in c.ok_targets and c.id in blocks]
            if not waiting:
                continue
            masked = self._mask(url)
            ok, error = self._send(url, _combine([blocks[c.id] for c in waiting]))
            self._record_attempts(waiting, key, masked, ok, error, now)
            self._log_outcome(route_name, masked, ok, error, rows=len(waiting))
            for item in waiting:
                if ok:
                    item.ok_targets.add(key)
                else:
                    item.errors.append(f"{masked}: {error}")
            if not ok:
                errors.append(f"route {route_name}: {masked}: {error}")
        return self._finish(claimed, route.urls, now), errors

    def _render_blocks(self, claimed: list[_Claimed], route: Route) -> dict[int, _Block]:
        """Render each row once; a row that cannot be rendered stays pending with
        its reason, and the others go out."""
        blocks: dict[int, _Block] = {}
        violation_ids = [c.violation_id for c in claimed if c.violation_id]
        with self._sessions() as session:
            violations = {
                v.id: v
                for v in session.scalars(
                    select(models.Violation)
                    .where(models.Violation.id.in_(violation_ids))
                    .options(
                        selectinload(models.Violation.evidence_links).selectinload(
                            models.ViolationEvidence.evidence
                        )
                    )
                )
            }
            for item in claimed:
                if item.category != "violation":
                    title = item.title or f"nocontact: {item.category} alert"
                    blocks[item.id] = _Block(title, item.body or title, item.severity, None)
                    continue
                violation = violations.get(item.violation_id or "")
                if violation is None:
                    lost = f"violation {item.violation_id} not found in the store"
                    log.error("alert %s cannot be rendered: %s; it stays queued", item.id, lost)
                    item.errors.append(lost)
                    continue
                case, reference = self._case(session, violation.case_id)
                title, body = render_violation(
                    violation, case, reference, include_content=route.include_content
                )
                blocks[item.id] = _Block(title, body, violation.severity, violation.case_id)
        return blocks

    def _case(self, session: Session, case_id: str) -> tuple[CaseSettings | None, str | None]:
        try:
            case = self._settings.case(case_id)
        except KeyError:
            # Removed from config since: the stored copy still names the order.
            stored = session.get(models.Case, case_id)
            return None, stored.reference if stored is not None else None
        return case, case.order.reference

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

    def _send(self, url: str, message: _Message) -> tuple[bool, str | None]:
        """One notification to one target; (ok, masked one-line error)."""
        plugin = _instantiate(url, self._asset)
        if plugin is None:
            return False, "not a valid or supported Apprise URL"
        apobj = Apprise(asset=self._asset)
        apobj.add(plugin)
        try:
            result = apobj.notify(
                body=message.body,
                title=message.title,
                notify_type=message.notify_type,
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

    def _record_attempts(
        self,
        rows: Sequence[_Claimed],
        key: str,
        masked: str,
        ok: bool,
        error: str | None,
        now: datetime,
    ) -> None:
        # Committed right after the send: a crash from here on re-sends at most once.
        with self._sessions.begin() as session:
            session.add_all(
                models.DeliveryAttempt(
                    outbox_id=item.id,
                    target_key=key,
                    target=masked,
                    attempted_at=now,
                    ok=ok,
                    error=error,
                )
                for item in rows
            )

    def _finish(self, claimed: Sequence[_Claimed], urls: Sequence[str], now: datetime) -> int:
        """Mark each row sent or schedule its retry, each in its own transaction,
        only while this dispatcher still holds its lease. Returns rows sent."""
        keys = {target_key(url) for url in urls}
        sent = 0
        row = models.OutboxAlert
        for item in claimed:
            done = bool(keys) and keys <= item.ok_targets and not item.errors
            values: dict[str, Any] = {"attempts": item.attempts + 1}
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
                    .where(row.id == item.id, row.next_attempt_at == item.lease_until)
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
