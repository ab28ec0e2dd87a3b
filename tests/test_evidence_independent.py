"""Recompute every hash and chain link of a packet from evidence.json and raw/ alone,
following docs/evidence.md, with nothing but hashlib and json: ``service`` is used only
to build the packets, never by the checker (``recompute`` and the documented script)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from service.db import session_factory
from service.export import export_case
from tests.fakes.evidence_data import (
    EXPORT_TIME,
    HOSTILE_RTL,
    HOSTILE_SCRIPT,
    build_packet,
    case_settings,
    record_through_store,
)

FIELDS = [
    "seq",
    "platform",
    "native_id",
    "version",
    "url",
    "author_handle",
    "author_id",
    "posted_at",
    "captured_at",
    "text",
    "raw_sha256",
]
GENESIS = "0" * 64


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PacketInvalid(Exception):
    pass


def recompute(packet: Path, data: dict[str, Any]) -> int:
    """Raise PacketInvalid on the first mismatch; return the number of records checked."""
    links: dict[int, dict[str, Any]] = {}
    previous = data["chain"]["genesis"]
    for n, link in enumerate(data["chain"]["links"], start=1):
        if link["seq"] != n:
            raise PacketInvalid(f"link {n} missing")
        if _sha((previous + link["sha256"]).encode("ascii")) != link["chain_sha256"]:
            raise PacketInvalid(f"chain link {n} does not follow from {n - 1}")
        links[n] = link
        previous = link["chain_sha256"]
    if data["chain"]["last_seq"] != len(links):
        raise PacketInvalid("chain ends before last_seq")
    checked = 0
    for violation in data["violations"]:
        for item in violation["evidence"]:
            canonical = json.dumps(
                {name: item[name] for name in FIELDS},
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode("utf-8")
            seq = item["seq"]
            if not _sha(canonical) == item["sha256"] == links[seq]["sha256"]:
                raise PacketInvalid(f"record {seq}: sha256 does not recompute")
            if item["chain_sha256"] != links[seq]["chain_sha256"]:
                raise PacketInvalid(f"record {seq}: chain_sha256 differs from its link")
            if _sha((packet / item["raw_file"]).read_bytes()) != item["raw_sha256"]:
                raise PacketInvalid(f"record {seq}: raw payload does not match")
            checked += 1
    return checked


@pytest.fixture
def packet(tmp_path: Path) -> Path:
    texts = ['é ü 日本 \n\t"q" \\ \x00\u2028', HOSTILE_SCRIPT, HOSTILE_RTL]
    return build_packet(tmp_path, violations=9, texts=texts)


def _load(packet: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((packet / "evidence.json").read_text(encoding="utf-8"))
    return loaded


def test_every_hash_and_link_recomputes(packet: Path) -> None:
    data = _load(packet)
    checked = recompute(packet, data)
    assert checked == sum(len(v["evidence"]) for v in data["violations"])
    assert checked >= 9
    assert data["chain"]["genesis"] == GENESIS
    # The case's evidence is interleaved with another case's: those links are present
    # (the chain is unbroken) but their records are not disclosed.
    own = {e["seq"] for v in data["violations"] for e in v["evidence"]}
    assert len(data["chain"]["links"]) > len(own)
    assert max(own) == data["chain"]["last_seq"]


def test_a_changed_text_fails(packet: Path) -> None:
    data = _load(packet)
    data["violations"][1]["evidence"][0]["text"] += "!"
    with pytest.raises(PacketInvalid, match="sha256 does not recompute"):
        recompute(packet, data)


def test_a_changed_link_fails(packet: Path) -> None:
    data = _load(packet)
    data["chain"]["links"][2]["sha256"] = "0" * 64
    with pytest.raises(PacketInvalid, match="chain link 3"):
        recompute(packet, data)


def test_a_removed_link_fails(packet: Path) -> None:
    data = _load(packet)
    del data["chain"]["links"][3]
    with pytest.raises(PacketInvalid, match="link 4 missing"):
        recompute(packet, data)


def test_a_changed_raw_payload_fails(packet: Path) -> None:
    data = _load(packet)
    raw = packet / data["violations"][0]["evidence"][0]["raw_file"]
    raw.write_bytes(raw.read_bytes() + b" ")
    with pytest.raises(PacketInvalid, match="raw payload"):
        recompute(packet, data)


def test_the_documented_script_accepts_the_packet(packet: Path, tmp_path: Path) -> None:
    """The script printed in docs/evidence.md, run as a third party would."""
    docs = (Path(__file__).parent.parent / "docs" / "evidence.md").read_text(encoding="utf-8")
    marker = "### Recompute everything from the packet alone"
    script = docs.split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "check_packet.py"
    path.write_text(script, encoding="utf-8")
    ok = subprocess.run(  # noqa: S603 (our interpreter, our script)
        [sys.executable, str(path), str(packet)], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: ")

    tampered = tmp_path / "tampered"
    shutil.copytree(packet, tampered)
    data = _load(tampered)
    data["violations"][0]["evidence"][0]["author_handle"] = "someone_else"
    (tampered / "evidence.json").write_text(json.dumps(data), encoding="utf-8")
    bad = subprocess.run(  # noqa: S603 (our interpreter, our script)
        [sys.executable, str(path), str(tampered)], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1
    assert "FAILED: record" in bad.stderr


def test_a_packet_of_the_real_store_recomputes(engine: Engine, tmp_path: Path) -> None:
    record_through_store(engine)
    out = tmp_path / "store-packet"
    export_case(session_factory(engine, readonly=True), case_settings(), out, now=EXPORT_TIME)
    data = _load(out)
    assert recompute(out, data) == 3
    assert [e["version"] for e in data["violations"][0]["evidence"]][:2] == [1, 2]


def test_the_worked_example_in_the_docs_recomputes() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "evidence.md").read_text(encoding="utf-8")
    example = docs.split("## 3. Worked example", 1)[1].split("## 4.", 1)[0]
    blocks = example.split("```\n")
    raw, canonical = blocks[1].rstrip("\n"), blocks[3].rstrip("\n")
    documented = {
        line.split("`")[1]: line.rsplit("`", 2)[1]
        for line in example.splitlines()
        if line.startswith(("- `sha256`", "- `chain_sha256`", "`raw_sha256`"))
    }
    assert documented["raw_sha256"] == _sha(raw.encode("utf-8"))
    record = json.loads(canonical)
    assert record["raw_sha256"] == documented["raw_sha256"]
    assert sorted(record) == sorted(FIELDS)
    recanonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert recanonical == canonical
    assert _sha(canonical.encode("utf-8")) == documented["sha256"]
    assert _sha((GENESIS + documented["sha256"]).encode("ascii")) == documented["chain_sha256"]
