"""``nocontact check --online``: what a config check cannot see from the file alone.

It opens the database for writing (then rolls back) and polls each watcher once,
storing nothing. Polls only read: watchers never write to a platform.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

from service.config import LoadedConfig
from service.db import StoreError, database_errors, make_engine, migrate, session_factory
from service.models import Heartbeat
from service.pipeline import build_watcher
from watchers.base import WatcherError


@dataclasses.dataclass(frozen=True, slots=True)
class CheckLine:
    what: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.what}: {'ok' if self.ok else 'FAILED'} — {self.detail}"


def online_checks(loaded: LoadedConfig) -> Iterator[CheckLine]:
    yield check_database(loaded)
    for watcher in loaded.settings.watchers:
        yield check_watcher(loaded, watcher.display_name)


def check_database(loaded: LoadedConfig) -> CheckLine:
    engine = make_engine(loaded.settings.database, loaded.base_dir)
    try:
        with database_errors(engine):
            migrate(engine)
            session = session_factory(engine)()
            try:
                # A write proves the permissions; rolled back, it leaves no trace.
                now = datetime.now(UTC)
                session.add(Heartbeat(instance="nocontact check --online", beat_at=now,
                                      started_at=now))  # fmt: skip
                session.flush()
            finally:
                session.rollback()
                session.close()
    except StoreError as exc:
        return CheckLine("database", False, str(exc))
    finally:
        engine.dispose()
    return CheckLine("database", True, "opened for writing")


def check_watcher(loaded: LoadedConfig, name: str) -> CheckLine:
    settings = loaded.settings
    watcher_settings = next(w for w in settings.watchers if w.display_name == name)
    label = f"watcher {name}"
    try:
        watcher = build_watcher(settings, watcher_settings)
    except WatcherError as exc:
        return CheckLine(label, False, str(exc))
    try:
        result = watcher.poll({})
    except WatcherError as exc:
        return CheckLine(label, False, str(exc))
    except Exception as exc:  # noqa: BLE001 - a check reports; its text may hold a token
        return CheckLine(label, False, f"unexpected {type(exc).__name__}")
    finally:
        watcher.close()
    return CheckLine(label, True, f"read {len(result.observations)} item(s); nothing stored")
