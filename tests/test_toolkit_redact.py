"""watchers.toolkit.redact: one redaction module; Apprise's metadata says what is secret,
credentials are masked in every encoding, host names and ordinary words are not."""

from __future__ import annotations

import base64
import io
import logging
from datetime import date

import pytest

from service.logsetup import configure_logging, settings_secrets
from service.settings import CaseSettings, Order, Protected, Restrained, Route, Settings
from tests.fakes.secret_scan import restore_logging  # noqa: F401
from watchers.toolkit.redact import (
    Redactor,
    apprise_url_secrets,
    hide_password,
    mask_apprise_url,
)
from watchers.toolkit.text import escape_line_breaks, first_line, one_line

HOOK = "json://alex:s3cr3t-hook-pw@hooks.example.org/alerts?+X-Api-Key=s3cr3t-api-key"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_apprise_private_tokens_are_secrets_hosts_and_paths_are_not() -> None:
    secrets = apprise_url_secrets(HOOK)

    assert {"s3cr3t-hook-pw", "s3cr3t-api-key", b64("alex:s3cr3t-hook-pw")} <= secrets
    assert not {"hooks.example.org", "alerts", "alex"} & secrets
    # Telegram's bot token is private per Apprise; the chat id is not.
    telegram = apprise_url_secrets("tgram://123456789:AAs3cr3tBotToken0123456789/12345")
    assert "123456789:AAs3cr3tBotToken0123456789" in telegram
    assert "12345" not in telegram


def test_a_url_without_secrets_is_shown_whole() -> None:
    assert apprise_url_secrets("json://hooks.example.org/alerts") == frozenset()
    assert mask_apprise_url("json://hooks.example.org/alerts") == "json://hooks.example.org/alerts"


def _settings(url: str) -> Settings:
    case = CaseSettings(
        id="smith-v-doe",
        order=Order(effective=date(2026, 1, 15)),
        protected=Protected(names=["Alex Smith"]),
        restrained=Restrained(names=["John Doe"]),
    )
    return Settings(database="sqlite://", cases=[case], alerts={"phone": Route(urls=[url])})


def test_log_lines_keep_hosts_and_words_of_an_alert_url(
    restore_logging: None,  # noqa: F811
) -> None:
    out = io.StringIO()
    configure_logging("INFO", "text", settings_secrets(_settings(HOOK)), stream=out)
    log = logging.getLogger("service.test")

    log.warning("polled https://hooks.example.org/feed.xml for new alerts")
    log.warning("server said: Basic %s", b64("alex:s3cr3t-hook-pw"))
    log.warning("echo %s", "s3cr3t-api-key")

    text = out.getvalue()
    assert "polled https://hooks.example.org/feed.xml for new alerts" in text
    assert "s3cr3t" not in text
    assert b64("alex:s3cr3t-hook-pw") not in text
    assert "Basic ***" in text
    assert "echo ***" in text


def test_basic_credentials_of_a_feed_url_are_masked_in_any_encoding() -> None:
    url = "https://jdoe:s3cr3t%2Fpw@feeds.example/f.xml"
    scrub = Redactor.for_url(url)
    echoed = f"denied Basic {b64('jdoe:s3cr3t/pw')}, pw s3cr3t/pw or s3cr3t%2Fpw, user jdoe"

    assert scrub.redact(echoed) == "denied Basic ***, pw *** or ***, user jdoe"


def test_hide_password_keeps_user_and_host() -> None:
    assert hide_password("postgresql://app:s3cr3t@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert hide_password("sqlite:///nocontact.db") == "sqlite:///nocontact.db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("two\nlines\r\n", "two\\nlines\\r\\n"),
        ("back\\slash", "back\\\\slash"),
    ],
)
def test_escape_line_breaks(text: str, expected: str) -> None:
    assert escape_line_breaks(text) == expected


def test_one_line_and_first_line() -> None:
    assert one_line("a\n  b\tc", 10) == "a b c"
    assert one_line("x" * 20, 10) == "x" * 9 + "…"
    assert first_line("\n  first \nsecond") == "first"
    assert first_line("  ") == ""
