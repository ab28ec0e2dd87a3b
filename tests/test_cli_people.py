"""The CLI as people meet it (#16): read commands without secrets, errors in words,
CSV that a spreadsheet cannot run. Each test asserts the exit code and the message."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from service.cli import cli
from service.evidence import format_time
from service.health import ONCE_SUFFIX, beat
from service.models import OutboxAlert
from tests.fakes.evidence_data import (
    CASE_ID,
    Populated,
    add_evidence,
    add_violation,
    case_settings,
    ensure_case,
    populate,
)
from tests.fakes.feed_server import FeedServer, feed_server  # noqa: F401

FEEDS = Path(__file__).resolve().parent / "fixtures" / "feeds"

SECRETS = ("NC_T_REDDIT_ID", "NC_T_REDDIT_SECRET", "NC_T_REDDIT_PASSWORD", "NC_T_ALERT_URL")

CONFIG = """\
database: sqlite:///nc.db
cases:
  - id: smith-v-doe
    order: {effective: 2026-01-15, reference: "PO-1"}
    protected: {names: ["Alex Smith"], handles: {reddit: [alex_smith]}}
    restrained: {names: ["John Doe"], handles: {reddit: [jdoe]}}
    alert: [phone]
watchers:
  - type: reddit
    every: 5m
    client_id: ${NC_T_REDDIT_ID}
    client_secret: ${NC_T_REDDIT_SECRET}
    username: alex_smith
    password: ${NC_T_REDDIT_PASSWORD}
    user_agent: "nocontact tests (by u/alex_smith)"
alerts:
  phone:
    urls: ["${NC_T_ALERT_URL}"]
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def with_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS[:-1]:
        monkeypatch.setenv(name, "s3cr3t-" + name.lower())
    monkeypatch.setenv("NC_T_ALERT_URL", "json://127.0.0.1:9/hook")


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def populated(runner: CliRunner, config: Path, texts: tuple[str, ...] = ()) -> Populated:
    """A migrated store beside ``config`` holding a case's violations."""
    result = runner.invoke(cli, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 0, result.output
    engine = create_engine(f"sqlite:///{config.parent / 'nc.db'}")
    try:
        return populate(sessionmaker(engine, expire_on_commit=False), texts=texts)
    finally:
        engine.dispose()


# --- secrets are needed only where they are used -----------------------------------------


@pytest.mark.usefixtures("no_secrets")
def test_read_commands_work_without_watcher_and_route_secrets(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = write(tmp_path)
    data = populated(runner, config)
    timeline = runner.invoke(cli, ["timeline", "-c", str(config), "--format", "json"])
    assert timeline.exit_code == 0, timeline.output
    assert data.violation_ids[1] in timeline.stdout
    export = runner.invoke(
        cli, ["export", "-c", str(config), "--case", CASE_ID, "--out", str(tmp_path / "p")]
    )
    assert export.exit_code == 0, export.output
    assert (tmp_path / "p" / "MANIFEST.sha256").is_file()
    verify = runner.invoke(cli, ["verify", "-c", str(config)])
    assert verify.exit_code == 0, verify.output
    status = runner.invoke(cli, ["status", "-c", str(config)])
    assert status.exit_code == 0, status.output
    assert "reddit" in status.stdout
    for result in (timeline, export, verify, status):
        assert "NC_T_" not in result.output


@pytest.mark.usefixtures("no_secrets")
@pytest.mark.parametrize("command", [["check"], ["run", "--once"], ["test-alert"]])
def test_commands_that_poll_or_send_still_need_the_secrets(
    runner: CliRunner, tmp_path: Path, command: list[str]
) -> None:
    config = write(tmp_path)
    result = runner.invoke(cli, [*command, "-c", str(config)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert f"{config}:11: watchers[0].client_id: environment variable NC_T_REDDIT_ID " in (
        lines[0] + " "
    )
    assert any(
        line.startswith(f"{config}:18: alerts.phone.urls[0]: environment variable NC_T_ALERT_URL")
        for line in lines
    )
    # The missing variable is the whole story: no second line about an invalid URL.
    assert not any("Apprise" in line for line in lines)
    assert len(lines) == 4


# --- errors people understand ----------------------------------------------------------


@pytest.mark.usefixtures("with_secrets")
def test_dates_say_how_to_write_them(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path, CONFIG.replace("2026-01-15", "03/01/2026"))
    result = runner.invoke(cli, ["check", "-c", str(config)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"{config}:4: cases[0].order.effective: not a date; write dates as YYYY-MM-DD, "
        "e.g. 2026-03-01\n"
    )


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("cases:\n  - id: a\n    order: {}\n   protected: {}\n", 4,
         "this line is indented differently from the one above"),
        ("database: x\n\tcases: []\n", 2, "a tab: indent with spaces only"),
        ('database: "sqlite:///x\ncases: []\n', 1, "this quotation mark is never closed"),
        ("cases: [a, b\nwatchers: []\n", 1, "a list opened with '[' is not closed with ']'"),
    ],
)  # fmt: skip
def test_yaml_errors_are_in_words(
    runner: CliRunner, tmp_path: Path, text: str, line: int, words: str
) -> None:
    config = write(tmp_path, text)
    result = runner.invoke(cli, ["check", "-c", str(config)])
    assert result.exit_code == 2
    assert result.stderr == f"{config}:{line}: {words}\n"


# --- one CSV writer, guarded against formulas ------------------------------------------

INJECTIONS = ('=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR")


@pytest.mark.usefixtures("no_secrets")
def test_timeline_csv_cannot_run_as_a_spreadsheet_formula(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = write(tmp_path)
    populated(runner, config, texts=INJECTIONS)
    result = runner.invoke(cli, ["timeline", "-c", str(config), "--all", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    texts = [row["text"] for row in rows]
    for injected in INJECTIONS:
        assert "'" + injected in texts
    assert not [t for t in texts if t.startswith(("=", "+", "-", "@", "\t", "\r"))]


@pytest.mark.usefixtures("with_secrets")
def test_the_config_above_is_valid_once_its_secrets_are_set(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = write(tmp_path)
    result = runner.invoke(cli, ["check", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{config}: ok — 1 case(s), 1 watcher(s), 1 alert route(s)\n"


# --- check --online ----------------------------------------------------------------------

ONLINE = """\
database: {database}
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15}}
    protected: {{names: ["Alex Smith"]}}
    restrained: {{names: ["John Doe"]}}
watchers:
  - {{type: rss, name: good, url: "{good}", every: 5m}}
  - {{type: rss, name: down, url: "{down}", every: 5m}}
"""


def test_check_online_opens_the_database_and_polls_each_watcher_once(
    runner: CliRunner,
    tmp_path: Path,
    feed_server: FeedServer,  # noqa: F811
) -> None:
    feed_server.set("/good.xml", body=(FEEDS / "rss20.xml").read_bytes())
    feed_server.set("/down.xml", status=503, body=b"maintenance")
    text = ONLINE.format(
        database="sqlite:///nc.db",
        good=feed_server.url("/good.xml"),
        down=feed_server.url("/down.xml"),
    )
    config = write(tmp_path, text)
    offline = runner.invoke(cli, ["check", "-c", str(config)])
    assert offline.exit_code == 0
    assert feed_server.requests_for("/good.xml") == []

    result = runner.invoke(cli, ["check", "-c", str(config), "--online"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:] == [
        "database: ok — opened for writing",
        "watcher good: ok — read 3 item(s); nothing stored",
    ]
    assert result.stderr.startswith("watcher down: FAILED — ")
    assert "503" in result.stderr
    assert [r.method for r in feed_server.requests_for("/good.xml")] == ["GET"]
    timeline = runner.invoke(cli, ["timeline", "-c", str(config), "--all", "--format", "json"])
    assert timeline.stdout.strip() == "[]"


def test_check_online_reports_an_unreachable_database(
    runner: CliRunner,
    tmp_path: Path,
    feed_server: FeedServer,  # noqa: F811
) -> None:
    feed_server.set("/good.xml", body=(FEEDS / "rss20.xml").read_bytes())
    text = ONLINE.format(
        database="postgresql+psycopg://nc:s3cr3t-pw@127.0.0.1:1/nc",
        good=feed_server.url("/good.xml"),
        down=feed_server.url("/good.xml"),
    )
    result = runner.invoke(cli, ["check", "-c", str(write(tmp_path, text)), "--online"])
    assert result.exit_code == 1
    assert result.stderr.startswith("database: FAILED — cannot open database at ")
    assert "s3cr3t" not in result.output


# --- status ------------------------------------------------------------------------------


def _recent(config: Path, *ages: timedelta) -> None:
    engine = create_engine(f"sqlite:///{config.parent / 'nc.db'}")
    sessions = sessionmaker(engine, expire_on_commit=False)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        ensure_case(session, case_settings())
        for index, age in enumerate(ages):
            item = add_evidence(
                session, platform="reddit", native_id=f"t1_r{index}", text="hi Alex Smith",
                captured_at=now - age,
            )  # fmt: skip
            add_violation(session, CASE_ID, [item])
    engine.dispose()


@pytest.mark.usefixtures("no_secrets")
def test_status_says_whether_the_service_runs_and_counts_recent_violations(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = write(tmp_path)
    never = runner.invoke(cli, ["status", "-c", str(config)])
    assert never.exit_code == 0, never.output
    assert "Service: not running; it has never run against this database" in never.stdout
    _recent(config, timedelta(hours=2), timedelta(days=3), timedelta(days=30))

    engine = create_engine(f"sqlite:///{tmp_path / 'nc.db'}")
    sessions = sessionmaker(engine, expire_on_commit=False)
    now = datetime.now(UTC)
    beat(sessions, "host" + ONCE_SUFFIX, now - timedelta(seconds=40), now - timedelta(seconds=20))
    once = runner.invoke(cli, ["status", "-c", str(config)])
    assert once.exit_code == 0, once.output
    assert "Service: not running; last `run --once` at " in once.stdout
    assert "Case smith-v-doe: 1 violation(s) in the last 24 h, 2 in 7 days" in once.stdout
    health = runner.invoke(cli, ["status", "-c", str(config), "--health"])
    assert "ok heartbeat: last `run --once` on host at " in health.stdout
    assert "running since" not in health.stdout

    started = now - timedelta(hours=1)
    beat(sessions, "host:42", started, now - timedelta(seconds=5))
    engine.dispose()
    running = runner.invoke(cli, ["status", "-c", str(config)])
    assert f"Service: running (host:42 since {format_time(started)}; last heartbeat " in (
        running.stdout
    )


# --- show, dismiss, undismiss ------------------------------------------------------------


@pytest.mark.usefixtures("no_secrets")
def test_show_prints_one_violation_whole_by_a_short_id(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path)
    data = populated(runner, config)
    violation_id = data.violation_ids[1]  # two versions of one item
    text = runner.invoke(cli, ["show", "-c", str(config), violation_id[:8]])
    assert text.exit_code == 0, text.output
    out = text.stdout
    assert out.startswith(f"Violation {violation_id}\n")
    assert "message 1 to Alex Smith\n" in out
    assert "message 1 to Alex Smith (edited)\n" in out
    assert "version 1 (chain record" in out
    assert "version 2 (chain record" in out
    assert "  sha256:   " in out
    assert "  chain:    " in out
    assert "Alerts: none queued" in out

    alerted = runner.invoke(
        cli, ["show", "-c", str(config), data.violation_ids[2], "--format", "json"]
    )
    assert alerted.exit_code == 0, alerted.output
    document = json.loads(alerted.stdout)
    assert document["id"] == data.violation_ids[2]
    assert document["dismissed"] is None
    assert [a["route"] for a in document["alerts"]] == ["phone"]
    assert document["alerts"][0]["state"] == "sent"
    assert document["evidence"][0]["text"] == "message 2 to Alex Smith"


@pytest.mark.usefixtures("no_secrets")
def test_show_says_when_the_id_is_unknown_or_ambiguous(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path)
    populated(runner, config)
    unknown = runner.invoke(cli, ["show", "-c", str(config), "ffffffff"])
    assert unknown.exit_code == 2
    assert unknown.stderr == (
        "error: no violation id starts with 'ffffffff'; `nocontact timeline --all` lists them\n"
    )
    short = runner.invoke(cli, ["show", "-c", str(config), "ab"])
    assert short.exit_code == 2
    assert short.stderr == "error: give at least 4 characters of the violation id\n"


@pytest.mark.usefixtures("no_secrets")
def test_dismiss_is_a_chain_record_hidden_from_the_timeline_and_undone_by_undismiss(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = write(tmp_path)
    data = populated(runner, config)
    target = data.violation_ids[3]

    def timeline_ids(*extra: str) -> list[str]:
        result = runner.invoke(cli, ["timeline", "-c", str(config), "--format", "json", *extra])
        assert result.exit_code == 0, result.output
        return [row["id"] for row in json.loads(result.stdout)]

    assert target in timeline_ids()
    dismissed = runner.invoke(
        cli, ["dismiss", "-c", str(config), target[:10], "--reason", "a namesake", "--by", "alex"]
    )
    assert dismissed.exit_code == 0, dismissed.output
    assert dismissed.stdout.startswith(f"violation {target} dismissed; chain record ")
    assert target not in timeline_ids()
    assert target in timeline_ids("--all")
    shown = json.loads(
        runner.invoke(cli, ["show", "-c", str(config), target, "--format", "json"]).stdout
    )
    assert shown["dismissed"]["reason"] == "a namesake"
    assert shown["dismissed"]["by"] == "alex"
    again = runner.invoke(cli, ["dismiss", "-c", str(config), target, "--reason", "twice"])
    assert again.exit_code == 2
    assert again.stderr == f"error: violation {target} is already dismissed\n"

    verify = runner.invoke(cli, ["verify", "-c", str(config)])
    assert verify.exit_code == 0, verify.output
    assert "chain intact" in verify.stdout

    packet = tmp_path / "packet"
    export = runner.invoke(
        cli, ["export", "-c", str(config), "--case", CASE_ID, "--out", str(packet)]
    )
    assert export.exit_code == 0, export.output
    document = json.loads((packet / "evidence.json").read_text(encoding="utf-8"))
    marks = {v["id"]: v["dismissed"] for v in document["violations"]}
    assert marks[target]["reason"] == "a namesake"
    assert sum(mark is not None for mark in marks.values()) == 1
    assert document["chain"]["last_seq"] == marks[target]["seq"]
    report = (packet / "report.html").read_text(encoding="utf-8")
    assert "<h2>Dismissed as not violations</h2>" in report
    assert "Dismissed by alex at " in report

    undone = runner.invoke(cli, ["undismiss", "-c", str(config), target])
    assert undone.exit_code == 0, undone.output
    assert undone.stdout.startswith(f"violation {target} no longer dismissed; chain record ")
    assert target in timeline_ids()
    assert runner.invoke(cli, ["verify", "-c", str(config)]).exit_code == 0


@pytest.mark.usefixtures("no_secrets")
def test_dismiss_cancels_the_queued_alerts(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path)
    data = populated(runner, config)
    engine = create_engine(f"sqlite:///{tmp_path / 'nc.db'}")
    sessions = sessionmaker(engine, expire_on_commit=False)
    target = data.violation_ids[1]
    with sessions.begin() as session:
        now = datetime.now(UTC)
        session.add(OutboxAlert(dedup_key=f"violation:{target}:phone", route="phone",
                                category="violation", violation_id=target, severity="high",
                                created_at=now, due_at=now, next_attempt_at=now))  # fmt: skip
    result = runner.invoke(cli, ["dismiss", "-c", str(config), target, "--reason", "not him"])
    assert result.exit_code == 0, result.output
    with sessions() as session:
        row = session.scalars(select(OutboxAlert).where(OutboxAlert.violation_id == target)).one()
        assert (row.state, row.last_error) == ("cancelled", "violation dismissed: not him")
    engine.dispose()


# --- a timeline people can read ------------------------------------------------------------


@pytest.mark.usefixtures("no_secrets")
def test_timeline_is_one_line_per_violation_at_80_columns(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = write(tmp_path)
    data = populated(runner, config, texts=("x",) * 6)
    result = runner.invoke(
        cli, ["timeline", "-c", str(config), "--case", CASE_ID], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ID       WHEN (local)     KIND            PLATFORM AUTHOR")
    rows = lines[1:-1]
    assert len(rows) == 5  # the one before the order only with --all
    assert all(len(line) <= 80 for line in lines[:-1])
    assert rows[0].startswith(
        f"{data.violation_ids[1][:8]} 2026-05-01 16:30 mention         x        jdoe"
    )
    assert lines[-1].startswith("`nocontact show ID`")
    wide = runner.invoke(cli, ["timeline", "-c", str(config)], env={"COLUMNS": "200"})
    assert max(len(line) for line in wide.stdout.splitlines()) > 80


@pytest.mark.usefixtures("no_secrets")
def test_timeline_filters(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path)
    data = populated(runner, config)

    def ids(*extra: str) -> list[str]:
        result = runner.invoke(
            cli, ["timeline", "-c", str(config), "--case", CASE_ID, "--format", "json", *extra]
        )
        assert result.exit_code == 0, result.output
        return [row["id"] for row in json.loads(result.stdout)]

    every = ids()
    assert ids("--kind", "mention") == [data.violation_ids[1], data.violation_ids[4]]
    assert ids("--platform", "rss") == [data.violation_ids[2], data.violation_ids[5]]
    assert ids("--limit", "2") == every[-2:]
    assert ids("--since", "2026-05-02") == every[2:]
    assert ids("--since", "1d") == []
    bad = runner.invoke(cli, ["timeline", "-c", str(config), "--since", "03/01/2026"])
    assert bad.exit_code == 2
    assert bad.stderr == (
        "error: --since '03/01/2026': write dates as YYYY-MM-DD, e.g. 2026-03-01, or a "
        "duration like 7d or 12h\n"
    )
