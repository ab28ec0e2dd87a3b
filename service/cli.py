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
from zoneinfo import ZoneInfo

import click

from service import __version__
from service.config import ConfigError, LoadedConfig, load_config

if TYPE_CHECKING:
    from rich.console import Console

    from service.marks import MarkKind

P = ParamSpec("P")
R = TypeVar("R")

EXIT_RUNTIME = 1
EXIT_USAGE = 2
UTC_ZONE = ZoneInfo("UTC")

log = logging.getLogger("nocontact")


class CliState:
    def __init__(self, debug: bool, log_format: str) -> None:
        self.debug = debug
        self.log_format = log_format

    # Made on first use: the running service prints nothing through them and so never
    # loads rich (#15).
    @functools.cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(highlight=False, soft_wrap=True)

    @functools.cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_RUNTIME) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _domain_errors() -> dict[type[Exception], int]:
    """Errors users cause or can fix, with their exit codes; imported lazily so that
    ``nocontact check`` stays fast."""
    from service.db import StoreError
    from service.export import ExportError
    from service.export_check import BrokenStoreError
    from service.timestamping import TimestampError

    return {
        StoreError: EXIT_RUNTIME,
        ExportError: EXIT_USAGE,
        BrokenStoreError: EXIT_RUNTIME,
        TimestampError: EXIT_USAGE,
    }


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


def _load(config_path: Path, *, need_secrets: bool = True) -> LoadedConfig:
    """``need_secrets=False`` for commands that only read the store: they work from a
    shell that lacks the watchers' and routes' secrets."""
    loaded = load_config(config_path, need_secrets=need_secrets)
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
@click.option(
    "--online",
    is_flag=True,
    help="Also open the database for writing and poll each watcher once (stores nothing).",
)
@edge
def check(config_path: Path, online: bool) -> None:
    """Validate the config; exit 2 with every problem, one per line."""
    loaded = _load(config_path) if online else load_config(config_path)
    settings = loaded.settings
    click.echo(
        f"{config_path}: ok — {len(settings.cases)} case(s), {len(settings.watchers)} "
        f"watcher(s), {len(settings.alerts)} alert route(s)"
    )
    if not online:
        return
    from service.checks import online_checks

    failed = False
    for line in online_checks(loaded):
        click.echo(str(line), err=not line.ok)
        failed = failed or not line.ok
    if failed:
        sys.exit(EXIT_RUNTIME)


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
    _print_once_report(state, report)
    _print_next_steps(loaded, config_path, report)
    failed = [poll.watcher for poll in report.polls if not poll.ok]
    problems = [f"watcher(s) failed: {', '.join(failed)}"] if failed else []
    if report.delivery.failed or report.delivery.errors:
        problems.append(f"{report.delivery.failed} alert(s) could not be delivered")
    if problems:
        # Exit 1 so that a timer or cron job notices; the lines above say what failed.
        state.err.print(f"run --once: not all is well: {'; '.join(problems)}", markup=False)
        sys.exit(EXIT_RUNTIME)


def _print_next_steps(loaded: LoadedConfig, config_path: Path, report: Any) -> None:
    """After a first run, say where to look and why no alert came."""
    found = sum(poll.new_violations - poll.new_outside_period for poll in report.polls)
    if found:
        click.echo(
            f"next: `nocontact timeline -c {config_path}` lists the violations; "
            "`nocontact show ID` shows one whole"
        )
    silent = [name for name, route in loaded.settings.alerts.items() if not route.urls]
    if silent:
        click.echo(
            f"note: alert route(s) {', '.join(silent)} have no URL, so they send nothing; "
            f"set the environment variable their urls name in {config_path.name} "
            "(e.g. NOCONTACT_ALERT_URL=ntfys://your-private-topic) to get alerts"
        )


def _print_once_report(state: CliState, report: Any) -> None:
    for poll in report.polls:
        if poll.ok:
            in_period = poll.new_violations - poll.new_outside_period
            outside = (
                f" (and {poll.new_outside_period} outside the order period, kept)"
                if poll.new_outside_period
                else ""
            )
            state.out.print(
                f"{poll.watcher}: {poll.observations} item(s) read, {poll.new_evidence} new "
                f"evidence, {in_period} new violation(s){outside}",
                markup=False,
            )
        else:
            state.err.print(f"{poll.watcher}: failed: {poll.error}", markup=False)
    delivery = report.delivery
    for error in delivery.errors:
        state.err.print(f"alert not delivered: {error}", markup=False)
    state.out.print(
        f"alerts: {delivery.sent} sent, {delivery.failed} failed, "
        f"{delivery.still_pending} still queued",
        markup=False,
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
@click.option(
    "--all",
    "include_all",
    is_flag=True,
    help="Include dismissed violations and hits outside the order period.",
)
@click.option("--since", help="Only violations since a date (2026-03-01) or for a time (7d, 12h).")
@click.option("--kind", "kinds", multiple=True, help="Only this kind (repeatable).")
@click.option("--platform", "platforms", multiple=True, help="Only this platform (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N violations.")
@edge
def timeline(
    config_path: Path,
    case_id: str | None,
    fmt: str,
    include_all: bool,
    since: str | None,
    kinds: tuple[str, ...],
    platforms: tuple[str, ...],
    limit: int | None,
) -> None:
    """The violations of each case, oldest first; dismissed ones only with --all."""
    from service.cli_views import parse_since, timeline_lines
    from service.marks import dismissals
    from service.timeline import TIMELINE_CSV, iter_entries, write_csv

    loaded = _load(config_path, need_secrets=False)
    _require_case(loaded, case_id)
    zones = {case.id: case.timezone for case in loaded.settings.cases}
    start = None
    if since is not None:
        zone = zones.get(case_id or "", loaded.settings.cases[0].timezone)
        try:
            start = parse_since(since, datetime.now(UTC), zone)
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
    with _sessions(loaded) as (sessions, _), sessions() as session:
        dismissed = dismissals(session)
        entries = [
            entry
            for entry in iter_entries(session, case_id=case_id, include_outside=include_all)
            if (include_all or entry.id not in dismissed)
            and (start is None or entry.last_seen >= start)
            and (not kinds or entry.kind in kinds)
            and (not platforms or {e.platform for e in entry.evidence} & set(platforms))
        ]
    if limit is not None:
        entries = entries[-limit:]
    if fmt == "json":
        rows = [
            {**e.to_json(), "dismissed": dismissed[e.id].to_json() if e.id in dismissed else None}
            for e in entries
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        buffer = io.StringIO()
        write_csv(buffer, TIMELINE_CSV, entries)
        click.echo(buffer.getvalue(), nl=False)
    elif not entries:
        click.echo("No violations recorded." + ("" if include_all else " (--all shows more)"))
    else:
        state = _state()
        for line in timeline_lines(entries, dismissed, zones, state.out.width):
            click.echo(line)
        click.echo("`nocontact show ID` shows one whole (the first characters of ID will do).")


def _state() -> CliState:
    state = click.get_current_context().find_object(CliState)
    assert state is not None  # noqa: S101 - set by the group
    return state


def _require_case(loaded: LoadedConfig, case_id: str | None) -> None:
    if case_id is not None and case_id not in {c.id for c in loaded.settings.cases}:
        known = ", ".join(c.id for c in loaded.settings.cases)
        fail(f"no case {case_id!r} in {loaded.path.name} (cases: {known})", EXIT_USAGE)


@cli.command()
@config_option
@click.argument("violation_id")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@edge
def show(config_path: Path, violation_id: str, fmt: str) -> None:
    """One violation whole: reason, every evidence item with its text and hashes,
    its dismissal, and every alert delivery. ID may be its first characters."""
    from service.cli_views import show_text
    from service.show import ViolationNotFound, resolve_id, violation_detail

    loaded = _load(config_path, need_secrets=False)
    with _sessions(loaded) as (sessions, _), sessions() as session:
        try:
            detail = violation_detail(session, resolve_id(session, violation_id))
        except ViolationNotFound as exc:
            fail(str(exc), EXIT_USAGE)
    if fmt == "json":
        click.echo(json.dumps(detail.to_json(), ensure_ascii=False, indent=2))
        return
    zones = {case.id: case.timezone for case in loaded.settings.cases}
    click.echo(show_text(detail, zones.get(detail.entry.case_id, UTC_ZONE)))


@cli.command()
@config_option
@click.argument("violation_id")
@click.option("--reason", required=True, help="Why it is not a violation (kept in the chain).")
@click.option("--by", default=None, help="Who decides (default: your login name).")
@edge
def dismiss(config_path: Path, violation_id: str, reason: str, by: str | None) -> None:
    """Mark a false positive: a record in the hash chain, never a deletion. The
    timeline hides it unless --all; its queued alerts are cancelled."""
    _mark(config_path, violation_id, "dismissal", reason, by)


@cli.command()
@config_option
@click.argument("violation_id")
@click.option("--reason", default="dismissed by mistake", show_default=True)
@click.option("--by", default=None, help="Who decides (default: your login name).")
@edge
def undismiss(config_path: Path, violation_id: str, reason: str, by: str | None) -> None:
    """Withdraw a dismissal (another record in the chain; the first one stays)."""
    _mark(config_path, violation_id, "undismissal", reason, by)


def _mark(config_path: Path, given: str, kind: MarkKind, reason: str, by: str | None) -> None:
    import getpass

    from service.marks import dismissals
    from service.show import ViolationNotFound, resolve_id
    from service.store import Store

    if not reason.strip():
        fail("--reason: say why, in a few words", EXIT_USAGE)
    loaded = _load(config_path, need_secrets=False)
    with _sessions(loaded) as (sessions, engine):
        with sessions() as session:
            try:
                violation_id = resolve_id(session, given)
            except ViolationNotFound as exc:
                fail(str(exc), EXIT_USAGE)
            is_dismissed = violation_id in dismissals(session, [violation_id])
        if is_dismissed == (kind == "dismissal"):
            fail(f"violation {violation_id} is {'already' if is_dismissed else 'not'} dismissed",
                 EXIT_USAGE)  # fmt: skip
        seq = Store(engine).record_mark(
            violation_id, kind, reason=reason.strip(), by=by or getpass.getuser(),
            now=datetime.now(UTC),
        )  # fmt: skip
    done = "dismissed" if kind == "dismissal" else "no longer dismissed"
    click.echo(f"violation {violation_id} {done}; chain record {seq}")


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
    """Is the service running, recent violations per case, each watcher's last poll
    and errors, and the backlog of alerts."""
    from rich.table import Table

    from service.cli_views import duration_text, watcher_state_text, when_utc
    from service.health import check_health, recent_violations, service_line
    from service.store import Store

    loaded = _load(config_path, need_secrets=False)
    state = click.get_current_context().find_object(CliState)
    assert state is not None  # noqa: S101 - set by the group
    now = datetime.now(UTC)
    with _sessions(loaded) as (sessions, engine):
        if health:
            report = check_health(
                sessions,
                now=now,
                stale_after=_stale_after(stale_after),
                watcher_names=[w.display_name for w in loaded.settings.watchers],
                watcher_every={w.display_name: w.every for w in loaded.settings.watchers},
            )
            for line in report.lines:
                click.echo(line)
            sys.exit(0 if report.ok else EXIT_RUNTIME)
        store = Store(engine)
        views = {view.name: view for view in store.watcher_statuses()}
        summary = store.outbox_summary()
        service_state = service_line(sessions, now, _stale_after(stale_after))
        recent = recent_violations(sessions, now, [c.id for c in loaded.settings.cases])
    state.out.print(service_state, markup=False)
    for case_id, (last_day, last_week) in recent.items():
        state.out.print(
            f"Case {case_id}: {last_day} violation(s) in the last 24 h, {last_week} in 7 days",
            markup=False,
        )
    table = Table(title="Watchers")
    for column in ("watcher", "type", "every", "last poll", "last success", "state"):
        table.add_column(column, overflow="fold")
    for watcher in loaded.settings.watchers:
        view = views.get(watcher.display_name)
        table.add_row(
            watcher.display_name,
            watcher.type,
            duration_text(watcher.every),
            when_utc(view.last_poll_at if view else None),
            when_utc(view.last_success_at if view else None),
            watcher_state_text(view),
        )
    state.out.print(table)
    oldest = when_utc(summary.oldest_pending_at) if summary.oldest_pending_at else "none"
    state.out.print(
        f"Alerts queued: {summary.pending} ({summary.due_now} due now, "
        f"{summary.failing} retrying after a failed delivery); oldest queued: {oldest}",
        markup=False,
    )


def _stale_after(text: str) -> timedelta:
    from watchers.base import _parse_duration

    try:
        stale = _parse_duration(text)
    except ValueError as exc:
        fail(f"--stale-after: {exc}", EXIT_USAGE)
    assert isinstance(stale, timedelta)  # noqa: S101 - _parse_duration returns one
    return stale


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
    loaded = _load(config_path, need_secrets=False)
    with _sessions(loaded):
        pass
    click.echo("database is up to date")


# The evidence verbs and the web view live in their own modules; importing them
# registers their commands on ``cli``.
from service import cli_evidence, cli_web  # noqa: E402, F401


def main() -> None:
    cli(prog_name="nocontact")
