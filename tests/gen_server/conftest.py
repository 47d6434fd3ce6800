from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from gen_server.main import create_app
from gen_server.redis_server import EmbeddedRedis
from gen_server.settings import Settings


@pytest.fixture
def api(redis_server: EmbeddedRedis, data_dir: Path) -> Iterator[TestClient]:
    """The real app on a real, emptied Redis with the dev preset; no worker (jobs stay queued)."""
    redis.Redis.from_url(redis_server.url).flushall()
    settings = Settings(data_dir=data_dir, dev_models=True)
    with TestClient(create_app(settings, redis_url=redis_server.url, ui=False)) as client:
        yield client
