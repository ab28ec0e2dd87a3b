"""Validated settings: the config.yaml contract as pydantic models.

Loading (YAML, ``${VAR}`` interpolation, line numbers in errors) is in ``service.config``.
Watcher settings are validated by each watcher type's own ``settings_model``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from datetime import date, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from service.evidence_settings import EvidenceSettings
from watchers.base import Duration, WatcherSettings

Severity = Literal["low", "medium", "high"]
# "operator" is the severity of watcher-health alerts: below every violation.
SEVERITY_RANK: dict[str, int] = {"operator": -1, "low": 0, "medium": 1, "high": 2}
Term = Literal["no_contact", "no_mention"]

_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MIN_POLL_INTERVAL = timedelta(seconds=10)

Loc = tuple[str | int, ...]
FOR_DELIVERY = "for_delivery"
"""Validation context key: the settings will poll and send, so route URLs must work."""


class SettingsProblems(ValueError):
    """Problems found across the whole file (a name used twice, a reference to nothing),
    each with the location of the field at fault, so the loader can point at its line."""

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(message for _, message in self.problems))


def _zone(value: object) -> object:
    if isinstance(value, ZoneInfo):
        return value
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown time zone; use an IANA name like Europe/London") from None


# Parsed once here, so matching, alerts and reports never meet an unknown zone.
Zone = Annotated[ZoneInfo, BeforeValidator(_zone), PlainSerializer(lambda zone: zone.key)]


def _apprise_url(url: str, info: ValidationInfo) -> str:
    # Only settings that will send are held to what the installed Apprise can deliver
    # (the loader asks for it); read-only commands and tests of delivery failures are not.
    if not (info.context or {}).get(FOR_DELIVERY):
        return url
    import apprise

    if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        shown = f"{scheme}:// URL" if scheme else "URL"
        raise ValueError(f"this Apprise {shown} is not valid; see the Apprise wiki for its form")
    return url


def _database_url(value: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value)
    except ArgumentError:
        raise ValueError(
            "not a database URL; write sqlite:///nocontact.db or "
            "postgresql+psycopg://user@host/dbname"
        ) from None
    return value


def _unknown_name(what: str, name: str, known: Iterable[str], section: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; define it under {section}"
    return f"no {what} named {name!r}{hint}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Order(_Strict):
    effective: date
    expires: date | None = None
    reference: str | None = None
    terms: list[Term] = Field(default_factory=lambda: list[Term](["no_contact"]))

    @model_validator(mode="after")
    def _expires_after_effective(self) -> Order:
        if self.expires is not None and self.expires <= self.effective:
            raise ValueError("expires must be after effective")
        return self


Handles = dict[str, list[str]]
"""Platform name → handles on it (``email`` → addresses)."""


class Protected(_Strict):
    names: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    handles: Handles = Field(default_factory=dict)


class Restrained(_Strict):
    names: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    handles: Handles = Field(default_factory=dict)
    associates: Handles = Field(default_factory=dict)


class CaseSettings(_Strict):
    id: str
    order: Order
    protected: Protected
    restrained: Restrained
    alert: list[str] = Field(default_factory=list)
    # Fuzzy handle similarity (0–100) at or above which an author is a suspected alt.
    fuzzy_threshold: int = Field(default=85, ge=50, le=100)
    # Hits of this case from one author within this window form one violation.
    group_window: Duration = Field(default=timedelta(minutes=10))
    # Local time zone for reports (IANA name); evidence is always kept in UTC.
    timezone: Zone = ZoneInfo("UTC")

    @field_validator("id")
    @classmethod
    def _id_is_slug(cls, value: str) -> str:
        if not _CASE_ID.match(value):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 100)")
        return value


def _clock_time(value: object) -> object:
    if isinstance(value, time):
        return value
    # A string, so that YAML's 1.1 sexagesimal ints (08:00 → 480) never slip through.
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", value.strip()):
        raise ValueError('write a time of day in quotes, like "08:00"')
    hour, _, rest = value.strip().partition(":")
    return time.fromisoformat(f"{int(hour):02d}:{rest}")


def _time_range(value: object) -> object:
    if isinstance(value, tuple) and all(isinstance(part, time) for part in value):
        return value
    if not isinstance(value, str) or value.count("-") != 1:
        raise ValueError('write it like "22:00-07:00"')
    start, end = (_clock_time(part.strip()) for part in value.split("-"))
    if start == end:
        raise ValueError("start and end must differ")
    return (start, end)


ClockTime = Annotated[time, BeforeValidator(_clock_time)]
TimeRange = Annotated[tuple[time, time], BeforeValidator(_time_range)]


class Route(_Strict):
    # A URL written as ${VAR:-} with VAR unset is null and dropped: the route then sends
    # nothing, which is how the example config runs before an alert URL is set.
    urls: list[Annotated[str, AfterValidator(_apprise_url)]]
    min_severity: Severity = "low"
    include_content: bool = False
    group_wait: Duration = Field(default=timedelta(seconds=60))
    operator: bool = False
    # README "Alerts on your phone": follow-ups, flood control, quiet hours, digest.
    group_interval: Duration = Field(default=timedelta(minutes=5))
    max_per_hour: int = Field(default=12, ge=1)
    quiet_hours: TimeRange | None = None  # in the case's time zone
    break_through: Severity = "high"
    digest: ClockTime | None = None

    @field_validator("group_interval")
    @classmethod
    def _at_least_ten_seconds(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=10):
            raise ValueError("must be at least 10s")
        return value

    @field_validator("urls", mode="before")
    @classmethod
    def _drop_unset(cls, value: object) -> object:
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one Apprise URL")
            return [url for url in value if url is not None]
        return value

    @field_validator("group_wait")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value


WebRole = Literal["owner", "advocate", "viewer"]


class WebUser(_Strict):
    """One account of the web view (#17); ``password_hash`` from ``web hash-password``."""

    password_hash: str = Field(min_length=1)
    role: WebRole = "viewer"
    cases: list[str] = Field(min_length=1)
    totp_secret: SecretStr | None = None  # base32; optional second factor
    show_content: bool = False  # evidence text shown without asking


class WebSettings(_Strict):
    bind: str = Field(default="127.0.0.1:8080", pattern=r"^[^\s:]+:\d{1,5}$")
    users: dict[str, WebUser] = Field(default_factory=dict)
    # Signs session cookies; when unset, a random key per start (sessions end on restart).
    secret_key: SecretStr | None = Field(default=None, min_length=32)


class Settings(_Strict):
    """The whole config file."""

    database: Annotated[str, AfterValidator(_database_url)] = "sqlite:///nocontact.db"
    cases: list[CaseSettings] = Field(min_length=1)
    watchers: list[WatcherSettings] = Field(default_factory=list)
    alerts: dict[str, Route] = Field(default_factory=dict)
    # Polls in flight at once (each source still at most 2 per host).
    max_concurrent_polls: int = Field(default=16, ge=1, le=256)
    web: WebSettings = Field(default_factory=WebSettings)
    _positions: tuple[list[CaseSettings], dict[str, int]] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        problems = [*self._case_problems(), *self._watcher_problems(), *self._web_problems()]
        if problems:
            raise SettingsProblems(problems)
        return self

    def _case_problems(self) -> Iterable[tuple[Loc, str]]:
        seen: set[str] = set()
        for index, case in enumerate(self.cases):
            if case.id in seen:
                yield ("cases", index, "id"), f"case id {case.id!r} is used twice"
            seen.add(case.id)
            for r_index, route_name in enumerate(case.alert):
                if route_name not in self.alerts:
                    yield (
                        ("cases", index, "alert", r_index),
                        _unknown_name("alert route", route_name, self.alerts, "alerts"),
                    )

    def _watcher_problems(self) -> Iterable[tuple[Loc, str]]:
        case_ids = {case.id for case in self.cases}
        seen: set[str] = set()
        for index, watcher in enumerate(self.watchers):
            name = watcher.display_name
            if name in seen:
                yield (
                    ("watchers", index, "name"),
                    f"watcher name {name!r} is used twice; give each watcher its own name",
                )
            seen.add(name)
            for c_index, case_id in enumerate(watcher.cases or []):
                if case_id not in case_ids:
                    yield (
                        ("watchers", index, "cases", c_index),
                        _unknown_name("case", case_id, case_ids, "cases"),
                    )
            if watcher.every < MIN_POLL_INTERVAL:
                yield ("watchers", index, "every"), "must be at least 10s"

    # Pinged after each good cycle (a healthchecks.io or Uptime Kuma push URL).
    heartbeat_url: str | None = None
    # Links in alerts: <public_url>/v/<violation id>.
    public_url: str | None = None

    @field_validator("heartbeat_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # ${HEARTBEAT_URL:-} left empty: not configured
        if not re.match(r"^https?://[^/\s]+", value.strip()):
            raise ValueError("must be an http:// or https:// URL")
        return value.strip().rstrip("/")

    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)

    def _web_problems(self) -> Iterable[tuple[Loc, str]]:
        # A mistyped case would silently hide that case from its advocate.
        case_ids = {case.id for case in self.cases}
        for name, user in self.web.users.items():
            for index, case_id in enumerate(user.cases):
                if case_id not in case_ids:
                    yield (
                        ("web", "users", name, "cases", index),
                        _unknown_name("case", case_id, case_ids, "cases"),
                    )

    @property
    def case_positions(self) -> dict[str, int]:
        """Case id → its place in ``cases``: every poll asks for its watcher's cases, and
        a clinic has 10,000 of them (#15). Built once per ``cases`` list (the settings
        are frozen; a ``model_copy`` with other cases gets its own)."""
        cached = self._positions
        if cached is None or cached[0] is not self.cases:
            cached = (self.cases, {case.id: index for index, case in enumerate(self.cases)})
            self._positions = cached
        return cached[1]

    def case(self, case_id: str) -> CaseSettings:
        return self.cases[self.case_positions[case_id]]

    def operator_routes(self) -> list[str]:
        marked = [name for name, route in self.alerts.items() if route.operator]
        # A route with no URL (an unset ${VAR:-}) sends nothing, so nothing is queued.
        return [name for name in marked or list(self.alerts) if self.alerts[name].urls]

    def cases_for(self, watcher: WatcherSettings) -> list[CaseSettings]:
        if watcher.cases is None:
            return list(self.cases)
        positions = self.case_positions
        # In the config's order, as before; ids are checked against the cases on load.
        places = sorted({positions[case_id] for case_id in watcher.cases if case_id in positions})
        return [self.cases[place] for place in places]
