"""Alert delivery through Apprise to real local targets (SMTP, JSON webhook, ntfy)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from service import models
from service.alerts import (
    CLOSING_LINE,
    LEASE,
    MAX_ROWS_PER_MESSAGE,
    AlertConfigError,
    AlertDispatcher,
    mask_url,
    target_key,
)
from service.evidence import sha256_hex
from service.planner import AlertPlanner
from service.settings import Settings
from tests.fakes.smtp_server import FakeSmtpServer, plain_text, smtp_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401

NOW = datetime(2026, 5, 1, 10, 1, 30, tzinfo=UTC)
POSTED = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)
ABUSIVE_TEXT = "Alex you cannot hide from me, I know where you are"
CASE_ID = "smith-v-doe"


def make_settings(routes: dict[str, dict[str, Any]]) -> Settings:
    return Settings.model_validate(
        {
            "database": "sqlite://",
            "cases": [
                {
                    "id": CASE_ID,
                    "order": {
                        "effective": "2026-01-15",
                        "expires": "2027-01-15",
                        "reference": "PO-2026-1234",
                        "terms": ["no_contact", "no_mention"],
                    },
                    "protected": {"names": ["Alex Smith"], "handles": {"reddit": ["alex_smith"]}},
                    "restrained": {"names": ["John Doe"], "handles": {"reddit": ["jdoe"]}},
                    "alert": list(routes),
                    "timezone": "Europe/Berlin",
                }
            ],
            "alerts": routes,
        }
    )


def add_case(engine: Engine) -> sessionmaker[Session]:
    with Session(engine) as session, session.begin():
        session.add(
            models.Case(
                id=CASE_ID,
                reference="PO-2026-1234",
                effective=date(2026, 1, 15),
                expires=date(2027, 1, 15),
                definition={},
                updated_at=NOW,
            )
        )
    return sessionmaker(engine)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A SQLite file with the ORM's tables (most tests)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'alerts.db'}")
    models.Base.metadata.create_all(engine)
    yield add_case(engine)
    engine.dispose()


@pytest.fixture
def migrated_sessions(engine: Engine) -> sessionmaker[Session]:
    """The suite's migrated database: SQLite, and PostgreSQL where available."""
    return add_case(engine)


_seq = iter(range(1, 10_000))


def add_violation(
    sessions: sessionmaker[Session],
    *,
    text: str = ABUSIVE_TEXT,
    kind: str = "contact",
    severity: str = "high",
    suspected: bool = False,
    score: float | None = None,
    native_id: str | None = None,
) -> str:
    seq = next(_seq)
    native_id = native_id or f"t1_{seq}"
    violation_id = str(uuid.uuid4())
    with sessions.begin() as session:
        evidence = models.Evidence(
            seq=seq,
            platform="reddit",
            native_id=native_id,
            version=1,
            kind="reply",
            url=f"https://www.reddit.com/r/x/comments/abc/_/{native_id}/",
            author_handle="jdoe",
            author_id="t2_jdoe",
            addressed_to=["alex_smith"],
            text=text,
            posted_at=POSTED,
            captured_at=POSTED + timedelta(seconds=30),
            watcher="reddit",
            raw=b"{}",
            raw_content_type="application/json",
            raw_sha256=sha256_hex(b"{}"),
            content_sha256=sha256_hex(native_id.encode()),
            text_fingerprint=sha256_hex(text.encode()),
            sha256=sha256_hex(f"r{seq}".encode()),
            chain_sha256=sha256_hex(f"c{seq}".encode()),
        )
        violation = models.Violation(
            id=violation_id,
            case_id=CASE_ID,
            kind=kind,
            severity=severity,
            suspected=suspected,
            score=score,
            reason="author `jdoe` is the restrained party; replied to `alex_smith`",
            author_key="jdoe",
            first_seen=POSTED,
            last_seen=POSTED,
            created_at=POSTED,
        )
        session.add_all([evidence, violation])
        session.flush()
        session.add(
            models.ViolationEvidence(
                violation_id=violation_id, evidence_id=evidence.id, reason="reply"
            )
        )
    return violation_id


def queue_violation_alert(
    sessions: sessionmaker[Session],
    violation_id: str,
    route: str,
    *,
    due_at: datetime = NOW,
    severity: str = "high",
) -> int:
    """As the store does: one row per (violation, route), rendered at send time."""
    with sessions.begin() as session:
        row = models.OutboxAlert(
            dedup_key=f"violation:{violation_id}:{route}",
            route=route,
            category="violation",
            violation_id=violation_id,
            severity=severity,
            created_at=due_at - timedelta(seconds=60),
            due_at=due_at,
            next_attempt_at=due_at,
        )
        session.add(row)
        session.flush()
        return row.id


def outbox(sessions: sessionmaker[Session], row_id: int) -> models.OutboxAlert:
    with sessions() as session:
        row = session.get(models.OutboxAlert, row_id)
        assert row is not None
        session.expunge(row)
        return row


def attempts(sessions: sessionmaker[Session], row_id: int) -> list[models.DeliveryAttempt]:
    with sessions() as session:
        found = session.scalars(
            select(models.DeliveryAttempt)
            .where(models.DeliveryAttempt.outbox_id == row_id)
            .order_by(models.DeliveryAttempt.id)
        ).all()
        session.expunge_all()
        return list(found)


# --------------------------------------------------------------------------- content


def test_email_alert_states_the_facts_without_quoting_the_text(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [smtp_server.mailto_url(to="alex@example.org")]}})
    violation_id = add_violation(sessions)
    row_id = queue_violation_alert(sessions, violation_id, "phone")

    report = AlertDispatcher(settings, sessions).deliver_due(NOW)

    assert (report.sent, report.failed, report.still_pending) == (1, 0, 0)
    [message] = smtp_server.messages
    assert message["Subject"] == "nocontact: HIGH — contact by restrained party (smith-v-doe)"
    assert message["To"] == "alex@example.org"
    body = plain_text(message)
    for expected in (
        "Case: smith-v-doe · order PO-2026-1234",
        "Kind: contact",
        "Severity: high",
        "Platform: reddit",
        "Author: jdoe",
        "2026-05-01T10:00:00Z",
        "2026-05-01 12:00 CEST, Europe/Berlin",
        "replied to `alex_smith`",
        "https://www.reddit.com/r/x/comments/abc/_/",
        "Evidence: 1 item(s)",
        f"Violation id: {violation_id}",
    ):
        assert expected in body
    assert "hide from me" not in body
    assert "hide from me" not in (message["Subject"] or "")
    assert body.rstrip().endswith(CLOSING_LINE)

    row = outbox(sessions, row_id)
    assert (row.state, row.sent_at, row.attempts, row.last_error) == ("sent", NOW, 1, None)
    [attempt] = attempts(sessions, row_id)
    assert attempt.ok
    assert attempt.error is None
    assert attempt.target_key == target_key(smtp_server.mailto_url(to="alex@example.org"))
    assert attempt.target.startswith(f"mailto://127.0.0.1:{smtp_server.port}")


def test_include_content_quotes_the_text_truncated(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings(
        {"lawyer": {"urls": [smtp_server.mailto_url()], "include_content": True}}
    )
    long_text = ABUSIVE_TEXT + " " + "x" * 900 + " END-OF-POST"
    queue_violation_alert(sessions, add_violation(sessions, text=long_text), "lawyer")

    AlertDispatcher(settings, sessions).deliver_due(NOW)

    body = plain_text(smtp_server.messages[0])
    assert "Quoted content" in body
    assert f"> {ABUSIVE_TEXT}" in body
    assert "END-OF-POST" not in body
    quoted = next(line for line in body.splitlines() if line.startswith("  > "))
    assert len(quoted) <= 500 + len("  > ")
    assert quoted.endswith("…")


def test_suspected_alt_alert_says_suspected_with_score(
    webhook_receiver: WebhookReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [webhook_receiver.json_url("/alerts")]}})
    violation_id = add_violation(sessions, kind="suspected_alt", suspected=True, score=92.0)
    queue_violation_alert(sessions, violation_id, "phone")

    AlertDispatcher(settings, sessions).deliver_due(NOW)

    [request] = webhook_receiver.accepted
    assert request.path == "/alerts"
    payload = request.json
    assert payload["title"].startswith("nocontact: HIGH — suspected contact")
    assert "suspected (score 92)" in payload["message"]
    assert payload["type"] == "warning"
    assert "hide from me" not in payload["message"]


def test_ntfy_target_receives_the_alert(
    webhook_receiver: WebhookReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [webhook_receiver.ntfy_url("alex-alerts")]}})
    queue_violation_alert(sessions, add_violation(sessions), "phone")

    report = AlertDispatcher(settings, sessions).deliver_due(NOW)

    assert report.sent == 1
    [request] = webhook_receiver.accepted
    assert request.json["topic"] == "alex-alerts"
    assert "contact by restrained party" in request.json["title"]


def test_rows_due_together_share_one_message(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [smtp_server.mailto_url()]}})
    first = add_violation(sessions)
    second = add_violation(sessions, kind="mention", severity="medium")
    rows = [
        queue_violation_alert(sessions, first, "phone"),
        queue_violation_alert(sessions, second, "phone", severity="medium"),
    ]

    report = AlertDispatcher(settings, sessions).deliver_due(NOW)

    assert report.sent == 2
    [message] = smtp_server.messages
    assert message["Subject"] == "nocontact: HIGH — 2 alerts (smith-v-doe)"
    body = plain_text(message)
    assert body.startswith("2 alerts: 1 high, 1 medium.")
    assert first in body
    assert second in body
    # The high one comes first.
    assert body.index(first) < body.index(second)
    for row_id in rows:
        assert outbox(sessions, row_id).state == "sent"
        assert [a.ok for a in attempts(sessions, row_id)] == [True]


def test_a_large_backlog_is_split_into_readable_messages(
    webhook_receiver: WebhookReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [webhook_receiver.json_url()]}})
    for _ in range(MAX_ROWS_PER_MESSAGE + 1):
        queue_violation_alert(sessions, add_violation(sessions), "phone")

    report = AlertDispatcher(settings, sessions).deliver_due(NOW)

    assert report.sent == MAX_ROWS_PER_MESSAGE + 1
    titles = [r.json["title"] for r in webhook_receiver.accepted]
    assert titles == [
        f"nocontact: HIGH — {MAX_ROWS_PER_MESSAGE} alerts (smith-v-doe)",
        "nocontact: HIGH — contact by restrained party (smith-v-doe)",
    ]


# --------------------------------------------------------------------------- exactly once


def test_second_pass_sends_nothing(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [smtp_server.mailto_url()]}})
    queue_violation_alert(sessions, add_violation(sessions), "phone")
    dispatcher = AlertDispatcher(settings, sessions)

    assert dispatcher.deliver_due(NOW).sent == 1
    again = dispatcher.deliver_due(NOW + timedelta(hours=5), ignore_group_wait=True)

    assert (again.sent, again.failed, again.still_pending) == (0, 0, 0)
    assert len(smtp_server.messages) == 1


def test_target_down_then_back_delivers_exactly_once(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [smtp_server.mailto_url()]}})
    row_id = queue_violation_alert(sessions, add_violation(sessions), "phone")
    dispatcher = AlertDispatcher(settings, sessions)
    smtp_server.stop()

    down = dispatcher.deliver_due(NOW)

    assert (down.sent, down.failed, down.still_pending) == (0, 1, 1)
    row = outbox(sessions, row_id)
    assert (row.state, row.attempts) == ("pending", 1)
    assert f"127.0.0.1:{smtp_server.port}" in (row.last_error or "")
    assert timedelta(seconds=30) <= row.next_attempt_at - NOW <= timedelta(seconds=33)
    assert [a.ok for a in attempts(sessions, row_id)] == [False]
    assert len(down.errors) == 1
    assert down.errors[0].startswith("route phone: mailto://127.0.0.1")

    # Still backing off: nothing is attempted.
    assert dispatcher.deliver_due(NOW + timedelta(seconds=10)).failed == 0
    assert len(attempts(sessions, row_id)) == 1

    # Down again at the retry: the backoff doubles.
    dispatcher.deliver_due(NOW + timedelta(seconds=40))
    row = outbox(sessions, row_id)
    assert row.attempts == 2
    assert timedelta(seconds=60) <= row.next_attempt_at - (NOW + timedelta(seconds=40))

    smtp_server.start()
    later = NOW + timedelta(hours=2)
    back = dispatcher.deliver_due(later)

    assert (back.sent, back.failed, back.still_pending) == (1, 0, 0)
    assert len(smtp_server.messages) == 1
    row = outbox(sessions, row_id)
    assert (row.state, row.sent_at, row.attempts) == ("sent", later, 3)
    assert [a.ok for a in attempts(sessions, row_id)] == [False, False, True]
    assert dispatcher.deliver_due(later + timedelta(hours=2)).sent == 0
    assert len(smtp_server.messages) == 1


def test_working_target_is_not_sent_twice_while_the_other_is_down(
    smtp_server: FakeSmtpServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings(
        {"phone": {"urls": [webhook_receiver.json_url(), smtp_server.mailto_url()]}}
    )
    row_id = queue_violation_alert(sessions, add_violation(sessions), "phone")
    dispatcher = AlertDispatcher(settings, sessions)
    smtp_server.stop()

    for hours in (0, 2, 4):
        report = dispatcher.deliver_due(NOW + timedelta(hours=hours))
        assert report.failed == 1

    assert len(webhook_receiver.accepted) == 1
    assert outbox(sessions, row_id).state == "pending"

    smtp_server.start()
    report = dispatcher.deliver_due(NOW + timedelta(hours=6))

    assert report.sent == 1
    assert len(webhook_receiver.accepted) == 1
    assert len(smtp_server.messages) == 1
    oks = [(a.target_key, a.ok) for a in attempts(sessions, row_id)]
    json_key = target_key(webhook_receiver.json_url())
    mail_key = target_key(smtp_server.mailto_url())
    assert oks.count((json_key, True)) == 1
    assert oks.count((mail_key, False)) == 3
    assert oks.count((mail_key, True)) == 1


def test_failing_http_status_is_a_failed_attempt(
    webhook_receiver: WebhookReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [webhook_receiver.json_url()]}})
    row_id = queue_violation_alert(sessions, add_violation(sessions), "phone")
    dispatcher = AlertDispatcher(settings, sessions)
    webhook_receiver.fail_status = 500

    assert dispatcher.deliver_due(NOW).failed == 1
    [failed] = attempts(sessions, row_id)
    assert not failed.ok
    assert "500" in (failed.error or "")

    webhook_receiver.fail_status = None
    assert dispatcher.deliver_due(NOW + timedelta(hours=1)).sent == 1
    assert len(webhook_receiver.accepted) == 1


def test_target_already_confirmed_before_a_crash_is_not_sent_again(
    smtp_server: FakeSmtpServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    """A crash after the webhook send was logged but before the row was finished:
    the restart sends only to the target without a successful attempt."""
    json_url = webhook_receiver.json_url()
    settings = make_settings({"phone": {"urls": [json_url, smtp_server.mailto_url()]}})
    row_id = queue_violation_alert(sessions, add_violation(sessions), "phone")
    with sessions.begin() as session:
        session.add(
            models.DeliveryAttempt(
                outbox_id=row_id,
                target_key=target_key(json_url),
                target=mask_url(json_url),
                attempted_at=NOW,
                ok=True,
            )
        )

    assert AlertDispatcher(settings, sessions).deliver_due(NOW).sent == 1

    assert webhook_receiver.requests == []
    assert len(smtp_server.messages) == 1


# --------------------------------------------------------------------------- timing and leases


def test_group_wait_is_respected_unless_ignored(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [smtp_server.mailto_url()], "group_wait": "60s"}})
    due = NOW + timedelta(seconds=60)
    queue_violation_alert(sessions, add_violation(sessions), "phone", due_at=due)
    dispatcher = AlertDispatcher(settings, sessions)

    early = dispatcher.deliver_due(NOW)
    assert (early.sent, early.still_pending) == (0, 1)
    assert smtp_server.messages == []

    assert dispatcher.deliver_due(due).sent == 1
    assert len(smtp_server.messages) == 1


def test_run_once_delivers_before_group_wait(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [smtp_server.mailto_url()]}})
    queue_violation_alert(
        sessions, add_violation(sessions), "phone", due_at=NOW + timedelta(seconds=60)
    )

    report = AlertDispatcher(settings, sessions).deliver_due(NOW, ignore_group_wait=True)

    assert report.sent == 1
    assert len(smtp_server.messages) == 1


def test_run_once_retries_a_row_still_in_backoff(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [smtp_server.mailto_url()]}})
    row_id = queue_violation_alert(sessions, add_violation(sessions), "phone")
    dispatcher = AlertDispatcher(settings, sessions)
    smtp_server.stop()
    assert dispatcher.deliver_due(NOW, ignore_group_wait=True).failed == 1
    smtp_server.start()

    report = dispatcher.deliver_due(NOW + timedelta(seconds=1), ignore_group_wait=True)

    assert report.sent == 1
    assert len(smtp_server.messages) == 1
    assert outbox(sessions, row_id).attempts == 2


def test_row_claimed_by_another_replica_is_left_alone_until_its_lease_ends(
    smtp_server: FakeSmtpServer,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [smtp_server.mailto_url()]}})
    row_id = queue_violation_alert(sessions, add_violation(sessions), "phone")
    # Another replica claimed it at NOW and is sending (or crashed while sending).
    with sessions.begin() as session:
        session.execute(
            update(models.OutboxAlert)
            .where(models.OutboxAlert.id == row_id)
            .values(next_attempt_at=NOW + LEASE)
        )
    dispatcher = AlertDispatcher(settings, sessions)

    assert dispatcher.deliver_due(NOW + timedelta(seconds=5)).sent == 0
    assert smtp_server.messages == []

    assert dispatcher.deliver_due(NOW + LEASE).sent == 1
    assert len(smtp_server.messages) == 1


# --------------------------------------------------------------------------- health alerts


def test_health_alert_is_queued_once_per_operator_route(
    smtp_server: FakeSmtpServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings(
        {
            "phone": {"urls": [webhook_receiver.json_url()]},
            "ops": {"urls": [smtp_server.mailto_url(to="ops@example.org")], "operator": True},
        }
    )
    for _ in range(2):
        with sessions.begin() as session:
            queued = AlertPlanner.from_settings(settings).queue_health(
                session,
                watcher="reddit",
                event="failing",
                message="reddit: HTTP 503 from oauth.reddit.com (3 polls in a row)",
                episode="2026-05-01T09:00:00Z",
                now=NOW,
            )
        assert queued == (1 if _ == 0 else 0)

    with sessions() as session:
        rows = session.scalars(select(models.OutboxAlert)).all()
        # Health is its own severity, below every violation (#18): never "HIGH".
        assert [(r.route, r.category, r.severity) for r in rows] == [("ops", "health", "operator")]
        assert rows[0].dedup_key == "health:reddit:failing:2026-05-01T09:00:00Z:ops"

    report = AlertDispatcher(settings, sessions).deliver_due(NOW)

    assert report.sent == 1
    assert webhook_receiver.requests == []
    [message] = smtp_server.messages
    assert message["Subject"] == "nocontact: source reddit is failing"
    assert "HTTP 503 from oauth.reddit.com" in plain_text(message)
    assert CLOSING_LINE not in plain_text(message)


def test_health_alert_goes_to_every_route_when_none_is_operator(
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings(
        {"phone": {"urls": ["json://127.0.0.1:9/a"]}, "mail": {"urls": ["json://127.0.0.1:9/b"]}}
    )
    with sessions.begin() as session:
        queued = AlertPlanner.from_settings(settings).queue_health(
            session,
            watcher="jdoe-blog",
            event="recovered",
            message="jdoe-blog polls again",
            episode="e1",
            now=NOW,
        )

    assert queued == 2
    with sessions() as session:
        rows = session.scalars(select(models.OutboxAlert).order_by(models.OutboxAlert.route))
        assert [(r.route, r.severity, r.due_at) for r in rows] == [
            ("mail", "operator", NOW),
            ("phone", "operator", NOW),
        ]


def test_health_enqueue_is_part_of_the_callers_transaction(
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": ["json://127.0.0.1:9/a"]}})
    with sessions() as session:
        AlertPlanner.from_settings(settings).queue_health(
            session,
            watcher="x",
            event="disabled",
            message="x: bearer token rejected",
            episode="e1",
            now=NOW,
        )
        session.rollback()
    with sessions() as session:
        assert session.scalars(select(models.OutboxAlert)).all() == []


# --------------------------------------------------------------------------- test alerts


def test_send_test_reaches_every_target_of_the_route(
    smtp_server: FakeSmtpServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings(
        {
            "phone": {"urls": [webhook_receiver.json_url(), smtp_server.mailto_url()]},
            "other": {"urls": ["json://127.0.0.1:9/never"]},
        }
    )

    results = AlertDispatcher(settings, sessions).send_test("phone", NOW)

    assert [(r.route, r.ok, r.error) for r in results] == [
        ("phone", True, None),
        ("phone", True, None),
    ]
    assert results[0].target_masked.startswith(f"json://127.0.0.1:{webhook_receiver.port}")
    assert (
        webhook_receiver.accepted[0].json["title"] == "nocontact: test notification (route phone)"
    )
    assert smtp_server.messages[0]["Subject"] == "nocontact: test notification (route phone)"


def test_send_test_reports_a_failing_target_and_unknown_routes(
    webhook_receiver: WebhookReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": [webhook_receiver.json_url()]}})
    dispatcher = AlertDispatcher(settings, sessions)
    webhook_receiver.stop()

    [result] = dispatcher.send_test(None, NOW)

    assert not result.ok
    assert "Connection error" in (result.error or "")
    with pytest.raises(AlertConfigError, match="unknown alert route 'nope'; configured: phone"):
        dispatcher.send_test("nope", NOW)


# --------------------------------------------------------------------------- secrets


SECRET_URLS = [
    "json://alex:s3cr3t-hook-pass@hooks.example.org/alerts?+X-Api-Key=AAAAs3cr3tKey",
    "ntfys://alex:s3cr3t-ntfy-pass@ntfy.example.org/alerts",
    "ntfys://tk_s3cr3t0123456789abcdef@ntfy.example.org/alerts",
    "ntfys://my-s3cr3t-topic",
    "mailtos://alex:s3cr3t-mail-pass@mail.example.org?to=alex@example.org",
    "tgram://123456789:AAs3cr3tBotToken0123456789/12345",
    "pover://us3cr3tuserkey0123456789@as3cr3tapptoken012345",
    "discord://1234567890/s3cr3tWebhookToken0123456789",
    "nosuchscheme://user:s3cr3t-unknown@host.example.org/s3cr3tpath?token=s3cr3t-q",
    "nosuchscheme://s3cr3ttokenashost/x",
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_masked_urls_never_contain_secrets(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    masked = mask_url(url)

    assert "s3cr3t" not in masked
    # Apprise itself debug-logs the URLs it loads: that must not reach the logs.
    assert "s3cr3t" not in caplog.text
    assert masked.split("://")[0] == url.split("://")[0]


def test_masked_url_keeps_what_identifies_the_target() -> None:
    assert mask_url("json://alex:s3cr3t-pw@hooks.example.org:8443/alerts") == (
        "json://alex:****@hooks.example.org:8443/alerts"
    )


def test_delivery_errors_and_logs_never_contain_secrets(
    webhook_receiver: WebhookReceiver,  # noqa: F811
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = webhook_receiver.port
    urls = [
        f"json://alex:s3cr3t-hook-pass@127.0.0.1:{port}/hook?+X-Api-Key=AAAAs3cr3tKey",
        "nosuchscheme://alex:s3cr3t-bad-pass@127.0.0.1/x",
    ]
    settings = make_settings({"phone": {"urls": urls}})
    row_id = queue_violation_alert(sessions, add_violation(sessions), "phone")
    webhook_receiver.fail_status = 500

    dispatcher = AlertDispatcher(settings, sessions)
    report = dispatcher.deliver_due(NOW)
    results = dispatcher.send_test("phone", NOW)

    # The secrets did reach the target (it needs them) ...
    assert webhook_receiver.requests[0].headers["X-Api-Key"] == "AAAAs3cr3tKey"
    assert webhook_receiver.requests[0].headers["Authorization"].startswith("Basic ")
    # ... and nowhere else.
    row = outbox(sessions, row_id)
    stored = [row.last_error or ""] + [f"{a.target} {a.error}" for a in attempts(sessions, row_id)]
    shown = [*report.errors, *(f"{r.target_masked} {r.error}" for r in results)]
    assert "not a valid or supported Apprise URL" in (row.last_error or "")
    assert len(stored) == 3
    assert len(shown) == 4
    for text in [*stored, *shown, caplog.text]:
        assert "s3cr3t" not in text
    assert "route=phone" in caplog.text


def test_row_for_a_route_no_longer_configured_stays_pending_with_reason(
    sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": ["json://127.0.0.1:9/a"]}})
    row_id = queue_violation_alert(sessions, add_violation(sessions), "old-route")

    report = AlertDispatcher(settings, sessions).deliver_due(NOW)

    assert (report.sent, report.failed, report.still_pending) == (0, 1, 1)
    row = outbox(sessions, row_id)
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.last_error == "route 'old-route' is not configured (config: alerts)"


# --------------------------------------------------------------------------- on every backend


def test_claim_retry_and_delivery_on_the_migrated_schema(
    smtp_server: FakeSmtpServer,  # noqa: F811
    migrated_sessions: sessionmaker[Session],
) -> None:
    sessions = migrated_sessions
    settings = make_settings({"phone": {"urls": [smtp_server.mailto_url()]}})
    rows = [queue_violation_alert(sessions, add_violation(sessions), "phone") for _ in range(2)]
    dispatcher = AlertDispatcher(settings, sessions)
    smtp_server.stop()

    assert dispatcher.deliver_due(NOW).failed == 2
    smtp_server.start()
    assert dispatcher.deliver_due(NOW + timedelta(seconds=5)).sent == 0
    report = dispatcher.deliver_due(NOW + timedelta(hours=1))

    assert (report.sent, report.still_pending) == (2, 0)
    assert len(smtp_server.messages) == 1
    for row_id in rows:
        assert outbox(sessions, row_id).state == "sent"
        assert [a.ok for a in attempts(sessions, row_id)] == [False, True]


def test_health_enqueue_is_exactly_once_on_the_migrated_schema(
    migrated_sessions: sessionmaker[Session],
) -> None:
    settings = make_settings({"phone": {"urls": ["json://127.0.0.1:9/a"], "operator": True}})
    queued = []
    for _ in range(3):
        with migrated_sessions.begin() as session:
            queued.append(
                AlertPlanner.from_settings(settings).queue_health(
                    session,
                    watcher="rss",
                    event="failing",
                    message="rss: HTTP 500",
                    episode="e1",
                    now=NOW,
                )
            )

    assert queued == [1, 0, 0]
