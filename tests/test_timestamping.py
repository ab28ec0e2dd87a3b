"""Trusted timestamps (#14 item 1) against a LOCAL timestamp authority: openssl
``ts -reply`` behind an HTTP handler on 127.0.0.1 with a throw-away CA."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from pypdf import PdfReader
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.evidence_settings import TimestampingSettings
from service.export import export_case
from service.models import ChainRecord
from service.timestamping import load_roots, stamp_now
from service.verify import verify_store
from tests.fakes.evidence_data import EXPORT_TIME, case_settings, populate
from tests.fakes.tsa_server import LocalTsa, local_tsa  # noqa: F401
from tests.test_store import make_obs, record

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def settings_for(*urls: str) -> TimestampingSettings:
    return TimestampingSettings(tsa_urls=list(urls), every="10s", timeout="2s")


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    made = sessionmaker(engine, expire_on_commit=False)
    populate(made, violations=3)
    return made


def tokens(sessions: sessionmaker[Session]) -> list[dict[str, object]]:
    with sessions() as session:
        rows = session.scalars(select(ChainRecord).where(ChainRecord.record == "timestamp"))
        return [json.loads(row.data) | {"seq": row.seq} for row in rows]


def test_settings_accept_10s_and_refuse_less() -> None:
    assert settings_for("https://tsa.example/tsr").every == timedelta(seconds=10)
    with pytest.raises(ValidationError, match="at least 10s"):
        TimestampingSettings(tsa_urls=["https://tsa.example/tsr"], every="5s")
    with pytest.raises(ValidationError, match="not an http"):
        TimestampingSettings(tsa_urls=["ftp://tsa.example"])


def test_the_head_is_stamped_when_changed_and_verify_checks_the_token(
    sessions: sessionmaker[Session],
    local_tsa: LocalTsa,  # noqa: F811
    tmp_path: Path,
) -> None:
    ts = settings_for(local_tsa.url)
    (first,) = stamp_now(sessions, ts, clock=lambda: NOW, force=False)
    assert first.error is None
    assert first.record_seq == first.stamped_seq + 1
    (unchanged,) = stamp_now(sessions, ts, clock=lambda: NOW, force=False)
    assert unchanged.skipped, "a head that only grew by its own token is not stamped again"
    assert local_tsa.stamped == 1

    roots = load_roots([str(local_tsa.ca_file)], tmp_path)
    report = verify_store(sessions, tsa_roots=roots)
    assert report.ok, report.problem_lines()
    assert report.chain_records == 1
    assert "and 1 other chain records, chain intact" in report.summary_line()

    (token,) = tokens(sessions)
    assert token["tsa_url"] == local_tsa.url
    assert token["stamped_seq"] == first.stamped_seq
    with sessions.begin() as session:  # someone swaps the token's bytes
        session.execute(update(ChainRecord).values(blob=b"0" * 10))
    broken = verify_store(sessions, tsa_roots=roots)
    assert [line for line in broken.problem_lines() if "timestamp record" in line] == [
        f"seq {token['seq']}: timestamp record: token bytes changed: their SHA-256 is not "
        "token_sha256"
    ]


def test_a_token_from_another_authority_fails_the_signature_check(
    sessions: sessionmaker[Session],
    local_tsa: LocalTsa,  # noqa: F811
    tmp_path: Path,
) -> None:
    stamp_now(sessions, settings_for(local_tsa.url), clock=lambda: NOW)
    (tmp_path / "other").mkdir()
    stranger = LocalTsa(tmp_path / "other")
    try:
        roots = load_roots([str(stranger.ca_file)], tmp_path)
    finally:
        stranger.stop()
    report = verify_store(sessions, tsa_roots=roots)
    assert any("token signature does not verify" in line for line in report.problem_lines())


def test_a_tsa_that_is_down_delays_stamping_and_loses_nothing(
    engine: Engine,
    store: object,
    local_tsa: LocalTsa,  # noqa: F811
) -> None:
    sessions = sessionmaker(engine, expire_on_commit=False)
    ts = settings_for(local_tsa.url)
    local_tsa.down = True
    record(store, [make_obs("t1_one", "Alex, one")])  # type: ignore[arg-type]
    (failed,) = stamp_now(sessions, ts, clock=lambda: NOW, force=False)
    assert failed.error == "answered HTTP 503"
    assert tokens(sessions) == []
    # Capture goes on while the TSA is down.
    record(store, [make_obs("t1_two", "Alex, two")], now=NOW)  # type: ignore[arg-type]

    local_tsa.down = False
    (later,) = stamp_now(sessions, ts, clock=lambda: NOW, force=False)
    assert later.error is None
    (token,) = tokens(sessions)
    assert token["stamped_seq"] == 2, "the later token covers what was captured meanwhile"
    assert verify_store(sessions).ok


def test_an_unreachable_tsa_is_an_outcome_not_an_exception(
    sessions: sessionmaker[Session],
    local_tsa: LocalTsa,  # noqa: F811
) -> None:
    local_tsa.stop()
    (outcome,) = stamp_now(sessions, settings_for(local_tsa.url), clock=lambda: NOW)
    assert outcome.error is not None
    assert outcome.error.startswith("not reachable")


def test_the_packet_carries_tokens_that_openssl_verifies(
    sessions: sessionmaker[Session],
    local_tsa: LocalTsa,  # noqa: F811
    tmp_path: Path,
) -> None:
    ts = settings_for(local_tsa.url)
    stamp_now(sessions, ts, clock=lambda: NOW, force=False)
    stamp_now(sessions, ts, clock=lambda: NOW, force=True)  # the export's own stamp
    roots = load_roots([str(local_tsa.ca_file)], tmp_path)
    out = tmp_path / "packet"
    export_case(sessions, case_settings(), out, now=EXPORT_TIME, timestamp_roots=roots)

    data = json.loads((out / "evidence.json").read_text())
    records = data["chain"]["records"]
    assert [r["record"] for r in records] == ["timestamp", "timestamp"]
    assert data["chain"]["last_seq"] == records[-1]["seq"]
    assert [link["seq"] for link in data["chain"]["links"]] == list(
        range(1, data["chain"]["last_seq"] + 1)
    )
    html = (out / "report.html").read_text()
    assert "Trusted timestamps (RFC 3161)" in html
    for entry in records:
        token = out / entry["token_file"]
        head = out / f"timestamps/head-{entry['data']['stamped_seq']}.txt"
        assert head.read_text() == entry["data"]["stamped_chain_sha256"]
        command = (
            f"openssl ts -verify -data timestamps/head-{entry['data']['stamped_seq']}.txt "
            f"-in {entry['token_file']} -CAfile timestamps/root-1.pem "
            f"-untrusted timestamps/tsa-{entry['seq']}-certs.pem"
        )
        assert command in html
        checked = subprocess.run(  # noqa: S603 - the command the report prints
            command.split(), cwd=out, capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stderr
        assert "Verification: OK" in checked.stdout
        assert token.stat().st_mode & 0o777 == 0o600
    manifest = (out / "MANIFEST.sha256").read_text()
    assert "timestamps/root-1.pem" in manifest
    sha = subprocess.run(
        ["sha256sum", "-c", "MANIFEST.sha256"],  # noqa: S607 (coreutils)
        cwd=out,
        capture_output=True,
        check=False,
    )
    assert sha.returncode == 0
    pdf = "\n".join(page.extract_text() for page in PdfReader(out / "report.pdf").pages)
    assert "Trusted timestamps (RFC 3161)" in pdf
    assert "Trusted timestamp: existed by" in pdf


def test_cli_timestamp_and_export_stamp_through_the_config(
    tmp_path: Path,
    local_tsa: LocalTsa,  # noqa: F811
) -> None:
    config = tmp_path / "config.yaml"
    case = case_settings()
    config.write_text(
        f"database: sqlite:///{tmp_path / 'nc.db'}\n"
        f"cases:\n  - {json.dumps(case.model_dump(mode='json', exclude_defaults=True))}\n"
        f"evidence:\n  timestamping: {{tsa_urls: ['{local_tsa.url}'], every: 10s,\n"
        f"                 ca_files: ['{local_tsa.ca_file}']}}\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    empty = runner.invoke(cli, ["timestamp", "-c", str(config)])
    assert empty.exit_code == 0, empty.output
    assert "nothing to stamp" in empty.stdout

    from service.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'nc.db'}", tmp_path)
    migrate(engine)
    populate(sessionmaker(engine, expire_on_commit=False), violations=2)
    engine.dispose()
    stamped = runner.invoke(cli, ["timestamp", "-c", str(config)])
    assert stamped.exit_code == 0, stamped.output
    assert "stamped chain head seq" in stamped.stdout

    out = tmp_path / "p"
    exported = runner.invoke(
        cli, ["export", "-c", str(config), "--case", case.id, "--out", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    assert local_tsa.stamped == 2, "export stamps the head too"
    assert len(list((out / "timestamps").glob("*.tsr"))) == 2
    verified = runner.invoke(cli, ["verify", "-c", str(config)])
    assert verified.exit_code == 0, verified.output

    local_tsa.down = True
    failing = runner.invoke(cli, ["timestamp", "-c", str(config)])
    assert failing.exit_code == 1
    assert "not stamped: answered HTTP 503" in failing.stderr
