"""``nocontact web``: hash-password, and the one-line errors before it serves (#17)."""

from __future__ import annotations

from pathlib import Path

from argon2 import PasswordHasher
from click.testing import CliRunner

from service.cli import cli
from service.config import parse_config
from service.logsetup import settings_secrets

BASE = """\
database: sqlite:///store.db
cases:
  - id: smith-v-doe
    order: {effective: 2026-01-15}
    protected: {names: ["Alex Smith"]}
    restrained: {names: ["John Doe"]}
"""


def test_hash_password_prints_an_argon2id_hash_of_stdin() -> None:
    result = CliRunner().invoke(cli, ["web", "hash-password"], input="a long passphrase\n")
    assert result.exit_code == 0, result.output
    digest = result.output.strip()
    assert digest.startswith("$argon2id$")
    assert "a long passphrase" not in result.output
    assert PasswordHasher().verify(digest, "a long passphrase")


def test_hash_password_refuses_a_short_password() -> None:
    result = CliRunner().invoke(cli, ["web", "hash-password"], input="short\n")
    assert result.exit_code == 2
    assert result.output.strip() == "error: the password is too short: use at least 10 characters"


def test_web_without_users_says_how_to_add_one(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE)
    result = CliRunner().invoke(cli, ["web", "-c", str(config)])
    assert result.exit_code == 2
    assert "web.users is empty" in result.output
    assert "nocontact web hash-password" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_user_listing_an_unknown_case_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        BASE + "web:\n  users:\n    alex: {password_hash: x, role: owner, cases: [smith-v-do]}\n"
    )
    result = CliRunner().invoke(cli, ["web", "-c", str(config)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"{config}:9: web.users.alex.cases[0]: "
        "no case named 'smith-v-do'; did you mean 'smith-v-doe'?"
    )


def test_web_settings_are_validated_and_their_secrets_redacted() -> None:
    settings = parse_config(
        BASE
        + "web:\n  bind: 0.0.0.0:8443\n  secret_key: "
        + "s" * 40
        + "\n  users:\n    alex: {password_hash: h, role: advocate, cases: [smith-v-doe],"
        + " totp_secret: JBSWY3DPEHPK3PXP}\n"
    )
    assert settings.web.bind == "0.0.0.0:8443"
    assert settings.web.users["alex"].role == "advocate"
    assert {"s" * 40, "JBSWY3DPEHPK3PXP"} <= set(settings_secrets(settings))
    assert parse_config(BASE).web.bind == "127.0.0.1:8080"


def test_a_bad_bind_override_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        BASE + "web:\n  users:\n    alex: {password_hash: x, role: owner, cases: [smith-v-doe]}\n"
    )
    result = CliRunner().invoke(cli, ["web", "-c", str(config), "--bind", "8080"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --bind: write HOST:PORT, e.g. 0.0.0.0:8080"


def test_show_lists_who_saw_the_content_through_the_web_view(tmp_path: Path) -> None:
    import json
    from datetime import UTC, datetime

    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from service.access_log import log_access
    from tests.fakes.evidence_data import CASE_ID, populate

    config = tmp_path / "config.yaml"
    config.write_text(BASE)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade", "-c", str(config)]).exit_code == 0
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    sessions = sessionmaker(engine, expire_on_commit=False)
    data = populate(sessions)
    violation = data.violation_ids[1]
    seen_at = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    log_access(sessions, at=seen_at, username="ada", case_id=CASE_ID, action="text",
               violation_id=violation, seqs=[data.evidence_seqs[1]])  # fmt: skip
    engine.dispose()
    text = runner.invoke(cli, ["show", "-c", str(config), violation])
    assert text.exit_code == 0, text.output
    assert "Content viewed through the web view:" in text.stdout
    assert f"ada: text (chain record {data.evidence_seqs[1]})" in text.stdout
    as_json = runner.invoke(cli, ["show", "-c", str(config), violation, "--format", "json"])
    views = json.loads(as_json.stdout)["content_views"]
    assert views == [
        {"at": "2026-06-01T12:00:00Z", "user": "ada", "action": "text",
         "seq": data.evidence_seqs[1]}
    ]  # fmt: skip
    untouched = runner.invoke(cli, ["show", "-c", str(config), data.violation_ids[2]])
    assert "web view" not in untouched.stdout
