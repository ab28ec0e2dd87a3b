"""service.logsetup: one line per event, JSON lines, secrets redacted everywhere;
and the suite-wide secret scanner plugin (tests/fakes/secret_scan.py)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import textwrap
from datetime import date
from pathlib import Path

import pytest
from pydantic import SecretStr

from service.logsetup import SecretRedactor, configure_logging, settings_secrets
from service.settings import CaseSettings, Order, Protected, Restrained, Route, Settings
from tests.fakes.secret_scan import restore_logging  # noqa: F401
from watchers.base import WatcherSettings

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-reddit-password"
BEARER = "AAAAs3cr3tBearerToken"
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def out(
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,  # noqa: F811 - the imported fixture
) -> io.StringIO:
    """A stream for configure_logging; logging is restored afterwards."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    return io.StringIO()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_text_is_one_line_per_event_with_utc_timestamp(out: io.StringIO) -> None:
    configure_logging("INFO", "text", stream=out)
    logging.getLogger("service.test").info("first line\nsecond line\r\nthird")
    [line] = lines(out)
    assert re.fullmatch(ISO_UTC + r" INFO service\.test: first line\\nsecond line\\r\\nthird", line)


def test_under_journald_lines_carry_priority_not_time(
    out: io.StringIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "journal").open("w+") as journal:
        info = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        configure_logging("DEBUG", "text", stream=journal)
        logging.getLogger("service.scheduler").warning("watcher %s failing", "rss")
        logging.getLogger("service.scheduler").info("started")
        journal.flush()
        journal.seek(0)
        got = journal.read().splitlines()
    assert got == [
        "<4>WARNING service.scheduler: watcher rss failing",
        "<6>INFO service.scheduler: started",
    ]


def test_journal_stream_of_another_file_keeps_timestamps(
    out: io.StringIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inherited from a unit but redirected elsewhere: journald does not stamp it.
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")
    with (tmp_path / "log").open("w+") as other:
        configure_logging("INFO", "text", stream=other)
        logging.getLogger("x").info("hello")
        other.flush()
        other.seek(0)
        [line] = other.read().splitlines()
    assert re.fullmatch(ISO_UTC + r" INFO x: hello", line)


def test_json_lines_parse_with_extra_fields(out: io.StringIO) -> None:
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("service.pipeline").info(
        "stored %d observations\nfrom %s", 3, "rss", extra={"watcher": "jdoe-blog", "n": 3}
    )
    [line] = lines(out)
    event = json.loads(line)
    assert event["level"] == "INFO"
    assert event["logger"] == "service.pipeline"
    assert event["message"] == "stored 3 observations\nfrom rss"
    assert event["watcher"] == "jdoe-blog"
    assert event["n"] == 3
    assert re.fullmatch(ISO_UTC, event["time"])


def test_configure_twice_replaces_its_handler(out: io.StringIO) -> None:
    configure_logging("INFO", "text", stream=out)
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("x").info("once")
    [line] = lines(out)
    assert json.loads(line)["message"] == "once"


def test_configured_secrets_are_redacted_in_msg_args_and_extra(out: io.StringIO) -> None:
    configure_logging("INFO", "json", secrets=[SECRET, "s3cr3t/with space"], stream=out)
    log = logging.getLogger("service.test")
    log.info("login with %s", SECRET)
    log.info(f"inline {SECRET} and url-encoded s3cr3t%2Fwith%20space")
    log.info("extra", extra={"detail": f"pw={SECRET}", "nested": {"k": SECRET}})
    text = out.getvalue()
    assert "s3cr3t" not in text
    assert text.count("***") >= 4
    assert len(lines(out)) == 3


def test_short_values_are_not_treated_as_secrets() -> None:
    assert SecretRedactor(["abc"]).redact("abc abcd") == "abc abcd"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "GET https://user:s3cr3t-pw@example.org/x failed",
            "GET https://user:***@example.org/x failed",
        ),
        (
            "postgresql+psycopg://nocontact:s3cr3t-db@db/nocontact",
            "postgresql+psycopg://nocontact:***@db/nocontact",
        ),
        ("Authorization: Bearer AAAAs3cr3tBearerToken", "Authorization: ***"),
        ("sent header bearer AAAAs3cr3tBearerToken ok", "sent header bearer *** ok"),
        ("POST /token access_token=s3cr3t-at&x=1", "POST /token access_token=***&x=1"),
        ("client_secret=s3cr3t-cs password=s3cr3t-pw", "client_secret=*** password=***"),
        ('{"refresh_token": "s3cr3t-rt", "n": 1}', '{"refresh_token": "***", "n": 1}'),
        ("x_bearer_token: AAAAs3cr3t", "x_bearer_token: ***"),
        ("notify ntfys://s3cr3t-topic failed", "notify ntfys://*** failed"),
        ("to tgram://123:s3cr3tbot/456 and pover://u@s3cr3t", "to tgram://*** and pover://***"),
        ("mailto://alex:s3cr3t-mail@example.org", "mailto://***"),
        (
            "secretary: Jane; token_type=bearer; using bearer authentication; tokens: 5",
            "secretary: Jane; token_type=bearer; using bearer authentication; tokens: 5",
        ),
    ],
    ids=[
        "url-userinfo",
        "database-url",
        "authorization-header",
        "bare-bearer",
        "query-access-token",
        "client-secret-and-password",
        "json-refresh-token",
        "yaml-style-key",
        "ntfy-url",
        "telegram-and-pushover-urls",
        "mailto-url",
        "ordinary-words-stay",
    ],
)
def test_secret_patterns_are_redacted(raw: str, expected: str) -> None:
    assert SecretRedactor().redact(raw) == expected


def test_third_party_loggers_are_redacted(out: io.StringIO) -> None:
    configure_logging("DEBUG", "text", stream=out)
    logging.getLogger("prawcore").warning("Fetching token with password=%s", SECRET)
    logging.getLogger("apprise").error("Failed to send to ntfys://s3cr3t-topic/x")
    logging.getLogger("urllib3.connectionpool").error("Authorization: Bearer %s", BEARER)
    text = out.getvalue()
    assert "s3cr3t" not in text
    assert "prawcore: Fetching token with password=***" in text
    assert len(lines(out)) == 3


def test_noisy_libraries_are_quieted(out: io.StringIO) -> None:
    configure_logging("DEBUG", "text", stream=out)
    logging.getLogger("httpx").info("HTTP Request: GET https://example.org")
    logging.getLogger("httpx").warning("kept")
    assert [line.split(" ", 1)[1] for line in lines(out)] == ["WARNING httpx: kept"]


def _raise_with_secret() -> None:
    raise ValueError(f"login failed for https://alex:{SECRET}@example.org with {BEARER}")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_exception_tracebacks_are_redacted(out: io.StringIO, fmt: str) -> None:
    configure_logging("INFO", "json" if fmt == "json" else "text", secrets=[BEARER], stream=out)
    try:
        _raise_with_secret()
    except ValueError:
        logging.getLogger("service.pipeline").exception("poll failed")
    [line] = lines(out)
    assert "s3cr3t" not in line
    assert "ValueError: login failed for https://alex:***@example.org with ***" in (
        json.loads(line)["exc"] if fmt == "json" else line.replace("\\n", "\n")
    )


class _TokenWatcher(WatcherSettings):
    type: str = "token-test"
    token: SecretStr
    api_key: str = ""

    def secret_fields(self) -> frozenset[str]:
        return frozenset({"token", "api_key"})


def test_settings_secrets_collects_every_secret() -> None:
    case = CaseSettings(
        id="smith-v-doe",
        order=Order(effective=date(2026, 1, 15)),
        protected=Protected(names=["Alex Smith"]),
        restrained=Restrained(names=["John Doe"]),
    )
    settings = Settings(
        database="postgresql+psycopg://nocontact:s3cr3t-db%21@db/nocontact",
        cases=[case],
        watchers=[_TokenWatcher(every="5m", token=SecretStr(BEARER), api_key="s3cr3t-key")],
        alerts={"phone": Route(urls=["ntfys://s3cr3t-topic", "mailto://a:s3cr3t-m@ex.org"])},
    )
    found = set(settings_secrets(settings))
    assert {BEARER, "s3cr3t-key", "s3cr3t-topic", "s3cr3t-m", "s3cr3t-db!"} <= found
    assert "ntfys://s3cr3t-topic" in found


# --- the secret scanner plugin, run in a separate pytest process -------------------------

LEAKY_TESTS = """
import io
import logging
from service.logsetup import configure_logging

def test_configures_logging_and_leaves_it():
    # Left in place, its redaction would hide the leaks of the tests below.
    configure_logging("WARNING", secrets=["AAAAs3cr3tBearer"], stream=io.StringIO())

def test_leaks_through_args():
    logging.getLogger("praw").warning("token %s", "AAAAs3cr3tBearer")

def test_leaks_at_debug_level():
    logging.getLogger("service.x").debug("password=s3cr3t-pw")

def test_leaks_in_exception_text():
    try:
        raise RuntimeError("bad S3CR3T-upper")
    except RuntimeError:
        logging.getLogger("x").exception("failed")

def test_leaks_on_stdout():
    print("url ntfys://s3cr3t-topic")

def test_clean():
    logging.getLogger("x").warning("nothing to see")
"""

CLEAN_TESTS = """
import logging
import io
from service.logsetup import configure_logging

def test_clean_logs():
    logging.getLogger("x").warning("polled %d items", 3)
    print("all good")

def test_redacted_by_the_service_logging():
    configure_logging("DEBUG", "text", secrets=["s3cr3t-configured"], stream=io.StringIO())
    logging.getLogger("praw").warning("login with %s", "s3cr3t-configured")
    logging.getLogger("x").info("Authorization: Bearer AAAAs3cr3tBearer")
"""


def _run_scanned(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str
) -> pytest.RunResult:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_inner=textwrap.dedent(source))
    return pytester.runpytest_subprocess("-p", "tests.fakes.secret_scan", "-p", "no:cacheprovider")


def test_scanner_fails_a_run_whose_tests_leak(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_scanned(pytester, monkeypatch, LEAKY_TESTS)
    result.assert_outcomes(passed=6)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    assert "SECRET SCAN FAILED: 4 log or output line(s)" in output
    for name in ("through_args", "at_debug_level", "in_exception_text", "on_stdout"):
        assert f"test_inner.py::test_leaks_{name}: " in output
    assert "test_clean:" not in output
    assert "s3cr3t" not in output.casefold()


def test_scanner_passes_a_clean_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_scanned(pytester, monkeypatch, CLEAN_TESTS)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    assert "SECRET SCAN FAILED" not in result.stdout.str()
