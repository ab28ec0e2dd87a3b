"""The rss watcher reading a local feed file (``file:`` URLs), for the offline quick start."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.fakes.feed_server import fixture_bytes
from watchers.base import Targets, TransientError, WatcherConfigError
from watchers.rss import RssSettings, RssWatcher


def poll(url: str, **settings: object) -> list[str]:
    watcher = RssWatcher(RssSettings.model_validate({"url": url, **settings}), Targets())
    try:
        result = watcher.poll({})
    finally:
        watcher.close()
    assert result.state == {}
    return [o.capture_method for o in result.observations]


def test_a_local_feed_file_yields_its_entries(tmp_path: Path) -> None:
    feed = tmp_path / "sample feed.xml"
    feed.write_bytes(fixture_bytes("rss20.xml"))

    methods = poll(feed.as_uri())

    assert len(methods) == 3
    assert methods[0].startswith(f"RSS/Atom fetch of {feed.as_uri()} (local file); raw: ")


def test_a_local_feed_file_obeys_max_bytes(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(fixture_bytes("rss20.xml"))

    with pytest.raises(TransientError, match=r"is larger than max_bytes=100 \(file\)"):
        poll(feed.as_uri(), max_bytes=100)


def test_a_missing_feed_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(WatcherConfigError, match="no such file; check the path"):
        poll((tmp_path / "gone.xml").as_uri())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "must name a feed file ending in .xml, .rss or .atom"),
        ("file:///home/me/.ssh/id_rsa", "must name a feed file ending in .xml, .rss or .atom"),
        ("file://server/share/feed.xml", "names a file on this machine"),
        ("gopher://feeds.example/f.xml", "must be an http://, https:// or file: URL"),
    ],
)
def test_only_feed_files_on_this_machine(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RssSettings.model_validate({"url": url})

    assert message in str(caught.value)
