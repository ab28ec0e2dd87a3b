"""Re-reading captured Mastodon statuses for deletions and edits (#12 item 4, #14 item 2).

Each status is read again by its id on the watcher's instance (``GET
/api/v1/statuses/:id`` through Mastodon.py's ``status``), the id being the one in the
stored raw JSON (the status as this instance served it):

* 404 or 410: gone. If its account now answers as suspended, the status is
  ``unavailable: account suspended`` (not the author's doing); otherwise ``deleted``.
* a status whose ``edited_at`` differs from the stored one: ``edited``, the new
  version read with its edit history, as polling stores an edit;
* an account marked ``suspended``: ``unavailable: account suspended``;
* else ``unchanged``.

A 429 ends the run: the statuses not read yet are left for a later re-check, and none
is asked for before the instance's ``X-RateLimit-Reset``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from mastodon import errors as mastodon_errors

from watchers.base import (
    Observation,
    RateLimitedError,
    RecheckItem,
    RecheckResult,
    TransientError,
    utc,
)
from watchers.mastodon_entities import text_of

log = logging.getLogger(__name__)

GONE = (404, 410)
SUSPENDED = "account suspended"


class Gone(Exception):
    """The instance answered 404 or 410."""


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a translated Mastodon.py API error, if any."""
    cause = exc.__cause__
    if isinstance(cause, mastodon_errors.MastodonAPIError) and len(cause.args) > 1:
        status = cause.args[1]
        return status if isinstance(status, int) else None
    return None


def stored_status(raw: bytes | None) -> dict[str, Any] | None:
    """The status as captured: raw is the status, or ``{"status", "history"}`` for an
    edited one."""
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("history"), list):
        value = value.get("status")
    if isinstance(value, dict) and text_of(value.get("id")):
        return value
    return None


class StatusRecheck:
    """One re-check run over a watcher's captured statuses."""

    def __init__(
        self,
        status: Callable[[str], dict[str, Any]],
        account: Callable[[str], dict[str, Any]],
        edited: Callable[[dict[str, Any]], Observation],
        clock: Callable[[], datetime],
    ) -> None:
        """``status``/``account`` read one entity by id (raising ``Gone`` on 404/410);
        ``edited`` turns a re-read status into its new version."""
        self._status = status
        self._account = account
        self._edited = edited
        self._clock = clock
        self.not_before: datetime | None = None

    def run(self, items: Sequence[RecheckItem]) -> list[RecheckResult]:
        results: list[RecheckResult] = []
        if self.not_before is not None and utc(self._clock()) < self.not_before:
            return results  # the instance asked us to wait: everything is left for later
        for item in items:
            stored = stored_status(item.raw)
            if stored is None:
                continue  # not a status captured by this watcher: nothing to read by id
            try:
                results.append(self._judge(item, stored))
            except RateLimitedError as exc:
                wait = exc.retry_after if exc.retry_after is not None else 300.0
                self.not_before = utc(self._clock()) + timedelta(seconds=wait)
                break
            except TransientError as exc:
                log.info("re-check of %s left for later: %s", item.native_id, exc)
        return results

    def _judge(self, item: RecheckItem, stored: dict[str, Any]) -> RecheckResult:
        try:
            status = self._status(stored["id"])
        except Gone:
            account_id = text_of((stored.get("account") or {}).get("id"))
            if account_id is not None and self._suspended(account_id):
                return RecheckResult(item.native_id, "unavailable", SUSPENDED)
            return RecheckResult(item.native_id, "deleted", "deleted by its author")
        if (status.get("account") or {}).get("suspended") is True:
            return RecheckResult(item.native_id, "unavailable", SUSPENDED)
        shown = _shown(status)
        edited_at = text_of(shown.get("edited_at"))
        if edited_at is not None and edited_at != text_of(_shown(stored).get("edited_at")):
            return RecheckResult(
                item.native_id, "edited", "edited by its author", self._edited(status)
            )
        return RecheckResult(item.native_id, "unchanged")

    def _suspended(self, account_id: str) -> bool:
        try:
            account = self._account(account_id)
        except Gone:
            return False  # the account is gone too: deleted with it by its owner
        return account.get("suspended") is True


def _shown(status: dict[str, Any]) -> dict[str, Any]:
    reblog = status.get("reblog")
    return reblog if isinstance(reblog, dict) else status
