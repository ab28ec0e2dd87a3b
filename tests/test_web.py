"""The web view over HTTP: login, lockout, CSRF, per-case access, hostile text, hidden
content, downloads, the access log and security headers (#17)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from service.access_log import access_log
from service.models import ContentAccess, Evidence
from service.web.auth import MAX_FAILURES, SESSION_COOKIE
from tests.fakes.evidence_data import CASE_ID, HOSTILE_SCRIPT, OTHER_CASE_ID
from tests.web_support import (
    HOSTILE_AUTHOR,
    PASSWORD,
    TOTP_SECRET,
    Clock,
    WebStore,
    client_for,
    csrf_of,
    log_in,
    web_store,
)


@pytest.fixture
def store(tmp_path: Path) -> WebStore:
    return web_store(tmp_path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(store: WebStore, clock: Clock) -> TestClient:
    return client_for(store, clock)


def _logged_in(client: TestClient, name: str = "alex") -> TestClient:
    assert log_in(client, name).status_code == 303
    return client


# -- login, sessions, lockout


def test_pages_need_a_login_and_come_back_after_it(client: TestClient, store: WebStore) -> None:
    target = f"/v/{store.populated.violation_ids[2]}"
    answer = client.get(target)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?next=%2Fv%2F{store.populated.violation_ids[2]}"
    page = client.get(answer.headers["location"])
    logged = client.post(
        "/login",
        data={
            "csrf": csrf_of(page.text),
            "username": "alex",
            "password": PASSWORD,
            "next": target,
        },
    )
    assert logged.status_code == 303
    assert logged.headers["location"] == target
    assert client.get(target).status_code == 200


def test_session_cookie_is_signed_httponly_and_strict(client: TestClient) -> None:
    answer = log_in(client)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie  # plain http on 127.0.0.1
    # A tampered cookie is no session at all.
    value = client.cookies[SESSION_COOKIE]
    assert client.get("/").status_code == 200
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert client.get("/").status_code == 303
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, value)
    assert client.get("/").status_code == 200


def test_cookie_is_secure_behind_https(store: WebStore, clock: Clock) -> None:
    app_client = client_for(store, clock)
    app_client.base_url = app_client.base_url.copy_with(scheme="https")  # type: ignore[misc]
    page = app_client.get("https://testserver/login")
    assert "Secure" in page.headers["set-cookie"]


def test_wrong_password_unknown_user_and_logout(client: TestClient) -> None:
    assert log_in(client, password="wrong password!").status_code == 401
    assert log_in(client, name="mallory").status_code == 401
    assert "Wrong name, password or code." in log_in(client, name="mallory").text
    _logged_in(client)
    home = client.get("/")
    assert home.status_code == 200
    out = client.post("/logout", data={"csrf": csrf_of(home.text)})
    assert out.status_code == 303
    assert client.get("/").status_code == 303


def test_lockout_after_repeated_failures_even_with_the_right_password(
    client: TestClient, clock: Clock
) -> None:
    for _ in range(MAX_FAILURES):
        assert log_in(client, password="guess guess").status_code == 401
    locked = log_in(client)
    assert locked.status_code == 429
    assert "Too many failed attempts" in locked.text
    clock.advance(timedelta(minutes=16))
    assert log_in(client).status_code == 303


def test_totp_second_factor(client: TestClient, clock: Clock) -> None:
    assert log_in(client, "tom").status_code == 401
    assert log_in(client, "tom", code="000000").status_code == 401
    code = pyotp.TOTP(TOTP_SECRET).at(clock.now)
    assert log_in(client, "tom", code=code).status_code == 303


# -- CSRF


def test_every_post_without_the_right_token_is_refused(client: TestClient) -> None:
    page = client.get("/login")
    refused = client.post(
        "/login", data={"csrf": "forged", "username": "alex", "password": PASSWORD}
    )
    assert refused.status_code == 403
    assert "expired" in refused.text
    assert client.post("/login", data={"username": "alex", "password": PASSWORD}).status_code == 403
    assert client.post("/login", data={"csrf": csrf_of(page.text), "username": "alex",
                                       "password": PASSWORD}).status_code == 303  # fmt: skip
    # Logged in, the old token is no longer worth anything.
    assert client.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 403
    assert client.post(f"/c/{CASE_ID}/export", data={"csrf": "x"}).status_code == 403
    assert client.get("/").status_code == 200


# -- per-case access and roles


def test_another_case_answers_404_like_a_missing_one(client: TestClient, store: WebStore) -> None:
    _logged_in(client)
    other = store.populated.other_case_violation_ids[0]
    for path in (
        f"/c/{OTHER_CASE_ID}",
        f"/v/{other}",
        f"/v/{other}/raw/1",
        "/c/no-such-case",
        "/v/00000000-0000-0000-0000-000000000000",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "OTHER-CASE-PRIVATE-TEXT" not in answer.text
    home = client.get("/")
    assert OTHER_CASE_ID not in home.text
    export = client.post(f"/c/{OTHER_CASE_ID}/export", data={"csrf": csrf_of(home.text)})
    assert export.status_code == 404


def test_raw_of_another_violation_is_404(client: TestClient, store: WebStore) -> None:
    _logged_in(client)
    first, second = store.populated.violation_ids[1:3]
    with store.sessions() as session:
        seq_of_second = session.scalars(
            select(Evidence.seq).where(Evidence.native_id == "t1_00002")
        ).first()
    assert client.get(f"/v/{second}/raw/{seq_of_second}").status_code == 200
    assert client.get(f"/v/{first}/raw/{seq_of_second}").status_code == 404


def test_an_advocate_sees_both_cases_and_a_viewer_cannot_export(
    store: WebStore, clock: Clock
) -> None:
    advocate = _logged_in(client_for(store, clock), "ada")
    home = advocate.get("/")
    assert CASE_ID in home.text
    assert OTHER_CASE_ID in home.text
    viewer = _logged_in(client_for(store, clock), "vic")
    page = viewer.get(f"/c/{CASE_ID}")
    assert "Download the evidence packet" not in page.text
    refused = viewer.post(f"/c/{CASE_ID}/export", data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 403


# -- hostile text and hidden content


def test_content_is_hidden_until_asked_and_each_view_is_logged(
    client: TestClient, store: WebStore
) -> None:
    _logged_in(client)
    violation = store.populated.violation_ids[1]
    page = client.get(f"/v/{violation}")
    assert page.status_code == 200
    assert "Show content" in page.text
    assert "alert(1)" not in page.text
    assert "Nobody has opened the content" in page.text
    with store.sessions() as session:
        assert session.scalars(select(ContentAccess)).all() == []
    shown = client.get(f"/v/{violation}?show=all")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; hi" in shown.text
    entries = access_log(store.sessions, CASE_ID)
    assert {(e.username, e.action, e.violation_id) for e in entries} == {
        ("alex", "text", violation)
    }
    assert len(entries) == 2  # the item and its edited version
    assert "alex · text" in shown.text


def test_a_user_setting_shows_content_by_default(store: WebStore, clock: Clock) -> None:
    settings = store.settings.model_copy(deep=True)
    users = dict(settings.web.users)
    users["alex"] = users["alex"].model_copy(update={"show_content": True})
    web = settings.web.model_copy(update={"users": users})
    client = client_for(store, clock, settings.model_copy(update={"web": web}))
    _logged_in(client)
    page = client.get(f"/v/{store.populated.violation_ids[1]}")
    assert "&lt;script&gt;alert(1)" in page.text
    assert access_log(store.sessions, CASE_ID)


def test_hostile_text_is_inert_everywhere(client: TestClient, store: WebStore) -> None:
    _logged_in(client)
    pages = [client.get(f"/v/{vid}?show=all").text for vid in store.populated.violation_ids]
    pages.append(client.get(f"/c/{CASE_ID}?all=1").text)
    joined = "\n".join(pages)
    assert HOSTILE_SCRIPT not in joined
    assert "<script" not in joined.lower()
    assert "<img" not in joined.lower()
    assert "&lt;img src=x onerror=" in joined
    # Bidirectional overrides cannot reorder the page: they are shown as marked codes.
    assert "\u202e" not in joined
    assert "\u2066" not in joined
    assert '<span class="ctl">U+202E</span>' in joined
    assert HOSTILE_AUTHOR not in joined
    assert "&lt;script&gt;alert(&#39;author&#39;)&lt;/script&gt;" in joined
    long_page = pages[4]
    assert "END-OF-LONG-POST" in long_page
    assert len(long_page) > 100_000


def test_raw_download_is_an_attachment_with_its_hash(client: TestClient, store: WebStore) -> None:
    _logged_in(client)
    violation = store.populated.violation_ids[1]
    seq = store.populated.evidence_seqs[1]
    answer = client.get(f"/v/{violation}/raw/{seq}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert hashlib.sha256(answer.content).hexdigest() == answer.headers["x-raw-sha256"]
    assert b"<script>alert(1)</script>" in answer.content
    assert [e.action for e in access_log(store.sessions, CASE_ID)] == ["raw"]


# -- pages


def test_cases_timeline_filters_and_status(client: TestClient, store: WebStore) -> None:
    _logged_in(client)
    home = client.get("/")
    assert "5 in the order period" in home.text
    timeline = client.get(f"/c/{CASE_ID}")
    ids = store.populated.violation_ids
    assert ids[0][:8] not in timeline.text  # before the order: only with "all"
    assert all(vid[:8] in timeline.text for vid in ids[1:])
    assert ids[0][:8] in client.get(f"/c/{CASE_ID}?all=1").text
    mentions = client.get(f"/c/{CASE_ID}?kind=mention").text
    assert ids[1][:8] in mentions
    assert ids[2][:8] not in mentions
    on_x = client.get(f"/c/{CASE_ID}?platform=x").text
    assert ids[1][:8] in on_x
    assert ids[2][:8] not in on_x
    since = client.get(f"/c/{CASE_ID}?since=2026-05-02").text
    assert ids[3][:8] in since
    assert ids[1][:8] not in since
    bad = client.get(f"/c/{CASE_ID}?since=03/01/2026")
    assert bad.status_code == 400
    assert "YYYY-MM-DD" in bad.text
    status = client.get("/status")
    assert status.status_code == 200
    assert "queued" in status.text


def test_violation_page_lists_versions_hashes_and_deliveries(
    client: TestClient, store: WebStore
) -> None:
    _logged_in(client)
    page = client.get(f"/v/{store.populated.violation_ids[2]}").text
    with store.sessions() as session:
        item = session.scalars(select(Evidence).where(Evidence.native_id == "t1_00002")).one()
    for digest in (item.sha256, item.chain_sha256, item.raw_sha256):
        assert digest in page
    assert "Route <strong>phone</strong>: sent" in page
    edited = client.get(f"/v/{store.populated.violation_ids[1]}").text
    assert "Version 1" in edited
    assert "Version 2" in edited


def test_export_download_is_the_packet_with_its_manifest(
    client: TestClient, store: WebStore
) -> None:
    _logged_in(client)
    client.get(f"/v/{store.populated.violation_ids[2]}?show=all")
    page = client.get(f"/c/{CASE_ID}")
    answer = client.post(f"/c/{CASE_ID}/export", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    names = archive.namelist()
    manifest_name = next(n for n in names if n.endswith("/MANIFEST.sha256"))
    top = manifest_name.split("/")[0]
    lines = archive.read(manifest_name).decode().splitlines()
    assert len(lines) >= 5
    for line in lines:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(archive.read(f"{top}/{name}")).hexdigest() == digest
    assert "OTHER-CASE-PRIVATE-TEXT" not in archive.read(f"{top}/evidence.json").decode()
    # The packet lists who viewed content before it was made; the export is logged too.
    assert any(line.endswith("  access-log.csv") for line in lines)
    log_lines = archive.read(f"{top}/access-log.csv").decode().splitlines()
    assert log_lines[0] == "at,username,action,violation_id,evidence_seq"
    assert f"alex,text,{store.populated.violation_ids[2]}," in log_lines[1]
    assert [e.action for e in access_log(store.sessions, CASE_ID)] == ["text", "export"]


# -- headers


def test_security_headers_on_every_answer(client: TestClient, store: WebStore) -> None:
    answers = [client.get("/login"), client.get("/nowhere"), client.get("/static/style.css")]
    _logged_in(client)
    answers += [client.get("/"), client.get(f"/v/{store.populated.violation_ids[1]}")]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "script-src" not in csp  # default-src 'none': no script at all
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
    pages = [a.text for a in answers if a.headers["content-type"].startswith("text/html")]
    for html in pages:
        assert "<script" not in html.lower()
        assert "http://" not in html.replace("http://testserver", "")
        assert "https://" not in html or "reddit.example" in html or "x.example" in html


def test_timeline_pages_follow_one_another_without_gaps(
    client: TestClient, store: WebStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import html
    import re

    from service.web import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    _logged_in(client)
    seen: list[str] = []
    path: str | None = f"/c/{CASE_ID}?all=1"
    while path:
        page = client.get(path).text
        seen += re.findall(r'href="/v/([0-9a-f-]{36})"', page)
        more = re.search(r'<a href="\?([^"]+)">Next page', page)
        path = f"/c/{CASE_ID}?{html.unescape(more.group(1))}" if more else None
    assert seen == store.populated.violation_ids
    assert client.get(f"/c/{CASE_ID}?after=garbage").status_code == 200


# -- dismiss


def _dismiss(client: TestClient, violation: str, reason: str, action: str = "dismiss") -> Any:
    page = client.get(f"/v/{violation}")
    return client.post(
        f"/v/{violation}/{action}", data={"csrf": csrf_of(page.text), "reason": reason}
    )


def test_dismiss_round_trip_is_chained_and_verify_passes(
    client: TestClient, store: WebStore
) -> None:
    from service.marks import dismissals
    from service.models import OutboxAlert
    from service.verify import verify_store

    violation = store.populated.violation_ids[1]
    with store.sessions.begin() as session:
        session.add(
            OutboxAlert(dedup_key=f"violation:{violation}:lawyer", route="lawyer",
                        category="violation", violation_id=violation, severity="medium",
                        created_at=Clock().now, due_at=Clock().now, next_attempt_at=Clock().now,
                        attempts=0, state="pending")
        )  # fmt: skip
    _logged_in(client)
    reason = "namesake <b>not him</b> \u202e"
    answer = _dismiss(client, violation, reason)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/v/{violation}"
    page = client.get(f"/v/{violation}").text
    assert "Dismissed</strong> by alex" in page
    assert "namesake &lt;b&gt;not him&lt;/b&gt;" in page
    assert "Undismiss" in page
    assert violation[:8] not in client.get(f"/c/{CASE_ID}").text
    assert "dismissed</span>" in client.get(f"/c/{CASE_ID}?all=1").text
    assert "1 dismissed" in client.get("/").text
    with store.sessions() as session:
        mark = dismissals(session)[violation]
        assert (mark.by, mark.reason) == ("alex", "namesake <b>not him</b> \u202e")
        cancelled = session.scalars(
            select(OutboxAlert.state).where(OutboxAlert.route == "lawyer")
        ).one()
    assert cancelled == "cancelled"
    assert verify_store(store.sessions).ok

    assert _dismiss(client, violation, "again").status_code == 409
    assert _dismiss(client, violation, "it was him", "undismiss").status_code == 303
    assert violation[:8] in client.get(f"/c/{CASE_ID}").text
    with store.sessions() as session:
        assert violation not in dismissals(session)
    report = verify_store(store.sessions)
    assert report.ok, report.problem_lines()
    assert _dismiss(client, violation, "it was him", "undismiss").status_code == 409


def test_dismiss_needs_a_reason_a_token_and_the_right(store: WebStore, clock: Clock) -> None:
    owner = _logged_in(client_for(store, clock))
    violation = store.populated.violation_ids[2]
    assert _dismiss(owner, violation, "   ").status_code == 400
    assert _dismiss(owner, violation, "x" * 501).status_code == 400
    forged = owner.post(f"/v/{violation}/dismiss", data={"csrf": "nope", "reason": "r"})
    assert forged.status_code == 403
    viewer = _logged_in(client_for(store, clock), "vic")
    assert "Dismiss</button>" not in viewer.get(f"/v/{violation}").text
    assert _dismiss(viewer, violation, "not him").status_code == 403
    other = store.populated.other_case_violation_ids[0]
    assert owner.post(f"/v/{other}/dismiss", data={"csrf": "x", "reason": "r"}).status_code == 404
    with store.sessions() as session:
        from service.marks import dismissals

        assert dismissals(session) == {}


def test_a_short_id_leads_to_the_violation_only_in_ones_own_case(
    client: TestClient, store: WebStore
) -> None:
    _logged_in(client)
    violation = store.populated.violation_ids[3]
    answer = client.get(f"/v/{violation[:8]}")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/v/{violation}"
    other = store.populated.other_case_violation_ids[0]
    assert client.get(f"/v/{other[:8]}").status_code == 404
    assert client.get("/v/ab").status_code == 404


def test_a_store_that_cannot_be_read_is_one_calm_page(store: WebStore, clock: Clock) -> None:
    from sqlalchemy import text

    client = _logged_in(client_for(store, clock))
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE violation_evidence"))
    answer = client.get(f"/v/{store.populated.violation_ids[1]}")
    assert answer.status_code == 503
    assert "cannot be read right now" in answer.text
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    assert "Traceback" not in answer.text
