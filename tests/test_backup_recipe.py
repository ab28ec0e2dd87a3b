"""The README's backup recipes, run as written (paths pointed at a temporary folder):
the copy is a consistent SQLite database readable by its owner alone (0600), even under
a permissive umask, because it holds the evidence and the abusive messages."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
LIVE = "/var/lib/nocontact/nocontact.db"
BACKUPS = "/var/backups/nocontact"


def _backups_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("### Backups")
    return text[start : text.index("\n### ", start + 1)]


def _store(tmp_path: Path) -> Path:
    live = tmp_path / "live.db"
    with sqlite3.connect(live) as db:
        db.execute("CREATE TABLE evidence (text TEXT)")
        db.execute("INSERT INTO evidence VALUES ('I am outside')")
    live.chmod(0o600)
    return live


def _check_copy(folder: Path) -> None:
    copies = list(folder.glob("nocontact-*.db"))
    assert len(copies) == 1, copies
    assert stat.S_IMODE(copies[0].stat().st_mode) == 0o600
    with sqlite3.connect(copies[0]) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT text FROM evidence").fetchall() == [("I am outside",)]


def _localise(script: str, live: Path, folder: Path) -> str:
    return script.replace(LIVE, str(live)).replace(BACKUPS, str(folder))


def test_python_recipe_writes_an_owner_only_copy(tmp_path: Path) -> None:
    block = re.search(r"python3 - <<'EOF'\n(.*?)\nEOF", _backups_section(), re.S)
    assert block is not None, "README lost its Python backup recipe"
    folder = tmp_path / "backups"
    folder.mkdir()
    script = _localise(block.group(1), _store(tmp_path), folder)
    old = os.umask(0o022)
    try:
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)  # noqa: S603
    finally:
        os.umask(old)
    _check_copy(folder)


def test_shell_recipe_writes_an_owner_only_copy(tmp_path: Path) -> None:
    # Needs the sqlite3 tool (Debian: sqlite3), which .ci/install-base.sh installs.
    block = re.search(r"```sh\n(install -d .*?)\n```", _backups_section(), re.S)
    assert block is not None, "README lost its sqlite3 backup recipe"
    folder = tmp_path / "backups"
    script = _localise(block.group(1), _store(tmp_path), folder)
    subprocess.run(["sh", "-c", f"umask 022; {script}"], check=True, timeout=60)  # noqa: S603,S607
    _check_copy(folder)
