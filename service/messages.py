"""What alerts say: one table of kinds, and the title and body of every message.

Alerts are read on a phone, often at night, by the person the order protects: they say
who, where, when and how serious, link to the evidence, and never quote the platform
text unless the route asks for it (DESIGN principle 5). Every title is built from
``KINDS`` and ``HEALTH``, so a mention is never called contact and a broken source is
never titled like contact by the restrained party.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from service import models
from service.evidence import format_time
from service.settings import SEVERITY_RANK, CaseSettings

QUOTE_LIMIT = 500
MAX_QUOTED_ITEMS = 5
MAX_LISTED_URLS = 10
# Counts by author list this many names, then "and N more".
MAX_LISTED_AUTHORS = 10
# Apprise's NotifyType values by name: importing Apprise here would load it at start (#15).
NotifyKind = Literal["info", "warning"]
CLOSING_LINE = "The evidence is saved. You do not need to reply or act on this right now."


@dataclasses.dataclass(frozen=True, slots=True)
class KindText:
    # In titles: "nocontact: HIGH — <title> (case)".
    title: str
    # In counts: "3 × <count>".
    count: str


KINDS: dict[str, KindText] = {
    "contact": KindText("contact by restrained party", "contact by the restrained party"),
    "suspected_alt": KindText(
        "suspected contact from a possible alternate account", "possible alternate accounts"
    ),
    "mention": KindText("mention by restrained party", "mentions by the restrained party"),
    "third_party": KindText("message from an associate (third party)", "messages from associates"),
    "suspected_proxy": KindText(
        "suspected message on behalf of the restrained party", "suspected proxies"
    ),
}
HEALTH: dict[str, str] = {
    "failing": "is failing",
    "disabled": "is disabled",
    "recovered": "is working again",
    "service_error": "hit a service error",
}


def kind_text(kind: str) -> KindText:
    plain = kind.replace("_", " ")
    return KINDS.get(kind, KindText(plain, plain))


@dataclasses.dataclass(frozen=True, slots=True)
class Block:
    """One outbox row rendered for one route."""

    title: str
    body: str
    severity: str
    case_id: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One notification: what every target of a route receives."""

    title: str
    body: str
    notify_type: NotifyKind
    # The highest severity in it: chooses ntfy and Pushover priorities.
    severity: str


def notify_type(severity: str) -> NotifyKind:
    """Apprise's type by severity: a warning for medium and high, info below."""
    return "warning" if SEVERITY_RANK.get(severity, 0) >= 1 else "info"


def see_it(violation_id: str, public_url: str | None) -> str:
    """Where to look at one violation: the web view when configured, else the CLI."""
    if public_url:
        return f"See it: {public_url}/v/{violation_id}"
    return f"See it: nocontact show {violation_id}"


def local_time(value: datetime, zone: ZoneInfo) -> str:
    return f"{value.astimezone(zone).strftime('%Y-%m-%d %H:%M %Z')}, {zone.key}"


def clock_time(value: datetime, zone: ZoneInfo) -> str:
    """``22:14`` in the case's zone: how a person says "since when"."""
    return value.astimezone(zone).strftime("%H:%M")


def _when(value: datetime, timezone: ZoneInfo) -> str:
    return f"{format_time(value)} (local {local_time(value, timezone)})"


def distinct(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _quote(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > QUOTE_LIMIT:
        text = text[: QUOTE_LIMIT - 1].rstrip() + "…"
    return f"  > {text}"


def _quotes(evidence: Sequence[models.Evidence]) -> list[str]:
    lines = ["", "Quoted content (this route includes it; it may be distressing):"]
    lines += [_quote(item.text) for item in evidence[:MAX_QUOTED_ITEMS]]
    if len(evidence) > MAX_QUOTED_ITEMS:
        lines.append(f"  ({len(evidence) - MAX_QUOTED_ITEMS} more item(s) in the timeline)")
    return lines


def _severity_line(violation: models.Violation) -> str:
    line = f"Severity: {violation.severity}"
    if violation.suspected and violation.score is not None:
        return line + f" · suspected (score {violation.score:.0f})"
    return line + (" · suspected" if violation.suspected else "")


def render_violation(
    violation: models.Violation,
    case: CaseSettings | None,
    reference: str | None,
    *,
    include_content: bool,
    public_url: str | None = None,
) -> tuple[str, str]:
    """Title and body of one violation alert: who, where, when, how serious, and
    where the evidence is. The platform text only when the route asks for it."""
    evidence = [link.evidence for link in violation.evidence_links]
    timezone = case.timezone if case is not None else ZoneInfo("UTC")
    phrase = kind_text(violation.kind).title
    severity = violation.severity.upper()
    title = f"nocontact: {severity} — {phrase} ({violation.case_id})"
    lines = [
        f"{severity} — {phrase}",
        f"Case: {violation.case_id}" + (f" · order {reference}" if reference else ""),
        f"Kind: {violation.kind}",
        _severity_line(violation),
        f"Platform: {', '.join(distinct(e.platform for e in evidence)) or 'unknown'}",
        f"Author: {', '.join(distinct(e.author_handle for e in evidence)) or 'unknown'}",
        f"When: {_when(violation.first_seen, timezone)}",
    ]
    if violation.last_seen != violation.first_seen:
        lines.append(f"Last seen: {_when(violation.last_seen, timezone)}")
    lines.append(f"Why: {violation.reason}")
    lines.append(f"Evidence: {len(evidence)} item(s), stored and hashed")
    urls = distinct(e.url for e in evidence)
    lines += [f"  {url}" for url in urls[:MAX_LISTED_URLS]]
    if len(urls) > MAX_LISTED_URLS:
        lines.append(f"  ({len(urls) - MAX_LISTED_URLS} more link(s) in the timeline)")
    lines.append(f"Violation id: {violation.id} (nocontact timeline --case {violation.case_id})")
    lines.append(see_it(violation.id, public_url))
    if include_content and evidence:
        lines += _quotes(evidence)
    return title, "\n".join(lines)


def render_followup(
    violation: models.Violation,
    case: CaseSettings | None,
    since: datetime,
    *,
    include_content: bool,
    public_url: str | None = None,
) -> tuple[str, str]:
    """An update on an alerted violation: how many more items, from whom, since when."""
    timezone = case.timezone if case is not None else ZoneInfo("UTC")
    newer = [
        link.evidence for link in violation.evidence_links if link.evidence.captured_at >= since
    ]
    authors = ", ".join(distinct(e.author_handle for e in newer)) or "the same author"
    first = min((e.posted_at or e.captured_at for e in newer), default=since)
    phrase = kind_text(violation.kind).title
    count = len(newer)
    headline = (
        f"{count} more message{'' if count == 1 else 's'} from {authors} "
        f"since {clock_time(first, timezone)}"
    )
    title = f"nocontact: {violation.severity.upper()} — update: {headline} ({violation.case_id})"
    lines = [
        f"Update on an alert already sent: {headline}.",
        f"Case: {violation.case_id} · {phrase}",
        _severity_line(violation),
        f"Platform: {', '.join(distinct(e.platform for e in newer)) or 'unknown'}",
        f"Last seen: {_when(violation.last_seen, timezone)}",
        f"Evidence: {len(violation.evidence_links)} item(s) in this violation, stored and hashed",
    ]
    lines += [f"  {url}" for url in distinct(e.url for e in newer)[:MAX_LISTED_URLS]]
    lines.append(f"Violation id: {violation.id}")
    lines.append(see_it(violation.id, public_url))
    if include_content and newer:
        lines += _quotes(newer)
    return title, "\n".join(lines)


def render_health(watcher: str, event: str, message: str, now: datetime) -> tuple[str, str]:
    """A source's health, for the operator: never titled with a violation severity."""
    phrase = HEALTH.get(event, event)
    title = f"nocontact: source {watcher} {phrase}"
    body = "\n".join(
        [
            f"Source {watcher} {phrase}. This is about nocontact itself, not a violation.",
            message,
            f"At: {format_time(now)}",
            "Details: nocontact status",
        ]
    )
    return title, body


def combine(blocks: Sequence[Block]) -> Message:
    """Several rows due together on one route: one message, the most serious first."""
    top = max(blocks, key=lambda b: SEVERITY_RANK.get(b.severity, 0)).severity
    # Reassure rather than alarm: nothing is lost if the reader does nothing now.
    closing = [CLOSING_LINE] if any(b.case_id for b in blocks) else []
    if len(blocks) == 1:
        body = "\n\n".join([blocks[0].body, *closing])
        return Message(blocks[0].title, body, notify_type(top), top)
    counts = Counter(b.severity for b in blocks)
    order = sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__, reverse=True)
    summary = ", ".join(f"{counts[sev]} {sev}" for sev in order if counts[sev])
    if top == "operator":
        label = "messages about sources"
        title = f"nocontact: {len(blocks)} {label}"
    else:
        label = "alerts"
        title = f"nocontact: {top.upper()} — {len(blocks)} {label}"
    cases = ", ".join(distinct(b.case_id for b in blocks))
    title += f" ({cases})" if cases else ""
    ordered = sorted(blocks, key=lambda b: -SEVERITY_RANK.get(b.severity, 0))
    parts = [f"{len(blocks)} {label}: {summary}."]
    for number, block in enumerate(ordered, start=1):
        parts.append(f"— {number} of {len(blocks)} —\n{block.body}")
    return Message(title, "\n\n".join([*parts, *closing]), notify_type(top), top)


def fold(
    violations: Sequence[models.Violation],
    others: Sequence[Block],
    *,
    why: str,
    public_url: str | None,
) -> Message:
    """Many alerts as one message: counts by kind and by author, and where to see them.

    ``why`` says what held them back ("more than 12 alerts in an hour", "quiet hours")."""
    total = len(violations) + len(others)
    top = max(
        [v.severity for v in violations] + [b.severity for b in others],
        key=lambda sev: SEVERITY_RANK.get(sev, 0),
    )
    by_kind = Counter(v.kind for v in violations)
    items = [link.evidence for v in violations for link in v.evidence_links]
    authors = Counter(item.author_handle or "unknown" for item in items)
    cases = distinct(v.case_id for v in violations)
    lines = [f"{total} alert(s) held back ({why}), now in one message."]
    if items:
        lines.append(f"{len(items)} item(s) from {len(authors)} account(s), all stored.")
    if by_kind:
        lines.append("Alerts by kind:")
        lines += [f"  {n} × {kind_text(kind).count}" for kind, n in by_kind.most_common()]
    if authors:
        lines.append(f"Items by author ({len(authors)}):")
        lines += [f"  {n} × {name}" for name, n in authors.most_common(MAX_LISTED_AUTHORS)]
        if len(authors) > MAX_LISTED_AUTHORS:
            lines.append(f"  and {len(authors) - MAX_LISTED_AUTHORS} more author(s)")
    lines += [block.title.removeprefix("nocontact: ") for block in others]
    for case_id in cases:
        lines.append(f"See them: nocontact timeline --case {case_id}")
    if public_url:
        lines.append(f"Or: {public_url}/")
    lines += ["", CLOSING_LINE] if violations else []
    case_part = f" ({', '.join(cases)})" if cases else ""
    title = f"nocontact: {top.upper()} — {total} alerts in one message{case_part}"
    if top == "operator":
        title = f"nocontact: {total} messages about sources"
    return Message(title, "\n".join(lines), notify_type(top), top)


@dataclasses.dataclass(frozen=True, slots=True)
class SourceHealth:
    name: str
    last_success_at: datetime | None
    problem: str | None  # disabled or failing, with its last error
    every: timedelta = timedelta(0)  # its poll interval

    def on_schedule(self, now: datetime) -> bool:
        """Checked lately: within the hour, or two of its own intervals if longer."""
        window = max(timedelta(hours=1), 2 * self.every)
        seen = self.last_success_at
        return self.problem is None and seen is not None and seen >= now - window


def render_digest(
    route: str,
    counts: Counter[str],
    sources: Sequence[SourceHealth],
    now: datetime,
    timezone: ZoneInfo,
    deleted: Counter[tuple[str, str]] | None = None,
) -> Message:
    """The daily digest: the last 24 h by kind, the items found deleted (by kind and
    platform) and every source's health. It is sent even when nothing happened, so
    that its absence says the service is down."""
    total = sum(counts.values())
    lines = [f"Daily digest for route {route}, {local_time(now, timezone)}."]
    if total:
        lines.append(f"Last 24 hours: {total} violation(s).")
        lines += [f"  {n} × {kind_text(kind).count}" for kind, n in counts.most_common()]
    else:
        lines.append("Last 24 hours: no violations recorded.")
    if deleted:
        lines.append(
            f"{sum(deleted.values())} item(s) found deleted by their author in the last 24 h:"
        )
        lines += [f"  {n} × {kind} on {platform}" for (kind, platform), n in deleted.most_common()]
    fresh = [source for source in sources if source.on_schedule(now)]
    if sources and len(fresh) == len(sources):
        within_hour = all(
            s.last_success_at and s.last_success_at >= now - timedelta(hours=1) for s in sources
        )
        when = "in the last hour" if within_hour else "on schedule"
        lines.append(f"Sources: all {len(sources)} checked {when}.")
    else:
        lines.append(f"Sources: {len(fresh)} of {len(sources)} checked on schedule.")
        for source in sources:
            if source in fresh:
                continue
            seen = format_time(source.last_success_at) or "never"
            lines.append(f"  {source.name}: {source.problem or 'no check'} (last success {seen})")
    lines.append("nocontact is running. Details: nocontact status")
    title = f"nocontact: daily digest — {total} violation(s) in 24 h"
    return Message(title, "\n".join(lines), "info", "low")
