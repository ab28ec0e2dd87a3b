"""pytest plugin: fail the run if any test secret reaches a log line or captured output.

By convention every fake secret in the suite contains the marker ``s3cr3t``
(``s3cr3t-reddit-password``, ``AAAAs3cr3tBearer``). This plugin puts a handler on the
root logger for the whole session, formats every record (message, args, exception
text, stack) and keeps the lines that contain the marker; it also scans the captured
stdout/stderr of every test. At the end the run fails, listing the offending lines
with the secrets masked, even when every test passed.

Enabled from tests/conftest.py: ``pytest_plugins = ["tests.fakes.secret_scan"]``.

These details make the scan honest:
- third-party loggers get the service's redacting filter (``guard_library_loggers``),
  as in production, so the scanner checks what that filter lets through;
- the root logger is set to DEBUG for the session (when it is higher), so that a
  secret in a debug message (seen by users of ``--debug``) is caught too;
- before each test the scanner moves its handler back to the front of the root
  logger's handlers, so it sees records raw, as the code emitted them. Only a test
  that itself installs the service's logging (``service.logsetup.configure_logging``
  puts its redacting handler first) has its records redacted before they reach the
  scanner: there the scanner checks what the redaction let through;
- after each test the root logger's handlers and every logger's level are put back
  as they were before it, so a test that configures logging (as the CLI does) can
  neither blind the scanner nor change what later tests' ``caplog`` sees.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator

import pytest

from service.logsetup import NOISY_LOGGERS, guard_library_loggers

MARKER = "s3cr3t"
_WHITESPACE = re.compile(r"(\s+)")
_SECTIONS = ("stdout", "stderr")
_MAX_SHOWN = 50


def mask(text: str) -> str:
    """The line with every whitespace-separated token holding the marker replaced."""
    parts = _WHITESPACE.split(text)
    return "".join("[SECRET MASKED]" if contains_secret(part) else part for part in parts)


def contains_secret(text: str) -> bool:
    return MARKER in text.casefold()


@dataclasses.dataclass(frozen=True, slots=True)
class Leak:
    where: str  # test node id, or "<session>" outside any test
    source: str  # "log <logger name>" or "captured stdout call" …
    text: str

    def masked(self) -> str:
        # The test id too: a parametrized id may carry the secret.
        one_line = mask(f"{self.where}: {self.source}: {self.text}").replace("\n", "\\n")
        if len(one_line) > 400:
            one_line = one_line[:400] + "…"
        return one_line


class ScanHandler(logging.Handler):
    """Formats every record (with exception text) and keeps those with the marker."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.current = "<session>"
        self.leaks: list[Leak] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except (TypeError, ValueError, KeyError):
            # A record whose format fails is still scanned, unformatted.
            text = f"{record.msg!s} {record.args!r}"
        if contains_secret(text):
            self.leaks.append(Leak(self.current, f"log {record.name}", text))


@dataclasses.dataclass(frozen=True, slots=True)
class _LoggingState:
    """The root logger's handlers and every logger's level, to put back after a test."""

    root_handlers: list[logging.Handler]
    levels: dict[str, int]

    @classmethod
    def save(cls) -> _LoggingState:
        for name in NOISY_LOGGERS:
            logging.getLogger(name)  # exists before the test, so its level is restored
        levels = {
            name: logger.level
            for name, logger in logging.root.manager.loggerDict.items()
            if isinstance(logger, logging.Logger)
        }
        levels[""] = logging.getLogger().level
        return cls(list(logging.getLogger().handlers), levels)

    def restore(self) -> None:
        root = logging.getLogger()
        root.handlers[:] = self.root_handlers
        for name, level in self.levels.items():
            logger = logging.getLogger(name) if name else root
            if logger.level != level:
                logger.setLevel(level)


class SecretScan:
    """The plugin object: one per pytest run, registered by ``pytest_configure``."""

    def __init__(self) -> None:
        self.handler = ScanHandler()
        self.output_leaks: list[Leak] = []
        self._old_root_level = logging.NOTSET
        self._saved: _LoggingState | None = None

    def leaks(self) -> list[Leak]:
        return self.handler.leaks + self.output_leaks

    def start(self) -> None:
        root = logging.getLogger()
        self._old_root_level = root.level
        if root.getEffectiveLevel() > logging.DEBUG:
            root.setLevel(logging.DEBUG)
        # As the service does at start: third-party loggers (httpx, httpcore, apprise)
        # redact at the source with the secrets watchers register. Their records reach
        # the scanner after that redaction; everything else arrives raw.
        guard_library_loggers()
        _to_front(self.handler)

    def stop(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self._old_root_level)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.handler.current = nodeid
        self._saved = _LoggingState.save()
        _to_front(self.handler)

    def pytest_runtest_logfinish(self) -> None:
        # A test that configured logging (the CLI does) must not blind the scanner, nor
        # change what later tests' caplog sees: undo its handlers and levels.
        if self._saved is not None:
            self._saved.restore()
            self._saved = None
        self.handler.current = "<session>"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, content in report.sections:
            # A report repeats the sections of earlier phases: scan each one once.
            if not title.endswith(report.when) or not any(k in title for k in _SECTIONS):
                continue
            if not contains_secret(content):
                continue
            for line in content.splitlines():
                if contains_secret(line):
                    self.output_leaks.append(Leak(report.nodeid, title.lower(), line))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.leaks() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        leaks = self.leaks()
        if not leaks:
            return
        terminalreporter.section("secret scan", sep="=", red=True, bold=True)
        for leak in leaks[:_MAX_SHOWN]:
            terminalreporter.write_line(leak.masked())
        if len(leaks) > _MAX_SHOWN:
            terminalreporter.write_line(f"… and {len(leaks) - _MAX_SHOWN} more")
        # The marker itself is never printed: this output may be scanned in turn.
        terminalreporter.write_line(
            f"SECRET SCAN FAILED: {len(leaks)} log or output line(s) contain a test secret",
            red=True,
            bold=True,
        )


def _to_front(handler: logging.Handler) -> None:
    root = logging.getLogger()
    if root.handlers and root.handlers[0] is handler:
        return
    root.removeHandler(handler)
    root.handlers.insert(0, handler)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that configure logging: puts the root logger's handlers and every
    logger's level back afterwards (the plugin does it too, when it is loaded)."""
    saved = _LoggingState.save()
    yield
    saved.restore()


_PLUGIN_NAME = "nocontact-secret-scan"


def pytest_configure(config: pytest.Config) -> None:
    plugin = SecretScan()
    plugin.start()
    config.pluginmanager.register(plugin, _PLUGIN_NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if isinstance(plugin, SecretScan):
        plugin.stop()
        config.pluginmanager.unregister(plugin)
