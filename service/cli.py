"""The ``nocontact`` command. Thin: it loads config, calls the service, and turns domain
errors into one-line messages and exit codes (0 ok, 1 runtime problem, 2 usage or config).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service import __version__
from service.config import ConfigError, LoadedConfig, load_config

if TYPE_CHECKING:
    from service.timeline import ViolationEntry

P = ParamSpec("P")
R = TypeVar("R")

EXIT_RUNTIME = 1
EXIT_USAGE = 2

log = logging.getLogger("nocontact")


class CliState:
    def __init__(self, debug: bool, log_format: str) -> None:
        self.debug = debug
        self.log_format = log_format
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_RUNTIME) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _domain_errors() -> dict[type[Exception], int]:
    """Errors users cause or can fix, with their exit codes; imported lazily so that
    ``nocontact check`` stays fast."""
    from service.db import StoreError
    from service.export import ExportError

    return {StoreError: EXIT_RUNTIME, ExportError: EXIT_USAGE}


def edge(func: Callable[P, R]) -> Callable[P, R]:
    """Map errors to clean one-line messages; tracebacks only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        state = click.get_current_context().find_object(CliState)
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            # What was committed stays committed; an interrupted poll is retried next run.
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if state is not None and state.debug:
                raise
            for error_type, code in _domain_errors().items():
                if isinstance(exc, error_type):
                    fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, code)
            # The text of an unexpected error may hold a URL with a token: show its type.
            fail(
                f"unexpected {type(exc).__name__}; run again with --debug for details",
                EXIT_RUNTIME,
            )

    return wrapper


config_option = click.option(
    "-c",
    "--config",
    "config_path",
    default="config.yaml",
    envvar="NOCONTACT_CONFIG",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The config file.",
)


def _load(config_path: Path) -> LoadedConfig:
    loaded = load_config(config_path)
    state = click.get_current_context().find_object(CliState)
    if state is not None:
        _configure_logging(state, loaded)
    return loaded


def _configure_logging(state: CliState, loaded: LoadedConfig | None) -> None:
    from service.logsetup import configure_logging, settings_secrets

    secrets = settings_secrets(loaded.settings) if loaded is not None else []
    configure_logging(
        "DEBUG" if state.debug else "INFO",
        "json" if state.log_format == "json" else "text",
        secrets=secrets,
    )


@contextmanager
def _service(loaded: LoadedConfig) -> Iterator[Any]:
    from service.scheduler import Service

    service = Service(loaded)
    try:
        yield service
    finally:
        service.close()


@contextmanager
def _sessions(loaded: LoadedConfig) -> Iterator[Any]:
    """Sessions on a migrated store, without starting watchers."""
    from service.db import database_errors, make_engine, migrate, session_factory

    engine = make_engine(loaded.settings.database, loaded.base_dir)
    try:
        with database_errors(engine):
            migrate(engine)
            yield session_factory(engine), engine
    finally:
        engine.dispose()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nocontact")
@click.option("--debug", is_flag=True, help="Verbose logs and full tracebacks.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line of text per event, or one JSON object per line.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_format: str) -> None:
    """nocontact watches platforms for violations of a no-contact order, keeps
    court-ready evidence and alerts the protected person."""
    ctx.obj = CliState(debug, log_format)


@cli.command()
@config_option
@edge
def check(config_path: Path) -> None:
    """Validate the config; exit 2 with every problem, one per line."""
    loaded = load_config(config_path)
    settings = loaded.settings
    click.echo(
        f"{config_path}: ok — {len(settings.cases)} case(s), {len(settings.watchers)} "
        f"watcher(s), {len(settings.alerts)} alert route(s)"
    )


@cli.command()
@config_option
@click.option("--once", is_flag=True, help="Poll every watcher once, deliver alerts, exit.")
@edge
def run(config_path: Path, once: bool) -> None:
    """Run the service (until SIGTERM / Ctrl-C)."""
    loaded = _load(config_path)
    with _service(loaded) as service:
        if not once:
            service.run_forever()
            return
        report = service.run_once()
    state = click.get_current_context().find_object(CliState)
    assert state is not None  # noqa: S101 - set by the group
    for poll in report.polls:
        if poll.ok:
            state.out.print(
                f"{poll.watcher}: {poll.observations} item(s) read, {poll.new_evidence} new "
                f"evidence, {poll.new_violations} new violation(s)"
            )
        else:
            state.err.print(f"{poll.watcher}: failed: {poll.error}", markup=False)
    delivery = report.delivery
    state.out.print(
        f"alerts: {delivery.sent} sent, {delivery.failed} failed, "
        f"{delivery.still_pending} still queued"
    )


@cli.command()
@config_option
@click.option("--case", "case_id", help="Only this case.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--all", "include_all", is_flag=True, help="Include hits outside the order period.")
@edge
def timeline(config_path: Path, case_id: str | None, fmt: str, include_all: bool) -> None:
    """The violations of each case, oldest first."""
    from service.store import Store
    from service.timeline import TIMELINE_CSV, write_csv

    loaded = _load(config_path)
    _require_case(loaded, case_id)
    with _sessions(loaded) as (_, engine):
        entries = list(Store(engine).entries(case_id, include_all))
    if fmt == "json":
        click.echo(json.dumps([e.to_json() for e in entries], ensure_ascii=False, indent=2))
    elif fmt == "csv":
        buffer = io.StringIO()
        write_csv(buffer, TIMELINE_CSV, entries)
        click.echo(buffer.getvalue(), nl=False)
    else:
        _timeline_table(entries, include_all)


def _require_case(loaded: LoadedConfig, case_id: str | None) -> None:
    if case_id is not None and case_id not in {c.id for c in loaded.settings.cases}:
        known = ", ".join(c.id for c in loaded.settings.cases)
        fail(f"no case {case_id!r} in {loaded.path.name} (cases: {known})", EXIT_USAGE)


def _timeline_table(entries: list[ViolationEntry], include_all: bool) -> None:
    from service.evidence import format_time

    state = click.get_current_context().find_object(CliState)
    assert state is not None  # noqa: S101 - set by the group
    if not entries:
        state.out.print("No violations recorded." + ("" if include_all else " (--all shows more)"))
        return
    table = Table(title="Violations, oldest first")
    for column in ("first seen (UTC)", "case", "kind", "severity", "author", "where", "reason"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        authors = sorted({e.author_handle for e in entry.evidence if e.author_handle})
        platforms = sorted({e.platform for e in entry.evidence})
        kind = entry.kind + (" (suspected)" if entry.suspected else "")
        if not entry.in_order_period:
            kind += " [outside order]"
        table.add_row(
            format_time(entry.first_seen),
            entry.case_id,
            kind,
            entry.severity,
            ", ".join(authors),
            f"{', '.join(platforms)} ({len(entry.evidence)} item(s))",
            entry.reason,
        )
    state.out.print(table)


@cli.command()
@config_option
@click.option("--case", "case_id", required=True, help="The case to export.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write into a non-empty directory.")
@edge
def export(config_path: Path, case_id: str, out_dir: Path, force: bool) -> None:
    """Write the evidence packet of a case (report, JSON, CSV, raw payloads, manifest)."""
    from service.export import export_case

    loaded = _load(config_path)
    _require_case(loaded, case_id)
    case = loaded.settings.case(case_id)
    state = click.get_current_context().find_object(CliState)
    assert state is not None  # noqa: S101 - set by the group
    with _sessions(loaded) as (sessions, _), _LazyProgress(state) as progress:
        result = export_case(
            sessions, case, out_dir, force=force, now=datetime.now(UTC), progress=progress.advance
        )
    state.out.print(result.summary_line(), markup=False)


class _LazyProgress:
    """A progress bar that appears with the first step, so an export refused at once
    prints its error alone."""

    def __init__(self, state: CliState) -> None:
        self._console = state.err
        self._progress: Progress | None = None
        self._task: Any = None

    def advance(self, done: int, total: int) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("Building the evidence packet"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("export", total=total)
        self._progress.update(self._task, completed=done, total=total)

    def __enter__(self) -> _LazyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


@cli.command()
@config_option
@click.option("--case", "case_id", help="Report problems touching this case.")
@edge
def verify(config_path: Path, case_id: str | None) -> None:
    """Recompute every evidence hash and the chain; exit 1 on any mismatch."""
    from service.verify import verify_store

    loaded = _load(config_path)
    _require_case(loaded, case_id)
    with _sessions(loaded) as (sessions, _):
        report = verify_store(sessions, case_id)
    lines = report.problem_lines()
    for line in lines:
        click.echo(line, err=True)
    click.echo(report.summary_line())
    if lines:
        sys.exit(EXIT_RUNTIME)


@cli.command()
@config_option
@click.option("--health", is_flag=True, help="Exit 1 when the service is not healthy.")
@click.option(
    "--stale-after",
    default="3m",
    show_default=True,
    help="With --health: how old the heartbeat may be.",
)
@edge
def status(config_path: Path, health: bool, stale_after: str) -> None:
    """Watchers' last poll and errors, and the backlog of alerts."""
    from service.health import check_health
    from service.store import Store
    from watchers.base import _parse_duration

    loaded = _load(config_path)
    state = click.get_current_context().find_object(CliState)
    assert state is not None  # noqa: S101 - set by the group
    now = datetime.now(UTC)
    with _sessions(loaded) as (sessions, engine):
        if health:
            try:
                stale = _parse_duration(stale_after)
            except ValueError as exc:
                fail(f"--stale-after: {exc}", EXIT_USAGE)
            assert isinstance(stale, timedelta)  # noqa: S101 - _parse_duration returns one
            report = check_health(
                sessions,
                now=now,
                stale_after=stale,
                watcher_names=[w.display_name for w in loaded.settings.watchers],
            )
            for line in report.lines:
                click.echo(line)
            sys.exit(0 if report.ok else EXIT_RUNTIME)
        store = Store(engine)
        views = {view.name: view for view in store.watcher_statuses()}
        summary = store.outbox_summary()
    table = Table(title="Watchers")
    for column in ("watcher", "type", "every", "last poll", "last success", "state"):
        table.add_column(column, overflow="fold")
    for watcher in loaded.settings.watchers:
        view = views.get(watcher.display_name)
        table.add_row(
            watcher.display_name,
            watcher.type,
            _duration(watcher.every),
            _when(view.last_poll_at if view else None),
            _when(view.last_success_at if view else None),
            _watcher_state_text(view),
        )
    state.out.print(table)
    oldest = _when(summary.oldest_pending_at) if summary.oldest_pending_at else "none"
    state.out.print(
        f"Alerts queued: {summary.pending} ({summary.due_now} due now, "
        f"{summary.failing} retrying after a failed delivery); oldest queued: {oldest}",
        markup=False,
    )


def _watcher_state_text(view: Any) -> str:
    if view is None:
        return "not polled yet"
    if view.disabled_reason:
        return f"DISABLED: {view.disabled_reason}"
    parts: list[str] = []
    if view.consecutive_failures:
        parts.append(f"FAILING ({view.consecutive_failures} in a row): {view.last_error}")
    else:
        parts.append("ok")
    parts.extend(view.status_notes or [])
    return "; ".join(parts)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "never"


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@cli.command("test-alert")
@config_option
@click.option("--route", help="Only this alert route.")
@edge
def test_alert(config_path: Path, route: str | None) -> None:
    """Send a test notification to each target of the routes."""
    from service.alerts import AlertDispatcher

    loaded = _load(config_path)
    if route is not None and route not in loaded.settings.alerts:
        known = ", ".join(loaded.settings.alerts) or "none defined"
        fail(f"no alert route {route!r} (routes: {known})", EXIT_USAGE)
    if not loaded.settings.alerts:
        fail("no alert routes are configured; add one under `alerts`", EXIT_USAGE)
    with _sessions(loaded) as (sessions, _):
        results = AlertDispatcher(loaded.settings, sessions).send_test(route, datetime.now(UTC))
    failed = 0
    for result in results:
        if result.ok:
            click.echo(f"{result.route}: {result.target_masked}: delivered")
        else:
            failed += 1
            click.echo(f"{result.route}: {result.target_masked}: FAILED: {result.error}", err=True)
    if failed:
        sys.exit(EXIT_RUNTIME)


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@config_option
@edge
def db_upgrade(config_path: Path) -> None:
    """Apply database migrations (also done on every start)."""
    loaded = _load(config_path)
    with _sessions(loaded):
        pass
    click.echo("database is up to date")


@cli.group(invoke_without_command=True)
@config_option
@click.option("--bind", metavar="HOST:PORT", help="Listen here instead of web.bind.")
@click.pass_context
@edge
def web(ctx: click.Context, config_path: Path, bind: str | None) -> None:
    """The web view for the protected person and their advocate (web.bind)."""
    if ctx.invoked_subcommand is not None:
        return
    from service.web.serve import serve

    if bind is not None and (":" not in bind or not bind.rpartition(":")[2].isdigit()):
        fail("--bind: write HOST:PORT, e.g. 0.0.0.0:8080", EXIT_USAGE)

    loaded = _load(config_path)
    if not loaded.settings.web.users:
        fail(
            f"{loaded.path.name}: web.users is empty; add an account, e.g. "
            "web: {users: {alex: {password_hash: ${ALEX_WEB_HASH}, role: owner, "
            "cases: [CASE-ID]}}} (hash from `nocontact web hash-password`)",
            EXIT_USAGE,
        )
    serve(loaded, bind)


@web.command("hash-password")
@edge
def web_hash_password() -> None:
    """Read a password from standard input (or ask for it) and print its argon2id hash."""
    from service.web.auth import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 10:
        fail("the password is too short: use at least 10 characters", EXIT_USAGE)
    click.echo(hash_password(password))


def main() -> None:
    cli(prog_name="nocontact")
