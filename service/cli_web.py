"""``nocontact web``: serve the web view, and ``web hash-password``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.cli import (
    EXIT_USAGE,
    _load,
    cli,
    config_option,
    edge,
    fail,
)


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

    # The web view needs its own accounts, never the watchers' or routes' secrets.
    loaded = _load(config_path, need_secrets=False)
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
