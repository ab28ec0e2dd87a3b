"""Delivery under crashes and replicas (#10 item 4): claims name their dispatcher, so a
claim of a process that is gone is taken over at once while a live replica's claim is
honoured, also by ``run --once``; "sending" is logged before each send; backoff is per
target, so a target that answers again gets everything queued for it, oldest first."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from service import models
from service.alerts import IN_FLIGHT, LEASE, AlertDispatcher
from tests.fakes.smtp_server import FakeSmtpServer, smtp_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_alerts import (  # noqa: F401
    NOW,
    add_violation,
    attempts,
    make_settings,
    outbox,
    queue_violation_alert,
    sessions,
)


def _claim(sessions: sessionmaker[Session], row_id: int, claimer: str) -> None:  # noqa: F811
    with sessions.begin() as session:
        session.execute(
            update(models.OutboxAlert)
            .where(models.OutboxAlert.id == row_id)
            .values(next_attempt_at=NOW + LEASE, claimed_by=claimer)
        )


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_claim_of_a_process_that_is_gone_is_taken_over_at_once(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],  # noqa: F811
) -> None:
    settings = make_settings({"phone": {"urls": [smtp_server.mailto_url()]}})
    row_id = queue_violation_alert(sessions, add_violation(sessions), "phone")
    _claim(sessions, row_id, f"{socket.gethostname()}:{_gone_pid()}")

    report = AlertDispatcher(settings, sessions).deliver_due(NOW + timedelta(seconds=5))

    assert report.sent == 1
    assert len(smtp_server.messages) == 1
    row = outbox(sessions, row_id)
    assert row.claimed_by is None
    assert row.state == "sent"


def test_run_once_honours_a_live_replicas_claim(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],  # noqa: F811
) -> None:
    settings = make_settings({"phone": {"urls": [smtp_server.mailto_url()]}})
    row_id = queue_violation_alert(sessions, add_violation(sessions), "phone")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as replica:
        try:
            _claim(sessions, row_id, f"{socket.gethostname()}:{replica.pid}")
            dispatcher = AlertDispatcher(settings, sessions)
            report = dispatcher.deliver_due(NOW + timedelta(seconds=5), ignore_group_wait=True)
            assert report.sent == 0
            assert smtp_server.messages == []
            # Its lease ended without an outcome: the row is taken over.
            assert dispatcher.deliver_due(NOW + LEASE).sent == 1
        finally:
            replica.kill()


def test_a_message_left_in_flight_by_a_crash_is_sent_again_once(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],  # noqa: F811
) -> None:
    url = smtp_server.mailto_url()
    settings = make_settings({"phone": {"urls": [url]}})
    row_id = queue_violation_alert(sessions, add_violation(sessions), "phone")
    dispatcher = AlertDispatcher(settings, sessions)
    # The state a SIGKILL between "sending" and the result leaves behind.
    claimed = dispatcher._claim([(row_id, NOW)], NOW)
    dispatcher._mark_sending(claimed, "key", "mailto://…", "m-1", NOW)
    with sessions.begin() as session:
        session.execute(
            update(models.OutboxAlert)
            .where(models.OutboxAlert.id == row_id)
            .values(claimed_by=f"{socket.gethostname()}:{_gone_pid()}")
        )

    assert dispatcher.deliver_due(NOW + timedelta(seconds=1)).sent == 1
    assert dispatcher.deliver_due(NOW + timedelta(seconds=2)).sent == 0
    assert len(smtp_server.messages) == 1
    log = attempts(sessions, row_id)
    assert [a.error for a in log] == [IN_FLIGHT, None]
    assert log[-1].ok


def test_a_target_back_after_an_outage_gets_everything_queued_oldest_first(
    webhook_receiver: WebhookReceiver,  # noqa: F811
    sessions: sessionmaker[Session],  # noqa: F811
) -> None:
    settings = make_settings({"phone": {"urls": [webhook_receiver.json_url()], "group_wait": "0s"}})
    dispatcher = AlertDispatcher(settings, sessions)
    webhook_receiver.fail_status = 503
    rows = []
    moment = NOW
    # Alerts queued through a long outage: the oldest has failed the most times.
    for _ in range(4):
        rows.append(
            queue_violation_alert(sessions, add_violation(sessions), "phone", due_at=moment)
        )
        for _ in range(3):
            dispatcher.deliver_due(moment)
            moment += timedelta(minutes=30)
    assert all(outbox(sessions, r).state == "pending" for r in rows)
    webhook_receiver.fail_status = None
    webhook_receiver.clear()

    # The first moment any row is due again: the target answers, and every row goes.
    soonest = min(outbox(sessions, r).next_attempt_at for r in rows)
    report = dispatcher.deliver_due(soonest.replace(tzinfo=NOW.tzinfo))

    assert report.sent == 4
    assert all(outbox(sessions, r).state == "sent" for r in rows)
    sent_order = [
        attempt.outbox_id for r in rows for attempt in attempts(sessions, r) if attempt.ok
    ]
    assert sorted(sent_order) == sorted(rows)
    firsts = sorted(rows, key=lambda r: next(a.id for a in attempts(sessions, r) if a.ok))
    assert firsts == rows  # oldest first
