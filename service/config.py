"""Load config.yaml into validated ``Settings``, reporting every problem at once.

Each problem is one line, ``config.yaml:LINE: path.to.field: what is wrong``. Values are
never echoed back, so a mistyped secret cannot leak into a terminal or a log.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from service.registry import (
    UnknownWatcherType,
    WatcherTypeUnavailable,
    watcher_class,
    watcher_types,
)
from service.settings import Settings
from watchers.base import WatcherSettings

Loc = tuple[str | int, ...]

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigProblem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class ConfigError(Exception):
    """The config cannot be used. ``problems`` holds every one-line problem found."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedConfig:
    settings: Settings
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class _Document:
    """The YAML document as plain data plus the line of every node, by path."""

    def __init__(self, file_label: str) -> None:
        self.file_label = file_label
        self.lines: dict[Loc, int] = {}
        self.problems: list[ConfigProblem] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def line_of(self, loc: Loc) -> int:
        # A missing field has no node of its own: point at its nearest parent.
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.append(
            ConfigProblem(self.file_label, self.line_of(loc), format_loc(loc), message)
        )

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = key_node.value
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problem(loc, "mapping keys must be plain names")
                    continue
                if key in result:
                    self.lines[(*loc, key)] = key_node.start_mark.line + 1
                    self.problem((*loc, key), "key appears twice; keep one")
                    continue
                result[key] = self.build(value_node, (*loc, key))
                # Errors about a key point at the key's own line.
                self.lines[(*loc, key)] = key_node.start_mark.line + 1
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (ValueError, yaml.YAMLError):
            # An impossible date or number: let validation say what the field expects.
            value = node.value
        if isinstance(value, str):
            return self.interpolate(value, loc)
        return value

    def interpolate(self, text: str, loc: Loc) -> Any:
        missing: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            name = match.group("name")
            value = os.environ.get(name)
            default = match.group("default")
            # As in the shell, ${VAR:-default} also applies when VAR is set but empty.
            if value is not None and (value or default is None):
                return value
            if default is not None:
                return default
            missing.append(name)
            return ""

        result = _VAR.sub(substitute, text)
        for name in missing:
            self.problem(
                loc,
                f"environment variable {name} is not set; set it, or write "
                f"${{{name}:-default}} to give a default",
            )
        if result != text and _VAR.fullmatch(text):
            # A whole-value reference may hold a number or boolean, as YAML would read it.
            try:
                parsed = yaml.safe_load(result)
            except yaml.YAMLError:
                return result
            if isinstance(parsed, bool | int | float):
                return parsed
        return result


def _yaml_problem(label: str, exc: yaml.YAMLError) -> ConfigProblem:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else 1
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return ConfigProblem(label, line, "", f"not valid YAML: {problem}")


def load_config(path: str | Path) -> LoadedConfig:
    """Read, interpolate and validate a config file, or raise ``ConfigError``."""
    config_path = Path(path)
    label = str(path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [ConfigProblem(label, 0, "", "no such file; pass the config with -c PATH")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([ConfigProblem(label, 0, "", f"cannot read: {reason}")]) from None
    settings = parse_config(text, label)
    return LoadedConfig(settings=settings, path=config_path.resolve())


def parse_config(text: str, label: str = "config.yaml") -> Settings:
    doc = _Document(label)
    try:
        root_node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(label, exc)]) from None
    if root_node is None:
        raise ConfigError([ConfigProblem(label, 1, "", "the file is empty; see config.yaml")])
    data = doc.build(root_node, ())
    if not isinstance(data, dict):
        doc.problem((), "the top level must be a mapping with database, cases, watchers, alerts")
        raise ConfigError(doc.problems)

    watcher_models = _validate_watchers(doc, data.get("watchers"))
    top = {key: value for key, value in data.items() if key != "watchers"}
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(top)
    except ValidationError as exc:
        _report_validation(doc, exc, (), Settings)
    if settings is not None and watcher_models is not None:
        settings = settings.model_copy(update={"watchers": watcher_models})
        _cross_check(doc, settings)
    if doc.problems or settings is None:
        raise ConfigError(sorted(doc.problems, key=lambda p: p.line))
    return settings


def _validate_watchers(doc: _Document, raw: object) -> list[WatcherSettings] | None:
    if raw is None:
        return []
    if not isinstance(raw, list):
        doc.problem(("watchers",), "must be a list of watchers (each starting with '- type:')")
        return None
    models: list[WatcherSettings] = []
    ok = True
    known = watcher_types()
    for index, item in enumerate(raw):
        loc: Loc = ("watchers", index)
        if not isinstance(item, dict):
            doc.problem(loc, "each watcher must be a mapping with at least type and every")
            ok = False
            continue
        type_name = item.get("type")
        if not isinstance(type_name, str):
            doc.problem((*loc, "type"), f"missing; one of: {', '.join(sorted(known))}")
            ok = False
            continue
        try:
            cls = watcher_class(type_name)
        except (UnknownWatcherType, WatcherTypeUnavailable) as exc:
            doc.problem((*loc, "type"), str(exc))
            ok = False
            continue
        try:
            models.append(cls.settings_model.model_validate(item))
        except ValidationError as exc:
            _report_validation(doc, exc, loc, cls.settings_model)
            ok = False
    return models if ok else None


def _report_validation(
    doc: _Document, exc: ValidationError, prefix: Loc, model: type[BaseModel]
) -> None:
    for error in exc.errors(include_input=False, include_url=False):
        loc: Loc = (*prefix, *error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            doc.problem(loc, _unknown_key_message(model, tuple(error["loc"])))
        elif kind == "missing":
            doc.problem(loc, "required but missing")
        else:
            message = error["msg"]
            message = message.removeprefix("Value error, ")
            doc.problem(loc, message)


def _unknown_key_message(model: type[BaseModel], loc: Loc) -> str:
    key = str(loc[-1])
    fields = _fields_at(model, loc[:-1])
    message = f"unknown key {key!r}"
    if fields:
        close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
        if close:
            return f"{message}; did you mean {close[0]!r}?"
        return f"{message}; expected one of: {', '.join(sorted(fields))}"
    return message


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names of the model found by following ``loc`` through ``model``."""
    annotation: Any = model
    for part in loc:
        annotation = _descend(annotation, part)
        if annotation is None:
            return []
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return list(candidate.model_fields)
    return []


def _unwrap(annotation: Any) -> Iterator[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _unwrap(arg)
    elif origin is typing.Annotated:
        yield from _unwrap(typing.get_args(annotation)[0])
    else:
        yield annotation


def _descend(annotation: Any, part: str | int) -> Any:
    for candidate in _unwrap(annotation):
        origin = typing.get_origin(candidate)
        args = typing.get_args(candidate)
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            field = candidate.model_fields.get(str(part))
            if field is not None:
                return field.annotation
        elif origin in (list, tuple, Sequence) and isinstance(part, int) and args:
            return args[0]
        elif origin in (dict, Mapping) and len(args) == 2:
            return args[1]
    return None


def _cross_check(doc: _Document, settings: Settings) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(settings.database)
    except ArgumentError:
        doc.problem(
            ("database",),
            "not a database URL; write sqlite:///nocontact.db or "
            "postgresql+psycopg://user@host/dbname",
        )

    seen_cases: set[str] = set()
    for index, case in enumerate(settings.cases):
        if case.id in seen_cases:
            doc.problem(("cases", index, "id"), f"case id {case.id!r} is used twice")
        seen_cases.add(case.id)
        for r_index, route_name in enumerate(case.alert):
            if route_name not in settings.alerts:
                doc.problem(
                    ("cases", index, "alert", r_index),
                    _unknown_name("alert route", route_name, settings.alerts, "alerts"),
                )
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(case.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            doc.problem(
                ("cases", index, "timezone"),
                "unknown time zone; use an IANA name like Europe/London",
            )

    seen_watchers: set[str] = set()
    for index, watcher in enumerate(settings.watchers):
        name = watcher.display_name
        if name in seen_watchers:
            doc.problem(
                ("watchers", index, "name"),
                f"watcher name {name!r} is used twice; give each watcher its own name",
            )
        seen_watchers.add(name)
        for c_index, case_id in enumerate(watcher.cases or []):
            if case_id not in seen_cases:
                doc.problem(
                    ("watchers", index, "cases", c_index),
                    _unknown_name("case", case_id, seen_cases, "cases"),
                )
        if watcher.every.total_seconds() < 10:
            doc.problem(("watchers", index, "every"), "must be at least 10s")

    for route_name, route in settings.alerts.items():
        if route.group_wait.total_seconds() < 0:
            doc.problem(("alerts", route_name, "group_wait"), "must not be negative")
        for u_index, problem in _route_url_problems(route.urls):
            doc.problem(("alerts", route_name, "urls", u_index), problem)


def _unknown_name(what: str, name: str, known: typing.Iterable[str], section: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; define it under {section}"
    return f"no {what} named {name!r}{hint}"


def _route_url_problems(urls: Sequence[str]) -> list[tuple[int, str]]:
    import apprise

    problems: list[tuple[int, str]] = []
    for index, url in enumerate(urls):
        if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
            scheme = url.split("://", 1)[0] if "://" in url else ""
            shown = f"{scheme}:// URL" if scheme else "URL"
            problems.append(
                (index, f"this Apprise {shown} is not valid; see the Apprise wiki for its form")
            )
    return problems
