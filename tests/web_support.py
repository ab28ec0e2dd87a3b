"""A populated store, web settings and a logged-in client for the web view's tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from service.settings import Settings
from service.web.app import create_app
from service.web.auth import hash_password
from tests.fakes.evidence_data import (
    CASE_ID,
    HOSTILE_IMG,
    HOSTILE_RTL,
    HOSTILE_SCRIPT,
    OTHER_CASE_ID,
    Populated,
    populate,
    sqlite_sessions,
)

PASSWORD = "correct horse battery staple"
LONG_POST = ("Alex " + "x" * 300 + "\n") * 330 + "END-OF-LONG-POST"  # ~100 kB
TEXTS = ["before the order", HOSTILE_SCRIPT, HOSTILE_IMG, HOSTILE_RTL, LONG_POST]
HOSTILE_AUTHOR = "<script>alert('author')</script>\u202eevil"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
# Hashed once: argon2id is slow on purpose.
_HASH = hash_password(PASSWORD)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def _case(case_id: str) -> dict[str, Any]:
    return {
        "id": case_id,
        "order": {"effective": "2026-01-15", "expires": "2027-01-15"},
        "protected": {"names": ["Alex Smith"], "handles": {"reddit": ["alex_smith"]}},
        "restrained": {"names": ["John Doe"], "handles": {"reddit": ["jdoe"]}},
        "timezone": "Europe/Berlin",
    }


def web_settings(database: str, **extra_users: dict[str, Any]) -> Settings:
    users: dict[str, Any] = {
        "alex": {"password_hash": _HASH, "role": "owner", "cases": [CASE_ID]},
        "ada": {"password_hash": _HASH, "role": "advocate", "cases": [CASE_ID, OTHER_CASE_ID]},
        "vic": {"password_hash": _HASH, "role": "viewer", "cases": [CASE_ID]},
        "tom": {
            "password_hash": _HASH,
            "role": "owner",
            "cases": [CASE_ID],
            "totp_secret": TOTP_SECRET,
        },
        **extra_users,
    }
    return Settings.model_validate(
        {
            "database": database,
            "cases": [_case(CASE_ID), _case(OTHER_CASE_ID)],
            "web": {"users": users, "secret_key": "k" * 40},
        }
    )


@dataclass
class WebStore:
    engine: Engine
    sessions: sessionmaker[Session]
    populated: Populated
    settings: Settings


def web_store(tmp_path: Path) -> WebStore:
    engine, sessions = sqlite_sessions(tmp_path)
    populated = populate(sessions, violations=6, texts=TEXTS)
    with sessions.begin() as session:
        from service.models import Evidence

        # A hostile author name on one item: handles are platform text too.
        item = session.query(Evidence).filter(Evidence.seq == populated.evidence_seqs[1]).one()
        item.author_display_name = HOSTILE_AUTHOR
    return WebStore(engine, sessions, populated, web_settings(f"sqlite:///{tmp_path}/store.db"))


def client_for(store: WebStore, clock: Clock, settings: Settings | None = None) -> TestClient:
    app = create_app(settings or store.settings, store.engine, clock=clock)
    return TestClient(app, follow_redirects=False)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def log_in(client: TestClient, name: str = "alex", password: str = PASSWORD, code: str = "") -> Any:
    page = client.get("/login")
    return client.post(
        "/login",
        data={"csrf": csrf_of(page.text), "username": name, "password": password, "code": code},
    )
