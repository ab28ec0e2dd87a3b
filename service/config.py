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
from service.settings import FOR_DELIVERY, Settings, SettingsProblems
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


# Sections whose ${VAR}s only running the service needs: watcher credentials and alert
# URLs. Commands that only read the store load the config without them.
SECRET_SECTIONS = frozenset({"watchers", "alerts"})


class _Document:
    """The YAML document as plain data plus the line of every node, by path."""

    def __init__(self, file_label: str, *, need_secrets: bool = True) -> None:
        self.file_label = file_label
        self.need_secrets = need_secrets
        self.lines: dict[Loc, int] = {}
        self.problems: list[ConfigProblem] = []
        # Values whose ${VAR} is missing: what validation says about them follows from
        # the missing variable and would only be a confusing second line.
        self.unresolved: set[Loc] = set()
        self._constructor = yaml.constructor.SafeConstructor()

    def is_unresolved(self, loc: Loc) -> bool:
        return any(loc[: len(where)] == where for where in self.unresolved)

    def line_of(self, loc: Loc) -> int:
        # A missing field has no node of its own: point at its nearest parent.
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def problem(self, loc: Loc, message: str) -> None:
        if self.is_unresolved(loc):
            return
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
        if missing and not self.need_secrets and loc[:1] and loc[0] in SECRET_SECTIONS:
            self.unresolved.add(loc)
            return result
        for name in missing:
            self.problem(
                loc,
                f"environment variable {name} is not set; set it, or write "
                f"${{{name}:-default}} to give a default",
            )
        if missing:
            self.unresolved.add(loc)
        whole = _VAR.fullmatch(text)
        if whole and not result and whole.group("default") == "":
            # ${VAR:-} written as the whole value says "nothing unless set": null.
            return None
        if result != text and whole:
            # A whole-value reference may hold a number or boolean, as YAML would read it.
            try:
                parsed = yaml.safe_load(result)
            except yaml.YAMLError:
                return result
            if isinstance(parsed, bool | int | float):
                return parsed
        return result


# What the YAML parser's phrases mean for someone editing a config file by hand.
_YAML_WORDS: tuple[tuple[str, str], ...] = (
    ("expected <block end>", "this line is indented differently from the one above"),
    ("did not find expected key", "this line is indented differently from the one above"),
    ("did not find expected '-'", "this list item is indented differently from the one above"),
    ("mapping values are not allowed", "a ':' that cannot be here: is this line indented "
     "more than the one above, or does a value contain ': '? Put such a value in quotes"),
    ("found character '\\t'", "a tab: indent with spaces only"),
    ("expected ',' or ']'", "a list opened with '[' is not closed with ']'"),
    ("expected ',' or '}'", "a mapping opened with '{' is not closed with '}'"),
    ("could not find expected ':'", "this line has no ':'; write it as key: value"),
    ("found undefined alias", "a '*' starts an alias here; put the value in quotes"),
)  # fmt: skip


def _yaml_problem(label: str, exc: yaml.YAMLError) -> ConfigProblem:
    mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 1
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None) or ""
    if "quoted scalar" in context and context_mark is not None:
        opened = context_mark.line + 1
        return ConfigProblem(label, opened, "", "this quotation mark is never closed")
    if ("simple key" in context or "flow" in context) and context_mark is not None:
        line = context_mark.line + 1
    for phrase, words in _YAML_WORDS:
        if phrase in problem:
            return ConfigProblem(label, line, "", words)
    return ConfigProblem(label, line, "", f"not valid YAML: {problem}")


def load_config(path: str | Path, *, need_secrets: bool = True) -> LoadedConfig:
    """Read, interpolate and validate a config file, or raise ``ConfigError``.

    With ``need_secrets=False`` (commands that only read the store) a missing ``${VAR}``
    under ``watchers`` or ``alerts`` is not an error, and route URLs are not checked."""
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
    settings = parse_config(text, label, need_secrets=need_secrets)
    return LoadedConfig(settings=settings, path=config_path.resolve())


# libyaml's parser when PyYAML was built with it: the pure-Python one takes about a
# minute for a clinic's config of 50,000 watchers (#15); both give the same nodes and lines.
# Their error texts differ, so a file libyaml refuses is parsed again by the pure-Python
# parser, whose problems `_yaml_problem` knows how to put in words.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str, label: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError:
        pass
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(label, exc)]) from None


def parse_config(text: str, label: str = "config.yaml", *, need_secrets: bool = True) -> Settings:
    doc = _Document(label, need_secrets=need_secrets)
    root_node = _compose(text, label)
    if root_node is None:
        raise ConfigError([ConfigProblem(label, 1, "", "the file is empty; see config.yaml")])
    data = doc.build(root_node, ())
    if not isinstance(data, dict):
        doc.problem((), "the top level must be a mapping with database, cases, watchers, alerts")
        raise ConfigError(doc.problems)

    # Each watcher type validates its own settings; the models already validated go into
    # Settings, whose validators check what spans the file (names, references).
    watcher_models = _validate_watchers(doc, data.get("watchers"))
    top = {**data, "watchers": watcher_models or []}
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(top, context={FOR_DELIVERY: need_secrets})
    except ValidationError as exc:
        _report_validation(doc, exc, (), Settings)
    if doc.problems or settings is None or watcher_models is None:
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
            stand_in = _without_secrets(doc, exc, loc, item)
            if stand_in is not None:
                models.append(stand_in)
                continue
            _report_validation(doc, exc, loc, cls.settings_model)
            ok = False
    return models if ok else None


def _without_secrets(
    doc: _Document, exc: ValidationError, loc: Loc, item: dict[str, Any]
) -> WatcherSettings | None:
    """For a command that reads the store, a watcher that fails only for want of its
    secrets is still known by its type, name, interval and cases."""
    if doc.need_secrets or not doc.unresolved:
        return None
    if not all(doc.is_unresolved((*loc, *error["loc"])) for error in exc.errors()):
        return None
    common = {key: value for key, value in item.items() if key in WatcherSettings.model_fields}
    try:
        return WatcherSettings.model_validate(common)
    except ValidationError:
        return None


def _report_validation(
    doc: _Document, exc: ValidationError, prefix: Loc, model: type[BaseModel]
) -> None:
    for error in exc.errors(include_input=False, include_url=False):
        loc: Loc = (*prefix, *error["loc"])
        kind = error["type"]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, SettingsProblems):
            for where, message in cause.problems:
                doc.problem((*loc, *where), message)
        elif kind == "extra_forbidden":
            doc.problem(loc, _unknown_key_message(model, tuple(error["loc"])))
        elif kind == "missing":
            doc.problem(loc, "required but missing")
        elif kind.startswith(("date_", "datetime_")):
            doc.problem(loc, "not a date; write dates as YYYY-MM-DD, e.g. 2026-03-01")
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
