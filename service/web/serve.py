"""``nocontact web``: open the store and serve the app with uvicorn on ``web.bind``."""

from __future__ import annotations

from datetime import UTC, datetime

import uvicorn

from service.config import LoadedConfig
from service.db import database_errors, make_engine, migrate
from service.web.app import create_app


def serve(loaded: LoadedConfig, bind: str | None = None) -> None:
    """``bind`` (``--bind``) overrides ``web.bind``: a container listens on 0.0.0.0."""
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
