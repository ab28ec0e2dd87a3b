"""The store's connection pool holds as many connections as the service's threads use at
once (#15): a smaller pool closes every connection beyond its size when it is returned,
so on PostgreSQL each poll would open a new backend."""

from __future__ import annotations

from pathlib import Path

from service.config import load_config
from service.db import make_engine
from service.scheduler import SERVICE_JOBS, Service

CONFIG = """\
database: {url}
max_concurrent_polls: 7
cases:
  - id: c
    order: {{effective: 2026-01-15}}
    protected: {{names: [Alex Smith]}}
    restrained: {{names: [John Doe]}}
watchers:
  - {{type: rss, name: w, url: 'http://127.0.0.1:9/feed'}}
"""


def test_the_service_pool_keeps_a_connection_per_poll_slot_and_service_job(
    database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(url=database_url), encoding="utf-8")
    service = Service(load_config(config))
    try:
        assert service.engine.pool.size() == 7 + SERVICE_JOBS  # type: ignore[attr-defined]
    finally:
        service.close()


def test_an_engine_without_a_count_keeps_sqlalchemys_default(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}", tmp_path)
    sized = make_engine(f"sqlite:///{tmp_path / 'b.db'}", tmp_path, connections=12)
    assert engine.pool.size() == 5  # type: ignore[attr-defined]
    assert sized.pool.size() == 12  # type: ignore[attr-defined]
