"""The one timeline pager and CSV writer: keyset pages, typed entries, formula guard."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from service.store import Store
from service.timeline import FORMULA_START, PACKET_CSV, TIMELINE_CSV, safe_cell, write_csv
from tests.test_store import NOW, make_hit, make_obs, record

HOSTILE = ['=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


@pytest.mark.parametrize("start", FORMULA_START)
def test_every_formula_start_is_defused_with_a_leading_quote(start: str) -> None:
    assert safe_cell(f"{start}cmd") == f"'{start}cmd"


def test_safe_cell_leaves_other_values_alone() -> None:
    assert safe_cell("Alex, answer me") == "Alex, answer me"
    assert safe_cell("a=b") == "a=b"
    assert safe_cell(None) == ""
    assert safe_cell(-1.5) == -1.5
    assert safe_cell(True) is True


@pytest.mark.parametrize("columns", [TIMELINE_CSV, PACKET_CSV], ids=["timeline", "packet"])
def test_hostile_text_and_handles_never_reach_a_spreadsheet_as_formulas(
    store: Store, columns: tuple[tuple[str, object], ...]
) -> None:
    observations = [
        make_obs(f"h{n}", text, author="=jdoe", posted_at=NOW + timedelta(hours=n))
        for n, text in enumerate(HOSTILE)
    ]
    record(store, observations, {n: [make_hit()] for n in range(len(HOSTILE))})
    out = io.StringIO()
    write_csv(out, columns, store.entries(page_size=2))  # type: ignore[arg-type]
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))

    assert sorted(row["text"] for row in rows) == sorted("'" + text for text in HOSTILE)
    author = "author" if columns is TIMELINE_CSV else "author_handle"
    assert {row[author] for row in rows} == {"'=jdoe"}
    for row in rows:
        assert not any(cell.startswith(FORMULA_START) for cell in row.values())


def test_pager_returns_typed_entries_in_timeline_order_across_pages(store: Store) -> None:
    moments = [NOW + timedelta(minutes=30 * n) for n in range(7)]
    observations = [make_obs(f"p{n}", f"text {n}", posted_at=m) for n, m in enumerate(moments)]
    record(store, observations, {n: [make_hit()] for n in range(7)})

    entries = list(store.entries(page_size=3))

    assert [e.first_seen for e in entries] == moments
    assert [item.native_id for e in entries for item in e.evidence] == [f"p{n}" for n in range(7)]
    assert all(item.raw is None for e in entries for item in e.evidence)
    assert entries[0].platform == "reddit"
    assert [e.to_json() for e in entries] == store.timeline()
