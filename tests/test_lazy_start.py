"""Lazy start (#15): a command loads a platform's client library, Apprise and the report
stack only when the config or the command needs them. Each command runs in its own
interpreter with ``-X importtime``, whose report names every module it imported."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.feed_server import fixture_bytes

REPO = Path(__file__).resolve().parents[1]
# Top-level packages an rss-only config never needs.
HEAVY = ("praw", "tweepy", "mastodon", "atproto", "imapclient", "dkim", "reportlab", "apprise")
_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$", re.MULTILINE)


def rss_only_config(tmp_path: Path) -> Path:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(fixture_bytes("rss20.xml"))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database: sqlite:///{tmp_path / 'nocontact.db'}\n"
        "cases:\n"
        "  - id: c1\n"
        "    order: {effective: 2026-01-15}\n"
        "    protected: {names: [Alex Smith]}\n"
        "    restrained: {names: [John Doe], handles: {rss: [jdoe]}}\n"
        "watchers:\n"
        "  - type: rss\n"
        "    name: forum\n"
        f"    url: {feed.as_uri()}\n"
        "    every: 10m\n",
        encoding="utf-8",
    )
    return config


def imported_by(*args: str, cwd: Path) -> set[str]:
    return {name.split(".")[0] for name in modules_imported_by(*args, cwd=cwd)}


def modules_imported_by(*args: str, cwd: Path) -> set[str]:
    done = subprocess.run(  # noqa: S603  # our own interpreter and module
        [sys.executable, "-X", "importtime", "-m", "service", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(_IMPORTED.findall(done.stderr))


@pytest.mark.parametrize(
    "command", [["check"], ["timeline"], ["run", "--once"]], ids=["check", "timeline", "run"]
)
def test_an_rss_only_config_loads_no_platform_library_apprise_or_report_stack(
    tmp_path: Path, command: list[str]
) -> None:
    config = rss_only_config(tmp_path)

    modules = imported_by(*command, "-c", str(config), cwd=tmp_path)

    assert "feedparser" in modules or command != ["run", "--once"]
    assert "click" in modules  # the report names what was imported
    assert sorted(modules.intersection(HEAVY)) == []


def test_a_reddit_watcher_loads_praw_when_the_service_runs(tmp_path: Path) -> None:
    config = rss_only_config(tmp_path)
    config.write_text(
        config.read_text(encoding="utf-8") + "  - type: reddit\n"
        "    name: r\n"
        "    client_id: abc\n"
        "    client_secret: def\n"
        "    user_agent: nocontact-test/1.0\n"
        "    subreddits: [example]\n"
        "    every: 10m\n",
        encoding="utf-8",
    )

    modules = imported_by("check", "-c", str(config), cwd=tmp_path)

    assert "praw" in modules
    assert "tweepy" not in modules


def test_a_start_on_an_existing_store_loads_no_migration_timestamping_or_cli_extras(
    tmp_path: Path,
) -> None:
    config = rss_only_config(tmp_path)
    modules_imported_by("db", "upgrade", "-c", str(config), cwd=tmp_path)  # the first start

    modules = modules_imported_by("run", "--once", "-c", str(config), cwd=tmp_path)

    assert "sqlalchemy.orm" in modules  # the report names what was imported
    # pygments: httpx's own command line, which would load it with rich.
    unwanted = {"alembic", "mako", "cryptography", "rfc3161_client", "pygments", "apprise"}
    assert sorted({name.split(".")[0] for name in modules} & unwanted) == []
    # Only the dialect in use: PostgreSQL's is not needed for a SQLite store.
    assert "sqlalchemy.dialects.postgresql" not in modules
