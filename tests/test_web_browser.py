"""The web view in a real Chromium (Debian's ``chromium``, driven by Playwright): the
alert's link, login, revealing content, dismissing, downloading the packet, phone width
(#17).

``nocontact web`` runs as its own process on 127.0.0.1, as it would in production.
Playwright never downloads a browser here: ``.ci/install-web.sh`` installs chromium.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from service.db import make_engine, migrate
from service.web.auth import hash_password
from tests.fakes.evidence_data import CASE_ID, HOSTILE_SCRIPT, populate
from tests.web_support import PASSWORD, TEXTS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}

CONFIG = """\
database: sqlite:///store.db
cases:
  - id: smith-v-doe
    order: {{effective: 2026-01-15, expires: 2027-01-15}}
    timezone: Europe/Berlin
    protected: {{names: ["Alex Smith"], handles: {{reddit: [alex_smith]}}}}
    restrained: {{names: ["John Doe"], handles: {{reddit: [jdoe]}}}}
  - id: jones-v-roe
    order: {{effective: 2026-01-15}}
    protected: {{names: ["Jo Jones"]}}
    restrained: {{names: ["Rick Roe"]}}
web:
  bind: 127.0.0.1:{port}
  users:
    alex: {{password_hash: "${{ALEX_WEB_HASH}}", role: owner, cases: [smith-v-doe]}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """``nocontact web`` on a store holding hostile and 100 kB posts."""
    engine = make_engine("sqlite:///store.db", tmp_path)
    migrate(engine)
    from sqlalchemy.orm import sessionmaker

    populated = populate(sessionmaker(engine, expire_on_commit=False), texts=TEXTS)
    engine.dispose()
    port = _free_port()
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(port=port))
    env = {**os.environ, "ALEX_WEB_HASH": hash_password(PASSWORD)}
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "service", "web", "-c", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{base}/login", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"nocontact web exited: {output}")
                time.sleep(0.1)
        yield base, populated.violation_ids
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is missing: run .ci/install-web.sh"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} scrolls sideways: {width}px"


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_alert_link_login_reveal_dismiss_and_packet_at_phone_width(
    server: tuple[str, list[str]], browser: Browser, tmp_path: Path
) -> None:
    base, violation_ids = server
    context = browser.new_context(viewport=PHONE, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    # A download ends its page request as "aborted"; any other failure is a problem.
    page.on(
        "requestfailed",
        lambda request: (
            None if request.url.endswith("/export") else problems.append(f"failed: {request.url}")
        ),
    )
    outside: list[str] = []
    page.on(
        "request",
        lambda request: outside.append(request.url) if not request.url.startswith(base) else None,
    )

    # The link an alert carries opens the login page, then the violation itself.
    hostile = violation_ids[1]
    page.goto(f"{base}/v/{hostile}")
    assert "/login" in page.url
    _no_horizontal_scroll(page)
    page.fill("input[name=username]", "alex")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/v/{hostile}")
    assert page.locator("pre.content").count() == 0  # hidden by default
    _no_horizontal_scroll(page)

    page.locator("a.button", has_text="Show content").first.click()
    content = page.locator("pre.content").first
    assert content.inner_text() == HOSTILE_SCRIPT  # shown as text, never run
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert page.locator("text=alex · text").count() == 1  # the view is in the access log

    # Dismiss it as a false positive: a chain record, and gone from the timeline.
    page.fill("form[action$='/dismiss'] input[name=reason]", "a namesake, not him")
    page.click("button:has-text('Dismiss')")
    page.wait_for_url(f"{base}/v/{hostile}")
    assert "Dismissed by alex" in page.locator(".dismissed").inner_text()
    assert "a namesake, not him" in page.locator(".dismissed").inner_text()
    page.goto(f"{base}/c/{CASE_ID}")
    assert page.locator(f"a[href='/v/{hostile}']").count() == 0

    # The 100 kB post at phone width: wrapped, no sideways scroll.
    page.goto(f"{base}/v/{violation_ids[4]}?show=all")
    assert "END-OF-LONG-POST" in page.locator("pre.content").first.inner_text()
    _no_horizontal_scroll(page)
    page.goto(f"{base}/v/{violation_ids[3]}?show=all")
    _no_horizontal_scroll(page)
    shot = tmp_path / "violation-390x844.png"
    page.screenshot(path=str(shot))
    assert _png_size(shot) == (390, 844)
    artefacts = os.environ.get("NOCONTACT_SCREENSHOTS")
    if artefacts:
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        (Path(artefacts) / shot.name).write_bytes(shot.read_bytes())

    for path in ("/", f"/c/{CASE_ID}", f"/c/{CASE_ID}?all=1", "/status"):
        page.goto(base + path)
        _no_horizontal_scroll(page)

    # The packet, as the advocate would take it to court.
    page.goto(f"{base}/c/{CASE_ID}")
    with page.expect_download() as download_info:
        page.click("text=Download the evidence packet")
    saved = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        manifest = next(n for n in archive.namelist() if n.endswith("MANIFEST.sha256"))
        top = manifest.split("/")[0]
        lines = archive.read(manifest).decode().splitlines()
        assert any(line.endswith("  evidence.json") for line in lines)
        for line in lines:
            digest, name = line.split("  ", 1)
            assert hashlib.sha256(archive.read(f"{top}/{name}")).hexdigest() == digest
        # The dismissal is in the packet, with who and why; so is the access log.
        violations = json.loads(archive.read(f"{top}/evidence.json"))["violations"]
        dismissed = next(v for v in violations if v["id"] == hostile)["dismissed"]
        assert (dismissed["by"], dismissed["reason"]) == ("alex", "a namesake, not him")
        assert f"alex,text,{hostile}," in archive.read(f"{top}/access-log.csv").decode()

    assert outside == []
    assert problems == []
    context.close()
