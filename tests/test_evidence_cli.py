"""The service and CLI ends of #14: `run --once` stamps a changed head (a TSA that is
down does not stop it), and `nocontact recheck` reads captured items again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from service.cli import cli
from service.config import load_config
from service.db import make_engine, migrate
from service.scheduler import Service
from service.store import PollRecord, Store
from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.fakes.tsa_server import LocalTsa, local_tsa  # noqa: F401
from tests.test_store import CASES, make_hit
from watchers.base import Observation

CONFIG = """\
database: sqlite:///{db}
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15}}
    protected: {{names: ["Alex Smith"], handles: {{rss: [alex_smith]}}}}
    restrained: {{names: ["John Doe"], handles: {{rss: [jdoe]}}}}
watchers:
  - {{type: rss, name: forum, url: "{feed}", every: 5m}}
evidence:
  timestamping: {{tsa_urls: ["{tsa}"], every: 10s, timeout: 2s}}
  recheck: {{for: 30d}}
"""


def entry(native_id: str, url: str) -> Observation:
    return Observation(
        platform="rss",
        native_id=native_id,
        kind="feed_entry",
        raw=b"<item/>",
        watcher="forum",
        url=url,
        author_handle="jdoe",
        text="@alex_smith answer me",
        posted_at=datetime(2026, 5, 1, 10, 0, tzinfo=UTC),
        raw_content_type="application/xml",
    )


def setup(tmp_path: Path, feed_server: FeedServer, tsa: LocalTsa) -> Path:  # noqa: F811
    config = tmp_path / "config.yaml"
    config.write_text(
        CONFIG.format(db=tmp_path / "nc.db", feed=feed_server.url("/feed.xml"), tsa=tsa.url),
        encoding="utf-8",
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'nc.db'}", tmp_path)
    migrate(engine)
    Store(engine, cases=CASES.values()).record_poll(
        PollRecord(
            watcher="forum",
            watcher_type="rss",
            observations=[
                entry("e1", feed_server.url("/posts/1")),
                entry("e2", feed_server.url("/posts/2")),
            ],
            hits={0: [make_hit()], 1: [make_hit()]},
            state={},
            status_notes=[],
            now=datetime(2026, 5, 1, 10, 5, tzinfo=UTC),
        )
    )
    engine.dispose()
    return config


def test_run_once_stamps_and_a_down_tsa_does_not_stop_it(
    tmp_path: Path,
    feed_server: FeedServer,  # noqa: F811
    local_tsa: LocalTsa,  # noqa: F811
) -> None:
    feed_server.set("/feed.xml", body=b"<rss version='2.0'><channel></channel></rss>")
    config = setup(tmp_path, feed_server, local_tsa)
    local_tsa.down = True
    service = Service(load_config(config))
    try:
        report = service.run_once()
        assert all(poll.ok for poll in report.polls)
        assert local_tsa.stamped == 0
        local_tsa.down = False
        service.run_once()
        assert local_tsa.stamped == 1
        service.run_once()
        assert local_tsa.stamped == 1, "an unchanged head is not stamped again"
    finally:
        service.close()


def test_cli_recheck_prints_what_changed(
    tmp_path: Path,
    feed_server: FeedServer,  # noqa: F811
    local_tsa: LocalTsa,  # noqa: F811
) -> None:
    config = setup(tmp_path, feed_server, local_tsa)
    feed_server.set("/posts/1", status=410, body=b"gone")
    feed_server.set("/posts/2", body=b"<html>here</html>")
    result = CliRunner().invoke(cli, ["recheck", "-c", str(config), "--case", "smith-v-doe"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("rss e1: removed (its page answers HTTP 410), between ")
    assert lines[-1] == "1 item(s) changed since they were captured or last checked"
    again = CliRunner().invoke(cli, ["recheck", "-c", str(config)])
    assert again.stdout.splitlines()[-1].startswith("0 item(s) changed"), "e1 is not read again"
    assert len(feed_server.requests_for("/posts/1")) == 1
