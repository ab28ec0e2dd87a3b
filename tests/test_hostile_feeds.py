"""Feeds made to blind the service (#10): a megabyte-long author or title, 700k nested
elements, 200k entries, a long guid, a redirect to ``data:``. Each is served next to a
normal feed and read by ``nocontact run --once`` in a child process, on SQLite and
PostgreSQL: the child ends within its timeout, its peak memory stays under 200 MB, the
hostile feed gives one error line or cut fields, and the normal feed's evidence is
stored. A unit part checks the bounds themselves on the XML guard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_end_to_end import FORUM_FEED, Runner, nocontact, timeline, write_config  # noqa: F401
from tests.test_long_fields import _stored_methods
from watchers.toolkit.xmlguard import (
    AUTHOR_TEXT_LIMIT,
    MAX_DEPTH,
    MAX_ENTRIES,
    DocumentRefused,
    bound_document,
    bound_loose,
)

PEAK_RSS_LIMIT_KIB = 200 * 1024


def _feed(items: bytes) -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        b"<title>Hostile</title><link>https://hostile.example/</link>" + items + b"</channel></rss>"
    )


# Evidence keeps only what involves the case (#14): each hostile item also addresses
# the protected person and names the restrained party (a suspected proxy), so that what
# is kept of it, and the cut, can be checked.
PROXY = b" @alex_smith John Doe says hello"


def _item(
    guid: bytes, *, author: bytes = b"someone", title: bytes = b"hello", text: bytes = PROXY
) -> bytes:
    return (
        b"<item><guid>"
        + guid
        + b"</guid><title>"
        + title
        + b"</title><author>"
        + author
        # a@b.c in the text: feedparser's quadratic e-mail regex needs an '@' to chase
        + b"</author><description>a@b.c"
        + text
        + b"</description></item>"
    )


HOSTILE: dict[str, bytes] = {
    "author_1mb": _feed(_item(b"h1", author=b"x" * 1_000_000 + b"@example.org")),
    "title_1mb": _feed(_item(b"h1", title=b"T" * 1_000_000)),
    "nesting_700k": _feed(b"<item>" + b"<a>" * 700_000 + b"</a>" * 700_000 + b"</item>"),
    "entries_200k": _feed(
        _item(b"e0") + b"".join(_item(b"e%d" % i, text=b"") for i in range(1, 200_000))
    ),
    "long_guid": _feed(_item(b"g" * 300_000)),
}


# ----------------------------------------------------------------------------- unit


def test_the_guard_cuts_long_text_and_keeps_a_normal_feed_as_it_is() -> None:
    assert bound_document(FORUM_FEED) is not None
    assert bound_document(FORUM_FEED).body == FORUM_FEED  # type: ignore[union-attr]
    bounded = bound_document(HOSTILE["author_1mb"])
    assert bounded is not None
    assert len(bounded.body) < 20_000
    assert any(f"<author> text over {AUTHOR_TEXT_LIMIT}" in cut for cut in bounded.cuts)


def test_the_guard_refuses_deep_nesting_and_keeps_only_the_first_entries() -> None:
    with pytest.raises(DocumentRefused, match=f"nested more than {MAX_DEPTH} deep"):
        bound_document(HOSTILE["nesting_700k"])
    bounded = bound_document(HOSTILE["entries_200k"])
    assert bounded is not None
    assert bounded.entries == MAX_ENTRIES
    assert bounded.body.count(b"<item>") == MAX_ENTRIES
    assert b"<guid>e0</guid>" in bounded.body  # the first (newest) entries are kept
    assert b"<guid>e%d</guid>" % MAX_ENTRIES not in bounded.body


def test_a_malformed_feed_beyond_the_bounds_is_refused_not_cut() -> None:
    with pytest.raises(DocumentRefused, match="an author over"):
        bound_loose(b"<rss><item><author>" + b"x" * 5000 + b"<item></rss")
    bound_loose(b"<rss><item><author>jdoe</author><item></rss")  # within bounds


# ------------------------------------------------------------------ through run --once


# The child writes its own peak RSS (VmHWM, which exec resets) when it exits: wait4's
# ru_maxrss would carry the forking test process's size over into the child's.
_MEASURED = """\
import atexit, runpy, sys
PEAK = sys.argv.pop(1)
def _peak():
    with open("/proc/self/status") as status, open(PEAK, "w") as out:
        out.write(next(l.split()[1] for l in status if l.startswith("VmHWM:")))
atexit.register(_peak)
sys.argv[0] = "nocontact"
runpy.run_module("service", run_name="__main__")
"""


def _run_measured(config: Path, cwd: Path) -> tuple[int, str, int]:
    """``run --once`` in a child; (exit code, stdout + stderr, the child's peak RSS in
    KiB as the kernel counted it for that process)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NOCONTACT_")}
    environment["COLUMNS"] = "300"
    out, peak = cwd / "child.out", cwd / "child.peak"
    with out.open("wb") as sink:
        child = subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-c", _MEASURED, str(peak), "run", "-c", str(config), "--once"],
            cwd=cwd,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=90,  # a bound on behaviour, not a timing
            check=False,
        )
    return (
        child.returncode,
        out.read_text(encoding="utf-8", errors="replace"),
        int(peak.read_text()),
    )


@pytest.mark.postgres
@pytest.mark.parametrize("kind", [*HOSTILE, "data_redirect"])
def test_a_hostile_feed_does_not_blind_the_service(
    kind: str,
    tmp_path: Path,
    database_url: str,
    nocontact: Runner,  # noqa: F811
    feed_server: FeedServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    feed_server.set("/good.xml", body=FORUM_FEED)
    if kind == "data_redirect":
        feed_server.set("/bad.xml", status=302, headers={"Location": "data:text/xml,<rss/>"})
    else:
        feed_server.set("/bad.xml", body=HOSTILE[kind])
    config = tmp_path / "config.yaml"
    write_config(
        config,
        database_url,
        {"hostile": feed_server.url("/bad.xml"), "forum": feed_server.url("/good.xml")},
        {"phone": {"urls": [webhook_receiver.json_url()]}},
    )
    # 200k entries are 17 MB: within a feed's byte cap for this test
    text = config.read_text(encoding="utf-8").replace(
        "timeout: 2s}", "timeout: 2s, max_bytes: 30000000}"
    )
    config.write_text(text, encoding="utf-8")

    code, output, peak_kib = _run_measured(config, tmp_path)

    assert peak_kib <= PEAK_RSS_LIMIT_KIB, f"peak RSS {peak_kib // 1024} MB"
    assert "Traceback" not in output
    assert "forum: 5 item(s) read" in output, output
    assert len(timeline(nocontact, config, "--all")) >= 3  # the normal feed's hits
    hostile_lines = [line for line in output.splitlines() if "hostile" in line]
    if kind in {"nesting_700k", "data_redirect"}:
        assert code == 1
        error = next(line for line in hostile_lines if "fail" in line.lower() or "refus" in line)
        assert len(error) < 400
        assert ("refused before parsing" in output) or ("redirect" in error.lower())
    else:
        assert code == 0, output
        methods = _stored_methods(database_url)
        assert any("cut before parsing" in m for m in methods)
