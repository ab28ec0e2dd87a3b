"""deploy/: the systemd unit, container files and environment example, checked by
.ci/check-deploy.sh (systemd-analyze verify + security, hadolint, compose structure).

The script needs systemd-analyze. Locally a missing one skips these tests with a
reason; under CI (which installs systemd) a missing one fails them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SCRIPT = ROOT / ".ci" / "check-deploy.sh"


def require_systemd_analyze() -> None:
    if shutil.which("systemd-analyze"):
        return
    if os.environ.get("CI"):
        pytest.fail("systemd-analyze is missing under CI: .ci/check-deploy.sh installs it")
    pytest.skip("systemd-analyze is not installed (apt-get install systemd)")


def run_check(deploy_dir: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    require_systemd_analyze()
    env = {**os.environ, "DEPLOY_DIR": str(deploy_dir)}
    return subprocess.run(  # noqa: S603 - our own script, fixed arguments
        ["bash", str(SCRIPT)],  # noqa: S607
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    return copy


def test_check_deploy_passes_on_the_shipped_files() -> None:
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "systemd-analyze verify: clean" in result.stdout
    score = re.search(r"exposure (\d+\.\d+) \(limit 2\.0\)", result.stdout)
    assert score is not None
    assert float(score.group(1)) <= 2.0
    assert result.stdout.rstrip().endswith("check-deploy: OK")


def test_a_misspelt_directive_fails_verify(deploy_copy: Path) -> None:
    unit = deploy_copy / "nocontact.service"
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtectHom=yes"))
    result = run_check(deploy_copy)
    assert result.returncode != 0
    assert "verify is not clean" in result.stderr
    assert "ProtectHom" in result.stderr


def test_an_unhardened_unit_fails_security(deploy_copy: Path) -> None:
    unit = deploy_copy / "nocontact.service"
    text = unit.read_text()
    kept = [
        line
        for line in text.splitlines()
        if not line.startswith(("Protect", "Private", "Restrict", "SystemCall", "Capability"))
    ]
    unit.write_text("\n".join(kept) + "\n")
    result = run_check(deploy_copy)
    assert result.returncode != 0
    assert re.search(r"exposure \d+\.\d+ is above 2\.0", result.stderr), result.stderr


def test_a_compose_file_without_the_postgres_profile_fails(deploy_copy: Path) -> None:
    compose_path = deploy_copy / "compose.yaml"
    compose = yaml.safe_load(compose_path.read_text())
    del compose["services"]["postgres"]
    del compose["services"]["nocontact-web-pg"]
    compose["services"]["nocontact-pg"]["profiles"] = ["sqlite"]
    compose_path.write_text(yaml.safe_dump(compose))
    result = run_check(deploy_copy)
    assert result.returncode != 0
    assert "no service in profile 'postgres'" in result.stderr


def test_an_env_example_missing_a_config_variable_fails(deploy_copy: Path) -> None:
    env = deploy_copy / "nocontact.env.example"
    env.write_text(env.read_text().replace("#NOCONTACT_ALERT_URL=\n", ""))
    result = run_check(deploy_copy)
    assert result.returncode != 0
    assert "NOCONTACT_ALERT_URL (used by config.yaml) is not listed" in result.stderr


# --- static properties of the files (no tools needed) ----------------------------------


def unit_directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (DEPLOY / "nocontact.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_unit_runs_the_service_unprivileged_with_state_and_secrets() -> None:
    unit = unit_directives()
    assert unit["ExecStart"] == [
        "/opt/nocontact/venv/bin/nocontact run -c /etc/nocontact/config.yaml"
    ]
    assert unit["DynamicUser"] == ["yes"]
    assert unit["StateDirectory"] == ["nocontact"]
    assert unit["ConfigurationDirectory"] == ["nocontact"]
    assert unit["EnvironmentFile"] == ["/etc/nocontact/nocontact.env"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["MemoryDenyWriteExecute"] == ["yes"]
    assert "IPAddressDeny" not in unit  # it must reach platforms and alert services


def test_env_example_lists_every_secret_without_values() -> None:
    text = (DEPLOY / "nocontact.env.example").read_text()
    assignments = re.findall(r"(?m)^#?([A-Z][A-Z0-9_]*)=(.*)$", text)
    names = {name for name, _ in assignments}
    assert {
        "NOCONTACT_DATABASE",
        "REDDIT_CLIENT_ID",
        "REDDIT_CLIENT_SECRET",
        "REDDIT_USERNAME",
        "REDDIT_PASSWORD",
        "X_BEARER_TOKEN",
        "NOCONTACT_ALERT_URL",
        "NTFY_TOPIC",
        "SMTP_PASSWORD",
    } <= names
    assert [name for name, value in assignments if value.strip()] == []


def test_containerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert re.findall(r"(?m)^FROM (\S+)", text) == ["python:3.11-slim", "python:3.11-slim"]
    [user] = re.findall(r"(?m)^USER (\S+)", text)
    assert not user.startswith(("0", "root"))
    assert 'CMD ["nocontact", "status", "--health", "-c", "/config/config.yaml"]' in text
    assert 'ENTRYPOINT ["nocontact"]' in text
    assert 'CMD ["run", "-c", "/config/config.yaml"]' in text
    assert "NOCONTACT_DATABASE=sqlite:////data/nocontact.db" in text
    assert 'VOLUME ["/data"]' in text


def test_web_view_is_deployed_beside_the_service_on_loopback_only() -> None:
    """#17: a second unit and a compose service per profile, sharing the store."""
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "systemd-analyze verify: clean (nocontact-web.service)" in result.stdout
    unit = (DEPLOY / "nocontact-web.service").read_text()
    assert "ExecStart=/opt/nocontact/venv/bin/nocontact web -c /etc/nocontact/config.yaml" in unit
    assert "User=nocontact" in unit
    assert "IPAddressDeny=any" in unit
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for name, profile in (("nocontact-web", "sqlite"), ("nocontact-web-pg", "postgres")):
        service = services[name]
        assert service["profiles"] == [profile]
        assert service["command"][:3] == ["web", "-c", "/config/config.yaml"]
        assert all(port.startswith("127.0.0.1:") for port in service["ports"])
        assert "nocontact-data:/data" in service["volumes"]
        assert service["read_only"] is True
