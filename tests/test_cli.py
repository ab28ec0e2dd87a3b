"""The CLI edge: exit codes (0 ok, 1 runtime, 2 usage/config) and one-line messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import cli
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401

CONFIG = """\
database: sqlite:///nc.db
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15, reference: "PO-1"}}
    protected: {{names: ["Alex Smith"], handles: {{rss: [alex_smith]}}}}
    restrained: {{names: ["John Doe"], handles: {{rss: [jdoe]}}}}
    alert: [phone]
watchers: []
alerts:
  phone:
    urls: ["{url}"]
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write(tmp_path: Path, url: str = "json://127.0.0.1:9/hook", **replace: str) -> Path:
    text = CONFIG.format(url=url)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_ok(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path)
    result = runner.invoke(cli, ["check", "-c", str(config)])
    assert result.exit_code == 0
    assert result.output == f"{config}: ok — 1 case(s), 0 watcher(s), 1 alert route(s)\n"


def test_check_reports_every_problem_and_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path, **{"reference": "refrence", "alert: [phone]": "alert: [phone, sms]"})
    result = runner.invoke(cli, ["check", "-c", str(config)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines == [
        f"{config}:4: cases[0].order.refrence: unknown key 'refrence'; did you mean 'reference'?"
    ]
    assert "Traceback" not in result.output


def test_check_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["check", "-c", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "absent.yaml:0: no such file; pass the config with -c PATH" in result.stderr


def test_unknown_case_and_route_are_usage_errors(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path)
    result = runner.invoke(cli, ["timeline", "-c", str(config), "--case", "nope"])
    assert result.exit_code == 2
    assert result.stderr == "error: no case 'nope' in config.yaml (cases: smith-v-doe)\n"
    result = runner.invoke(cli, ["test-alert", "-c", str(config), "--route", "sms"])
    assert result.exit_code == 2
    assert result.stderr == "error: no alert route 'sms' (routes: phone)\n"


def test_empty_timeline_in_every_format(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path)
    as_json = runner.invoke(cli, ["timeline", "-c", str(config), "--format", "json"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == []
    as_csv = runner.invoke(cli, ["timeline", "-c", str(config), "--format", "csv"])
    assert as_csv.stdout.splitlines()[0].startswith("violation_id,case,kind,severity")
    table = runner.invoke(cli, ["timeline", "-c", str(config)])
    assert "No violations recorded." in table.stdout


def test_test_alert_reports_each_target(
    runner: CliRunner,
    tmp_path: Path,
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    config = write(tmp_path, url=webhook_receiver.json_url())
    result = runner.invoke(cli, ["test-alert", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("phone: json://127.0.0.1:")
    assert result.stdout.rstrip().endswith(": delivered")
    assert len(webhook_receiver.accepted) == 1

    webhook_receiver.stop()
    result = runner.invoke(cli, ["test-alert", "-c", str(config), "--route", "phone"])
    assert result.exit_code == 1
    assert ": FAILED: " in result.stderr


def test_health_fails_without_a_heartbeat_and_verify_passes_on_empty_store(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = write(tmp_path)
    health = runner.invoke(cli, ["status", "-c", str(config), "--health"])
    assert health.exit_code == 1
    assert "heartbeat" in health.stdout.lower()
    verify = runner.invoke(cli, ["verify", "-c", str(config)])
    assert verify.exit_code == 0, verify.output
    assert "0 evidence records" in verify.stdout


def test_export_refuses_a_non_empty_directory(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path)
    out = tmp_path / "packet"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    result = runner.invoke(
        cli, ["export", "-c", str(config), "--case", "smith-v-doe", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "--force" in result.stderr
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_unreachable_database_is_one_line_without_password(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = write(
        tmp_path,
        **{"sqlite:///nc.db": "postgresql+psycopg://nc:s3cr3t-db-pass@127.0.0.1:1/nocontact"},
    )
    result = runner.invoke(cli, ["status", "-c", str(config)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "s3cr3t" not in result.output
    assert "Traceback" not in result.output


def test_db_upgrade_and_version(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path)
    result = runner.invoke(cli, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 0
    assert result.stdout == "database is up to date\n"
    assert (tmp_path / "nc.db").exists()
    version = runner.invoke(cli, ["--version"])
    assert version.stdout.startswith("nocontact, version ")
