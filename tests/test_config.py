"""Config loading: interpolation, durations, unknown keys, line numbers, all errors at once."""

from __future__ import annotations

import textwrap
from datetime import date, timedelta
from pathlib import Path

import pytest

from service.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]

VALID = """\
database: sqlite:///nc.db
cases:
  - id: smith-v-doe
    order: {effective: 2026-01-15, expires: 2027-01-15, reference: "PO-1",
            terms: [no_contact, no_mention]}
    protected:
      names: ["Alex Smith"]
      handles: {reddit: [alex_smith]}
    restrained:
      names: ["John Doe"]
      handles: {reddit: [jdoe]}
    alert: [phone]
watchers:
  - {type: rss, name: blog, url: "https://blog.example/feed.xml", every: 90s}
alerts:
  phone:
    urls: ["json://127.0.0.1:9/hook"]
    group_wait: 2m
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "config.yaml")
    return [str(p) for p in info.value.problems]


def test_example_config_passes_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOCONTACT_DATABASE", "JDOE_FEED_URL", "NOCONTACT_ALERT_URL"):
        monkeypatch.delenv(name, raising=False)
    loaded = load_config(REPO / "config.yaml")
    assert loaded.settings.cases[0].id == "smith-v-doe"
    assert loaded.settings.watchers[0].every == timedelta(minutes=10)
    assert loaded.base_dir == REPO


def test_valid_config_parses_durations_dates_and_defaults() -> None:
    settings = parse_config(VALID)
    case = settings.case("smith-v-doe")
    assert case.order.effective == date(2026, 1, 15)
    assert case.fuzzy_threshold == 85
    assert case.group_window == timedelta(minutes=10)
    assert settings.watchers[0].every == timedelta(seconds=90)
    route = settings.alerts["phone"]
    assert route.group_wait == timedelta(minutes=2)
    assert (route.min_severity, route.include_content, route.operator) == ("low", False, False)
    assert settings.operator_routes() == ["phone"]


def test_environment_interpolation_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK", "json://127.0.0.1:1/from-env")
    text = VALID.replace('"json://127.0.0.1:9/hook"', '"${HOOK}", "${OTHER:-json://x.invalid/d}"')
    settings = parse_config(text)
    assert settings.alerts["phone"].urls == ["json://127.0.0.1:1/from-env", "json://x.invalid/d"]


def test_missing_variable_names_it_and_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NC_UNSET_TOKEN", raising=False)
    text = VALID.replace('"json://127.0.0.1:9/hook"', '"${NC_UNSET_TOKEN}"')
    found = problems(text)
    assert found[0].startswith("config.yaml:17: alerts.phone.urls[0]: environment variable ")
    assert "NC_UNSET_TOKEN is not set" in found[0]


def test_every_error_is_reported_at_once_with_lines() -> None:
    found = problems(
        """\
        cases:
          - id: a
            order: {effective: 2026-13-01, terms: [no_contakt]}
            protected: {names: [A]}
            restrained: {names: [B], handels: {}}
        watchers:
          - {type: rs, every: 5m}
          - {type: rss, url: "https://e.example/f", every: soon}
        alerts:
          phone:
            urls: ["json://127.0.0.1/x"]
            min_severty: high
        """
    )
    assert any(p.startswith("config.yaml:3: cases[0].order.effective: ") for p in found)
    assert any(p.startswith("config.yaml:3: cases[0].order.terms[0]: ") for p in found)
    assert (
        "config.yaml:5: cases[0].restrained.handels: unknown key 'handels'; did you mean 'handles'?"
    ) in found
    assert any(
        p.startswith("config.yaml:7: watchers[0].type: unknown watcher type 'rs'; did you mean")
        for p in found
    )
    assert any(p.startswith("config.yaml:8: watchers[1].every: ") and "5m" in p for p in found)
    assert (
        "config.yaml:12: alerts.phone.min_severty: unknown key 'min_severty'; "
        "did you mean 'min_severity'?"
    ) in found
    assert len(found) == 6


def test_cross_references_are_checked() -> None:
    text = VALID.replace("alert: [phone]", "alert: [phon]").replace(
        "every: 90s}", "every: 90s, cases: [smith-v-do]}"
    )
    found = problems(text)
    assert (
        "config.yaml:12: cases[0].alert[0]: no alert route named 'phon'; did you mean 'phone'?"
        in (found)
    )
    assert any("watchers[0].cases[0]: no case named 'smith-v-do'" in p for p in found)


def test_secret_values_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NC_SECRET", "s3cr3t-not-a-threshold")
    text = VALID.replace("alert: [phone]", "alert: [phone]\n    fuzzy_threshold: ${NC_SECRET}")
    found = problems(text)
    assert any("cases[0].fuzzy_threshold" in p for p in found)
    assert not any("s3cr3t" in p for p in found)


def test_invalid_apprise_url_is_reported() -> None:
    found = problems(VALID.replace("json://127.0.0.1:9/hook", "nosuchscheme://s3cr3t@host"))
    assert found == [
        "config.yaml:17: alerts.phone.urls[0]: this Apprise nosuchscheme:// URL is not valid; "
        "see the Apprise wiki for its form"
    ]


def test_order_must_expire_after_it_takes_effect() -> None:
    found = problems(VALID.replace("expires: 2027-01-15", "expires: 2025-01-15"))
    assert found == ["config.yaml:4: cases[0].order: expires must be after effective"]


def test_not_yaml_and_empty_and_missing_file(tmp_path: Path) -> None:
    assert problems("cases: [\n")[0].startswith("config.yaml:")
    assert problems("") == ["config.yaml:1: the file is empty; see config.yaml"]
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "no such file; pass the config with -c PATH" in str(info.value)


def test_duplicate_keys_and_names_are_rejected() -> None:
    found = problems(
        VALID.replace("database: sqlite:///nc.db", "database: sqlite:///nc.db\ndatabase: x")
    )
    assert found == ["config.yaml:2: database: key appears twice; keep one"]
    text = VALID.replace(
        '  - {type: rss, name: blog, url: "https://blog.example/feed.xml", every: 90s}',
        '  - {type: rss, name: blog, url: "https://blog.example/feed.xml", every: 90s}\n'
        '  - {type: rss, name: blog, url: "https://blog.example/b.xml", every: 90s}',
    )
    assert any("watchers[1].name: watcher name 'blog' is used twice" in p for p in problems(text))


def test_empty_variable_takes_the_default_like_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NC_EMPTY", "")
    text = VALID.replace('"json://127.0.0.1:9/hook"', '"${NC_EMPTY:-json://127.0.0.1:2/d}"')
    assert parse_config(text).alerts["phone"].urls == ["json://127.0.0.1:2/d"]
    found = problems(VALID.replace('"json://127.0.0.1:9/hook"', '"${NC_EMPTY}"'))
    assert any("alerts.phone.urls[0]" in p for p in found)


def test_time_zone_is_parsed_once_into_the_settings() -> None:
    from zoneinfo import ZoneInfo

    text = VALID.replace("alert: [phone]", "alert: [phone]\n    timezone: Europe/Berlin")
    assert parse_config(text).cases[0].timezone == ZoneInfo("Europe/Berlin")
    found = problems(VALID.replace("alert: [phone]", "alert: [phone]\n    timezone: Mars/Olympus"))
    assert found == [
        "config.yaml:13: cases[0].timezone: unknown time zone; use an IANA name like Europe/London"
    ]


def test_case_ids_are_unique_and_polls_not_too_often() -> None:
    case = VALID[VALID.index("  - id: smith-v-doe") : VALID.index("watchers:")]
    text = VALID.replace("watchers:", case + "watchers:").replace("every: 90s", "every: 5s")
    assert problems(text) == [
        "config.yaml:13: cases[1].id: case id 'smith-v-doe' is used twice",
        "config.yaml:24: watchers[0].every: must be at least 10s",
    ]


def test_a_watchers_cases_come_in_the_configs_order_from_the_index() -> None:
    blog = '  - {type: rss, name: blog, url: "https://blog.example/feed.xml", every: 90s}\n'
    text = VALID.replace(
        "watchers:\n" + blog,
        "  - id: second\n    order: {effective: 2026-02-01}\n"
        "    protected: {names: [Kim Lee]}\n    restrained: {names: [Lou Ray]}\n"
        "watchers:\n"
        + blog
        + "  - {type: rss, name: both, url: 'https://b.example/f', cases: [second, smith-v-doe]}\n"
        + "  - {type: rss, name: one, url: 'https://c.example/f', cases: [second]}\n",
    )
    settings = parse_config(text)
    by_name = {w.display_name: w for w in settings.watchers}
    assert [c.id for c in settings.cases_for(by_name["both"])] == ["smith-v-doe", "second"]
    assert [c.id for c in settings.cases_for(by_name["one"])] == ["second"]
    assert [c.id for c in settings.cases_for(by_name["blog"])] == ["smith-v-doe", "second"]
    assert settings.case("second").protected.names == ["Kim Lee"]
    # A copy with other cases answers from its own cases, not from the original's index.
    fewer = settings.model_copy(update={"cases": settings.cases[1:]})
    assert [c.id for c in fewer.cases_for(by_name["both"])] == ["second"]
    with pytest.raises(KeyError):
        fewer.case("smith-v-doe")
