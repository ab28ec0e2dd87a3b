"""The evidence verbs of the ``nocontact`` command: export, verify, timestamp, recheck.
Thin, like the rest of the CLI: each calls one domain function and maps its errors."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from service.cli import (
    EXIT_RUNTIME,
    EXIT_USAGE,
    CliState,
    _load,
    _require_case,
    _service,
    _sessions,
    cli,
    config_option,
    edge,
    fail,
)


@cli.command()
@config_option
@click.option("--case", "case_id", required=True, help="The case to export.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write into a non-empty directory.")
@click.option(
    "--allow-broken",
    is_flag=True,
    help="Write the packet even when verification fails, flagging every failure.",
)
@edge
def export(config_path: Path, case_id: str, out_dir: Path, force: bool, allow_broken: bool) -> None:
    """Write the evidence packet of a case (report, JSON, CSV, raw payloads, manifest)."""
    from service.cli_views import LazyProgress
    from service.export import export_case
    from service.timestamping import prepare_export

    loaded = _load(config_path, need_secrets=False)
    _require_case(loaded, case_id)
    case = loaded.settings.case(case_id)
    state = click.get_current_context().find_object(CliState)
    assert state is not None  # noqa: S101 - set by the group
    with _sessions(loaded) as (sessions, _), LazyProgress(state.err) as progress:
        roots = prepare_export(
            sessions,
            loaded.settings.evidence.timestamping,
            loaded.base_dir,
            warn=lambda line: click.echo(f"warning: {line}", err=True),
        )
        result = export_case(
            sessions,
            case,
            out_dir,
            force=force,
            now=datetime.now(UTC),
            progress=progress.advance,
            allow_broken=allow_broken,
            timestamp_roots=roots,
        )
    state.out.print(result.summary_line(), markup=False)


@cli.command()
@config_option
@edge
def timestamp(config_path: Path) -> None:
    """Have each timestamp authority (evidence.timestamping) sign the chain head now."""
    from service.timestamping import outcome_line, stamp_now

    loaded = _load(config_path)
    settings = loaded.settings.evidence.timestamping
    if settings is None:
        fail(
            f"{config_path}: no evidence.timestamping in the config; add "
            "`evidence: {timestamping: {tsa_urls: [https://…]}}`",
            EXIT_USAGE,
        )
    with _sessions(loaded) as (sessions, _):
        outcomes = stamp_now(sessions, settings, clock=lambda: datetime.now(UTC))
    if not outcomes:
        click.echo("the chain is empty: nothing to stamp yet")
    for outcome in outcomes:
        click.echo(outcome_line(outcome), err=outcome.error is not None)
    if any(outcome.error is not None for outcome in outcomes):
        sys.exit(EXIT_RUNTIME)


@cli.command()
@config_option
@click.option("--case", "case_id", help="Only the items of this case.")
@edge
def recheck(config_path: Path, case_id: str | None) -> None:
    """Re-read every captured item now (deletions, edits) and print what changed."""
    loaded = _load(config_path)
    _require_case(loaded, case_id)
    with _service(loaded) as service:
        changes = service.recheck(case_id=case_id, every_item=True)
    for change in changes:
        start, end = change.between
        click.echo(
            f"{change.platform} {change.native_id}: {change.outcome} ({change.detail}), "
            f"between {start} and {end}"
        )
    click.echo(f"{len(changes)} item(s) changed since they were captured or last checked")


@cli.command()
@config_option
@click.option("--case", "case_id", help="Report problems touching this case.")
@edge
def verify(config_path: Path, case_id: str | None) -> None:
    """Recompute every evidence hash and the chain; exit 1 on any mismatch."""
    from service.timestamping import load_roots
    from service.verify import verify_store

    loaded = _load(config_path, need_secrets=False)
    _require_case(loaded, case_id)
    timestamping = loaded.settings.evidence.timestamping
    roots = load_roots(timestamping.ca_files, loaded.base_dir) if timestamping else []
    with _sessions(loaded) as (sessions, _):
        report = verify_store(sessions, case_id, tsa_roots=roots)
    lines = report.problem_lines()
    for line in lines:
        click.echo(line, err=True)
    click.echo(report.summary_line())
    if lines:
        sys.exit(EXIT_RUNTIME)
