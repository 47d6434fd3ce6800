from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gen_server.client import SoundryClient
from tests.helpers import running_server


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("soundry-e2e")


@pytest.fixture(scope="session")
def server_url(server_dir: Path) -> Iterator[str]:
    """One real ``soundry serve`` (embedded Redis, one worker process, API + UI) for the e2e session."""
    with running_server(server_dir, SOUNDRY_ALLOW_PRIVATE_WEBHOOKS="1") as url:
        yield url


@pytest.fixture(scope="session")
def client(server_url: str) -> Iterator[SoundryClient]:
    c = SoundryClient(server_url, timeout_s=60)
    yield c
    c.close()
