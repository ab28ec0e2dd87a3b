"""Validated settings: the config.yaml contract as pydantic models.

Loading (YAML, ``${VAR}`` interpolation, line numbers in errors) is in ``service.config``.
Watcher settings are validated by each watcher type's own ``settings_model``.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from watchers.base import Duration, WatcherSettings

Severity = Literal["low", "medium", "high"]
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
Term = Literal["no_contact", "no_mention"]

_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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
    timezone: str = "UTC"

    @field_validator("id")
    @classmethod
    def _id_is_slug(cls, value: str) -> str:
        if not _CASE_ID.match(value):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 100)")
        return value


class Route(_Strict):
    urls: list[str] = Field(min_length=1)
    min_severity: Severity = "low"
    include_content: bool = False
    group_wait: Duration = Field(default=timedelta(seconds=60))
    operator: bool = False


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

    database: str = "sqlite:///nocontact.db"
    cases: list[CaseSettings] = Field(min_length=1)
    watchers: list[WatcherSettings] = Field(default_factory=list)
    alerts: dict[str, Route] = Field(default_factory=dict)
    web: WebSettings = Field(default_factory=WebSettings)

    def case(self, case_id: str) -> CaseSettings:
        for case in self.cases:
            if case.id == case_id:
                return case
        raise KeyError(case_id)

    def operator_routes(self) -> list[str]:
        marked = [name for name, route in self.alerts.items() if route.operator]
        return marked or list(self.alerts)

    def cases_for(self, watcher: WatcherSettings) -> list[CaseSettings]:
        if watcher.cases is None:
            return list(self.cases)
        wanted = set(watcher.cases)
        return [case for case in self.cases if case.id in wanted]
