"""``nocontact web``: check the web settings against the cases, open the store and
serve the app with uvicorn on ``web.bind``."""

from __future__ import annotations

from datetime import UTC, datetime

import uvicorn

from service.config import ConfigError, ConfigProblem, LoadedConfig
from service.db import database_errors, make_engine, migrate
from service.web.app import create_app


def check_users(loaded: LoadedConfig) -> None:
    """Every case a user lists must exist: a typo would silently hide a case."""
    known = {case.id for case in loaded.settings.cases}
    problems = [
        ConfigProblem(
            loaded.path.name,
            1,
            f"web.users.{name}.cases",
            f"no case {case_id!r} (cases: {', '.join(sorted(known))})",
        )
        for name, user in loaded.settings.web.users.items()
        for case_id in user.cases
        if case_id not in known
    ]
    if problems:
        raise ConfigError(problems)


def serve(loaded: LoadedConfig, bind: str | None = None) -> None:
    """``bind`` (``--bind``) overrides ``web.bind``: a container listens on 0.0.0.0."""
    check_users(loaded)
    host, _, port = (bind or loaded.settings.web.bind).rpartition(":")
    engine = make_engine(loaded.settings.database, loaded.base_dir)
    try:
        with database_errors(engine):
            migrate(engine)
        app = create_app(loaded.settings, engine, clock=lambda: datetime.now(UTC))
        # proxy_headers: behind a local TLS proxy, X-Forwarded-Proto makes cookies Secure.
        uvicorn.run(
            app,
            host=host,
            port=int(port),
            proxy_headers=True,
            forwarded_allow_ips="127.0.0.1",
            server_header=False,
            log_config=None,
        )
    finally:
        engine.dispose()
